#!/usr/bin/env bash
# The shared pre-training on lists whose turned heads are repeated, then both fine-tunings (their default lists)
# from it, judged on the validation faces and FairFace dev only (a benchmark, not a test): FairFace's candid faces
# are near profile far more often than the pre-training's chips (23% against 1.7%, benchmarks/crop_probe.py and
# pose_lists.py), and repeating them in the fine-tunings alone gave no reliable gain (benchmarks/pose_probe.sh).
#
#   REPEAT=0.2:2,0.3:4 [RESUME=models/AgeGenderNet_pretrain/AgeGenderNet_pretrain_iter_5000.solverstate] \
#     benchmarks/pose_pretrain_probe.sh NAME SEED
#
# Needs the pipeline run with --extra (data/DEF/*_pretrain.txt, the LMDBs, graph/). Writes data/probe/NAME/: the
# two pre-training lists with each face repeated by its head turn (benchmarks/pose_lists.py --repeat REPEAT,
# shuffled alike so the two LMDBs stay in lockstep; turns cached in data/probe/posebal_turns.tsv), their LMDBs and
# a copy of prototxt/AgeGenderNet_train_test.prototxt that reads them; then the default pre-training's solver
# with that net and random_seed SEED (solver.sh's pretrain_once: models/pretrain/NAME_SEED/, skipped when its
# last snapshot exists) and SEED=SEED benchmarks/finetune_probe.sh for AgeNet and GenderNet from it
# (data/probe/{a,g}_NAME_SEED/). Compare with benchmarks/pretrain_probe.sh 10000 SEED (data/probe/{a,g}_pre10000_SEED).
# RESUME: only the pre-training's later part on the repeated lists, from a snapshot of the default one (its
# solverstate: iteration, learning rate and Adam's history; the same SEED), at half the cost; compare with the
# default of that seed (for seed 42, the pipeline's own nets: graph/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
source benchmarks/solver.sh
[ $# -eq 2 ] || { echo "usage: benchmarks/pose_pretrain_probe.sh NAME SEED" >&2; exit 2; }
name="$1" seed="$2" out="data/probe/$1"
[ -f data/DEF/gender_pretrain.txt ] || {
  echo "pose_pretrain_probe.sh: no data/DEF/gender_pretrain.txt; run ./run_pipeline.sh SOURCE --extra DIR first" >&2
  exit 2; }
"$python" benchmarks/pose_lists.py "$out/lists" --repeat "${REPEAT:-0.2:2,0.3:4}" --cache data/probe/posebal_turns.tsv \
  data/DEF/{age,gender}_pretrain.txt
[ -d "$out/lmdb/gender_pretrain_lmdb" ] ||
  "$python" -m agegender lmdb --lists "$out/lists" --out "$out/lmdb" --splits pretrain | tail -1
net="$out/AgeGenderNet_train_test.prototxt"
lmdb_copy prototxt/AgeGenderNet_train_test.prototxt "$net" "$out/lmdb" age_pretrain_lmdb gender_pretrain_lmdb
pretrain_once "${name}_$seed" "net: \"$net\"" "random_seed: $seed"
models="models/pretrain/${name}_$seed"
SEED="$seed" PRETRAIN="$models" benchmarks/finetune_probe.sh AgeNet "a_${name}_$seed"
SEED="$seed" PRETRAIN="$models" benchmarks/finetune_probe.sh GenderNet "g_${name}_$seed"
