#!/usr/bin/env bash
# The fine-tuning stages again with other seeds (a benchmark, not a test): the seed spread README reports.
#
#   benchmarks/finetune_seeds.sh SEED [SEED ...]
#
# Needs the pipeline's stages up to "pretrain" (data/lmdb, data/mean, models/AgeGenderNet_pretrain). For each
# SEED: copies of prototxt/{GenderNet,AgeNet}_finetune_solver.prototxt with only random_seed and snapshot_prefix
# changed (data/seeds/SEED/), both nets fine-tuned from models/AgeGenderNet_pretrain into models/seeds/SEED/NET/,
# tested on the test LMDBs (data/seeds/SEED/{gender,age}.json: the test split read once per final model),
# compiled as compile2Movidius.sh builds them (FP16, plus INT8 for CPUs, AgeNet with its class prior;
# data/seeds/SEED/graph), the FP16 and INT8 IRs tested on the validation and the test LMDBs ({task}[_int8]_ir_{val,test}.json)
# and run end to end on FairFace dev with and without --mirror (bench_wild.py, UltraFace + O-Net alignment from
# ../shared, no peer; data/seeds/SEED/wild.txt, wild_mirror.txt). A net whose last snapshot is already in
# models/seeds/SEED/NET/ is not trained again (an interrupted run resumes at the next net).
# The pipeline's models/ and graph/ are left alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
source benchmarks/solver.sh
[ $# -gt 0 ] || { echo "usage: benchmarks/finetune_seeds.sh SEED [SEED ...]" >&2; exit 2; }
pretrain="${PRETRAIN:-models/AgeGenderNet_pretrain}"  # another pre-training: benchmarks/pretrain_seed.sh
prefix="${PREFIX:-}"  # data/seeds/PREFIXSEED, models/seeds/PREFIXSEED
[ -d "$pretrain" ] || {
  echo "finetune_seeds.sh: no $pretrain; run ./run_pipeline.sh SOURCE --extra DIR first" >&2; exit 2; }
detectors="${DETECTOR_DIR:-../shared/caffe-fixtures}"
for seed in "$@"; do
  out="data/seeds/$prefix$seed" models="models/seeds/$prefix$seed"; mkdir -p "$out"
  uptime > "$out/uptime_start.txt"
  for net in GenderNet AgeNet; do
    task=$([ "$net" = GenderNet ] && echo gender || echo age)
    solver="$out/${net}_finetune_solver.prototxt"
    solver_copy "prototxt/${net}_finetune_solver.prototxt" "$solver" "random_seed: $seed" \
      "snapshot_prefix: \"$models/$net/$net\""
    mkdir -p "$models/$net"
    if [ -f "$(final_snapshot "$solver")" ]; then  # trained already: a re-run resumes
      echo "seed $seed $net: $(final_snapshot "$solver") exists, not trained again"
    else
      start=$(date +%s)
      "$python" -m agegender train --solver "$solver" --weights "$pretrain" > "$out/${net}_train.log" 2>&1
      echo "$net $(( $(date +%s) - start ))" >> "$out/wall_seconds.txt"
    fi
    "$python" -m agegender test --model "prototxt/${net}_deploy.prototxt" --weights "$models/$net" \
      --mean data/mean/mean.binaryproto --lmdb "data/lmdb/${task}_test_lmdb" --labels "$task" --json "$out/$task.json" \
      | grep -E "^(Accuracy|1-off)" | sed "s/^/seed $seed $net: /"
  done
  MODELS_DIR="$models" GRAPH_DIR="$out/graph" ./compile2Movidius.sh --check none > "$out/compile.log"
  for task in gender age; do  # the deployed IRs (AgeNet's with its class prior) on validation, then test once
    net=$([ "$task" = gender ] && echo GenderNet || echo AgeNet)
    for build in "" _int8; do
      [ -f "$out/graph/$net$build.xml" ] || continue
      for split in val test; do
        "$python" -m agegender test --ir "$out/graph/$net$build.xml" --lmdb "data/lmdb/${task}_${split}_lmdb" \
          --json "$out/${task}${build}_ir_$split.json" | grep -E "^(Accuracy|1-off)" \
          | sed "s/^/seed $seed $net$build IR, $split: /"
      done
    done
  done
  for mirror in "" --mirror; do
    "$python" benchmarks/bench_wild.py --graph_dir "$out/graph" --no-peer --json "$out/wild${mirror:+_mirror}.json" \
      --infer-args "--detector ultraface --detector-dir $detectors $mirror" > "$out/wild${mirror:+_mirror}.txt"
    sed "s/^/seed $seed${mirror:+ $mirror}: /" "$out/wild${mirror:+_mirror}.txt"
  done
  uptime > "$out/uptime_end.txt"
done
