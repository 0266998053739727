#!/usr/bin/env bash
# The shared pre-training with another number of iterations, then both fine-tunings from it, judged on the
# validation faces and FairFace dev only (a benchmark, not a test): how the 10,000-iteration default was
# confirmed on this CPU against the 5,000 before (docs/training.md "Twice the pre-training").
#
#   benchmarks/pretrain_probe.sh ITERATIONS SEED
#
# Needs the pipeline's stages up to "mean" with --extra (data/lmdb/{age,gender}_pretrain_lmdb) and a compiled
# graph/. Trains prototxt/AgeGenderNet_pretrain_solver.prototxt with max_iter, random_seed and snapshot_prefix
# changed into models/pretrain/itITERATIONS_SEED/ (skipped when its last snapshot exists; wall seconds in
# data/pretrain/itITERATIONS_SEED/wall_seconds.txt), then SEED=SEED PRETRAIN=... benchmarks/finetune_probe.sh
# for AgeNet and GenderNet: data/probe/{a,g}_preITERATIONS_SEED/. The test split: benchmarks/test_split.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
source benchmarks/solver.sh
[ $# -eq 2 ] || { echo "usage: benchmarks/pretrain_probe.sh ITERATIONS SEED" >&2; exit 2; }
iterations="$1" seed="$2" name="it$1_$2"
[ -d data/lmdb/age_pretrain_lmdb ] || {
  echo "pretrain_probe.sh: no data/lmdb/age_pretrain_lmdb; run ./run_pipeline.sh SOURCE --extra DIR first" >&2; exit 2; }
pretrain_once "$name" "max_iter: $iterations" "random_seed: $seed"
models="models/pretrain/$name"
SEED="$seed" PRETRAIN="$models" benchmarks/finetune_probe.sh AgeNet "a_pre${iterations}_$seed"
SEED="$seed" PRETRAIN="$models" benchmarks/finetune_probe.sh GenderNet "g_pre${iterations}_$seed"
