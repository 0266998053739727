#!/usr/bin/env bash
# Which faces GenderNet is fine-tuned on: the default (every source's training faces, gender_pretrain_lmdb:
# prototxt/GenderNet_finetune_solver.prototxt's train_state stage "pretrain") against the original's Asian
# balanced lists (gender_train_lmdb: the same solver without its train_state line), everything else equal.
# A benchmark, not a test; docs/training.md "GenderNet on all races" has its figures.
#
#   benchmarks/finetune_gender_lists.sh            (SEED=7 for another seed: data/gender_lists/7/, models/gender_lists/7/)
#
# Needs the pipeline's stages up to "pretrain" and a compiled graph/ (its AgeNet is reused and its GenderNet is
# the default one: seed 42's; another seed's is data/seeds/SEED/graph from benchmarks/finetune_seeds.sh SEED,
# or BASELINE=DIR). Fine-tunes only the Asian-list GenderNet, under models/gender_lists/; writes only under
# data/gender_lists/: its solver, the validation score of both (val.txt, default_val.json; the test split is
# not read), FP16 graphs with the same AgeNet, and FairFace dev end to end with and without --mirror for both
# (UltraFace + O-Net alignment from ../shared; wild_{asian,default}[_mirror].txt), in the same run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
me=finetune_gender_lists.sh
for need in models/AgeGenderNet_pretrain data/lmdb/gender_train_lmdb data/mean/mean.binaryproto graph/AgeNet.xml; do
  [ -e "$need" ] || { echo "$me: no $need; run ./run_pipeline.sh SOURCE --extra DIR first" >&2; exit 2; }
done
detectors="${DETECTOR_DIR:-../shared/caffe-fixtures}"
seed="${SEED:-42}"
out=data/gender_lists models=models/gender_lists default=graph
[ "$seed" = 42 ] || { out="$out/$seed"; models="$models/$seed"; default="data/seeds/$seed/graph"; }
default="${BASELINE:-$default}"
[ -f "$default/GenderNet.xml" ] || { echo "$me: no $default/GenderNet.xml (the default GenderNet) to compare with" >&2; exit 2; }
grep -q '^train_state { stage: "pretrain" }' prototxt/GenderNet_finetune_solver.prototxt || {
  echo "$me: prototxt/GenderNet_finetune_solver.prototxt no longer fine-tunes on every source (train_state); this comparison assumes it does" >&2; exit 2; }
mkdir -p "$out/asian" "$out/default" "$models/GenderNet"
sed -e '/^train_state/d' -e "s#^snapshot_prefix:.*#snapshot_prefix: \"$models/GenderNet/GenderNet\"#" \
    -e "s#^random_seed:.*#random_seed: $seed#" prototxt/GenderNet_finetune_solver.prototxt > "$out/GenderNet_finetune_solver.prototxt"
start=$(date +%s)
"$python" -m agegender train --solver "$out/GenderNet_finetune_solver.prototxt" \
  --weights models/AgeGenderNet_pretrain > "$out/train.log" 2>&1
echo "GenderNet (Asian lists) $(( $(date +%s) - start ))" > "$out/wall_seconds.txt"
"$python" -m agegender test --model prototxt/GenderNet_deploy.prototxt --weights "$models/GenderNet" \
  --mean data/mean/mean.binaryproto --lmdb data/lmdb/gender_val_lmdb --labels gender --json "$out/val.json" \
  | tee "$out/val.txt" | grep -E "^Accuracy" | sed "s/^/GenderNet on the Asian lists, validation: /"
"$python" -m agegender compile --model prototxt/GenderNet_deploy.prototxt --weights "$models/GenderNet" \
  --mean data/mean/mean.binaryproto --labels gender --output "$out/asian/GenderNet" --check none > "$out/compile.log"
# both with the same FP16 AgeNet (graph/'s), so only GenderNet differs
cp graph/AgeNet.xml graph/AgeNet.bin graph/AgeNet.json graph/age_gender_mean.npy "$out/asian/"
cp graph/AgeNet.xml graph/AgeNet.bin graph/AgeNet.json graph/age_gender_mean.npy \
  "$default/GenderNet.xml" "$default/GenderNet.bin" "$default/GenderNet.json" "$out/default/"
"$python" -m agegender test --ir "$out/default/GenderNet.xml" --lmdb data/lmdb/gender_val_lmdb \
  --json "$out/default_val.json" | grep -E "^Accuracy" | sed "s/^/default GenderNet ($default), validation: /"
for mirror in "" --mirror; do
  for which in asian default; do
    name=$([ "$which" = asian ] && echo "GenderNet on the Asian lists" || echo "default GenderNet (every source)")
    "$python" benchmarks/bench_wild.py --graph_dir "$out/$which" --no-peer \
      --infer-args "--detector ultraface --detector-dir $detectors $mirror" > "$out/wild_$which${mirror:+_mirror}.txt"
    sed "s/^/$name${mirror:+ $mirror}: /" "$out/wild_$which${mirror:+_mirror}.txt"
  done
done
