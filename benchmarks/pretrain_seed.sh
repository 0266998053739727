#!/usr/bin/env bash
# The shared pre-training again with another seed, then both fine-tunings from it (a benchmark, not a test): the
# spread of the whole recipe, not only of its fine-tunings.
#
#   benchmarks/pretrain_seed.sh SEED
#
# Needs the pipeline's stages up to "mean" with --extra (data/lmdb/{age,gender}_pretrain_lmdb). Trains
# prototxt/AgeGenderNet_pretrain_solver.prototxt with only random_seed and snapshot_prefix changed into
# models/pretrain/SEED/ (71 min on the 2 idle cores; skipped when its last snapshot exists), then runs
# PRETRAIN=models/pretrain/SEED PREFIX=pretrainSEED- benchmarks/finetune_seeds.sh SEED: fine-tunings with the
# same seed, tests, compile, FairFace dev (data/seeds/pretrainSEED-SEED/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
source benchmarks/solver.sh
[ $# -eq 1 ] || { echo "usage: benchmarks/pretrain_seed.sh SEED" >&2; exit 2; }
seed="$1" models="models/pretrain/$1"
[ -d data/lmdb/age_pretrain_lmdb ] || {
  echo "pretrain_seed.sh: no data/lmdb/age_pretrain_lmdb; run ./run_pipeline.sh SOURCE --extra DIR first" >&2; exit 2; }
pretrain_once "$seed" "random_seed: $seed"
PRETRAIN="$models" PREFIX="pretrain$seed-" benchmarks/finetune_seeds.sh "$seed"
