#!/usr/bin/env bash
# AgeGenderNet (one pass for both heads) next to AgeNet + GenderNet, from the same shared pre-training, on the same
# data with the same fine-tuning budget (a benchmark, not a test):
#
#   benchmarks/finetune_agegender_net.sh
#
# Needs the pipeline to have run with --extra (models/AgeGenderNet_pretrain, models/{AgeNet,GenderNet}, data/lmdb).
# Fine-tunes prototxt/AgeGenderNet_finetune_solver.prototxt (1,000 iterations = GenderNet's 400 + AgeNet's 600)
# into models/AgeGenderNet/ (not again when its last snapshot exists), tests each head on the test LMDBs
# (data/joint/{age,gender}.json), compiles the one IR to data/joint/graph/AgeGenderNet (FP16, its age head with
# the class prior as compile2Movidius.sh gives AgeNet; PRIOR=0 without), tests the IR's heads on the validation
# and test LMDBs, then runs bench_wild.py on FairFace dev (UltraFace + O-Net alignment from ../shared, no peer)
# for it and for the separate nets of graph/, and prints the training wall time. graph/ is left alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
source benchmarks/solver.sh
[ -d models/AgeGenderNet_pretrain ] || {
  echo "finetune_agegender_net.sh: no models/AgeGenderNet_pretrain; run ./run_pipeline.sh SOURCE --extra DIR first" >&2
  exit 2; }
detectors="${DETECTOR_DIR:-../shared/caffe-fixtures}"
out=data/joint; mkdir -p "$out"
uptime | tee "$out/uptime_start.txt"
if [ -f "$(final_snapshot prototxt/AgeGenderNet_finetune_solver.prototxt)" ]; then  # a re-run does not train again
  echo "AgeGenderNet fine-tuning: $(final_snapshot prototxt/AgeGenderNet_finetune_solver.prototxt) exists, not trained again"
else
  start=$(date +%s)
  "$python" -m agegender train --solver prototxt/AgeGenderNet_finetune_solver.prototxt \
    --weights models/AgeGenderNet_pretrain > "$out/train.log" 2>&1
  echo "AgeGenderNet fine-tuning: $(( $(date +%s) - start )) s"
fi
for task in age gender; do
  "$python" -m agegender test --model prototxt/AgeGenderNet_deploy.prototxt --weights models/AgeGenderNet \
    --mean data/mean/mean.binaryproto --lmdb "data/lmdb/${task}_test_lmdb" --labels "$task" --json "$out/$task.json" \
    | grep -E "^(Accuracy|1-off)" | sed "s/^/AgeGenderNet $task: /"
done
prior=()  # the age head's class prior, as compile2Movidius.sh gives AgeNet's (PRIOR=0: none)
[ "${PRIOR:-1}" != 0 ] && [ -f data/DEF/age_train_natural.txt ] && \
  prior=(--prior data/DEF/age_train_natural.txt --trained-on data/DEF/age_train.txt)
"$python" -m agegender compile --model prototxt/AgeGenderNet_deploy.prototxt --weights models/AgeGenderNet \
  --mean data/mean/mean.binaryproto --output "$out/graph/AgeGenderNet" "${prior[@]}" > "$out/compile.log" 2>&1
for task in age gender; do  # the deployed IR (its age head with the prior) on validation, then test
  for split in val test; do
    "$python" -m agegender test --ir "$out/graph/AgeGenderNet.xml" --labels "$task" \
      --lmdb "data/lmdb/${task}_${split}_lmdb" --json "$out/${task}_ir_$split.json" \
      | grep -E "^(Accuracy|1-off)" | sed "s/^/AgeGenderNet IR $task, $split: /"
  done
done
for graph in "$out/graph" graph; do
  "$python" benchmarks/bench_wild.py --graph_dir "$graph" --no-peer \
    --infer-args "--detector ultraface --detector-dir $detectors" > "$out/wild_$(basename "$graph").txt"
  sed "s#^#$graph: #" "$out/wild_$(basename "$graph").txt"
done
uptime | tee "$out/uptime_end.txt"
