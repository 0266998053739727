#!/usr/bin/env bash
# GenderNet fine-tuned from the shared pre-training on every race's training faces (data/lmdb/gender_pretrain_lmdb)
# instead of the Asian balanced lists (a benchmark, not a test; docs/training.md "GenderNet on all races").
# This is the comparison that made it the default (prototxt/GenderNet_finetune_solver.prototxt's train_state):
# its baseline must now be a graph whose GenderNet was fine-tuned on the Asian lists (that solver without its
# train_state line, e.g. with benchmarks/finetune_probe.sh), named by BASELINE=DIR.
#
#   benchmarks/finetune_gender_allrace.sh            (SEED=7 for another seed: data/allrace/7/, models/allrace/7/)
#
# Needs the pipeline's stages up to "pretrain" and a compiled graph/ (its AgeNet is reused). Writes only under
# data/allrace/ and models/allrace/: a copy of GenderNet_train_test.prototxt whose fine-tuning Data layer reads
# gender_pretrain_lmdb, the fine-tune solver pointed at it (same iterations, seed 42), the validation score
# (data/allrace/val.txt; the test split is not read), an FP16 graph (graph/AgeNet + this GenderNet) and FairFace
# dev end to end with and without --mirror (UltraFace + O-Net alignment from ../shared; data/allrace/wild*.txt),
# next to the same seed's default GenderNet FP16 (graph/, or data/seeds/SEED/graph from finetune_seeds.sh SEED)
# with the same AgeNet, validated and run the same way in the same run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
for need in models/AgeGenderNet_pretrain data/lmdb/gender_pretrain_lmdb data/mean/mean.binaryproto graph/AgeNet.xml; do
  [ -e "$need" ] || { echo "finetune_gender_allrace.sh: no $need; run ./run_pipeline.sh SOURCE --extra DIR first" >&2; exit 2; }
done
detectors="${DETECTOR_DIR:-../shared/caffe-fixtures}"
seed="${SEED:-42}"
out=data/allrace models=models/allrace
baseline=graph  # the pipeline's GenderNet; another seed's: benchmarks/finetune_seeds.sh SEED's graph
[ "$seed" = 42 ] || { out="$out/$seed"; models="$models/$seed"; baseline="data/seeds/$seed/graph"; }
baseline="${BASELINE:-$baseline}"
[ -f "$baseline/GenderNet.xml" ] || { echo "finetune_gender_allrace.sh: no $baseline/GenderNet.xml to compare with" >&2; exit 2; }
mkdir -p "$out/prototxt" "$out/graph" "$models/GenderNet"
sed 's#source: "data/lmdb/gender_train_lmdb"#source: "data/lmdb/gender_pretrain_lmdb"#' \
  prototxt/GenderNet_train_test.prototxt > "$out/prototxt/GenderNet_train_test.prototxt"
sed -e "s#^net:.*#net: \"$out/prototxt/GenderNet_train_test.prototxt\"#" \
    -e "s#^snapshot_prefix:.*#snapshot_prefix: \"$models/GenderNet/GenderNet\"#" -e "s#^random_seed:.*#random_seed: $seed#" \
  prototxt/GenderNet_finetune_solver.prototxt > "$out/prototxt/GenderNet_finetune_solver.prototxt"
start=$(date +%s)
"$python" -m agegender train --solver "$out/prototxt/GenderNet_finetune_solver.prototxt" \
  --weights models/AgeGenderNet_pretrain > "$out/train.log" 2>&1
echo "GenderNet $(( $(date +%s) - start ))" > "$out/wall_seconds.txt"
"$python" -m agegender test --model prototxt/GenderNet_deploy.prototxt --weights "$models/GenderNet" \
  --mean data/mean/mean.binaryproto --lmdb data/lmdb/gender_val_lmdb --labels gender --json "$out/val.json" \
  | tee "$out/val.txt" | grep -E "^Accuracy" | sed "s/^/all-race GenderNet, validation: /"
cp graph/AgeNet.xml graph/AgeNet.bin graph/AgeNet.json graph/age_gender_mean.npy "$out/graph/"
"$python" -m agegender compile --model prototxt/GenderNet_deploy.prototxt --weights "$models/GenderNet" \
  --mean data/mean/mean.binaryproto --labels gender --output "$out/graph/GenderNet" --check none > "$out/compile.log"
# the baseline: the same seed's default GenderNet (FP16, as the all-race one) with the same AgeNet
mkdir -p "$out/baseline"
cp "$out/graph/AgeNet".* "$out/graph/age_gender_mean.npy" "$baseline/GenderNet.xml" "$baseline/GenderNet.bin" \
  "$baseline/GenderNet.json" "$out/baseline/"
"$python" -m agegender test --ir "$out/baseline/GenderNet.xml" --lmdb data/lmdb/gender_val_lmdb \
  --json "$out/baseline_val.json" | grep -E "^Accuracy" | sed "s/^/default GenderNet ($baseline), validation: /"
for mirror in "" --mirror; do
  for which in graph baseline; do
    name=$([ "$which" = graph ] && echo "all-race GenderNet" || echo "default GenderNet")
    "$python" benchmarks/bench_wild.py --graph_dir "$out/$which" --no-peer \
      --infer-args "--detector ultraface --detector-dir $detectors $mirror" > "$out/wild_$which${mirror:+_mirror}.txt"
    sed "s/^/$name${mirror:+ $mirror}: /" "$out/wild_$which${mirror:+_mirror}.txt"
  done
done
