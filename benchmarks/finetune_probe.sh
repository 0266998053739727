#!/usr/bin/env bash
# One fine-tuning recipe tried on the validation faces and FairFace dev, never the test split (a benchmark, not a
# test): how the defaults' alternatives were chosen or refused.
#
#   benchmarks/finetune_probe.sh NET NAME ["solver_field: value" ...]
#   e.g. benchmarks/finetune_probe.sh GenderNet it1200 "max_iter: 1200" "snapshot: 600"
#
# Needs the pipeline's stages up to "pretrain" and a compiled graph/ (the other net is taken from it). Writes
# only under data/probe/NAME/ and models/probe/NAME/: prototxt/NET_finetune_solver.prototxt with the given
# fields replaced (or added), NET fine-tuned from models/AgeGenderNet_pretrain, its caffemodel on the validation
# LMDB, an FP16 graph (this NET + graph/'s other net, compiled as compile2Movidius.sh does, AgeNet with its
# class prior), that graph's NET on the validation LMDB (ir_val.json) and FairFace dev end to end (bench_wild.py, UltraFace + O-Net alignment from ../shared, no
# peer). SEED=N sets random_seed; TRAINED_ON=LIST the list an AgeNet probe trains on, for its class prior
# (default data/DEF/age_train.txt); FREEZE="conv1 conv2 conv3" trains a copy of the solver's train_test prototxt
# (data/probe/NAME/NET_train_test.prototxt) whose named layers have lr_mult and decay_mult 0 (Caffe's way
# of freezing a layer: its weights stay the pre-training's); PRETRAIN=DIR another pre-training's snapshots
# (default models/AgeGenderNet_pretrain); PROTOTXT_DIR=DIR another copy of prototxt/ (default prototxt; e.g. the
# nets without pool0 that benchmarks/full_res/prototxts.py writes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
source benchmarks/solver.sh
[ $# -ge 2 ] || { echo "usage: benchmarks/finetune_probe.sh AgeNet|GenderNet NAME [\"field: value\" ...]" >&2; exit 2; }
net="$1" name="$2"; shift 2
case "$net" in AgeNet) task=age other=GenderNet ;; GenderNet) task=gender other=AgeNet ;;
  *) echo "finetune_probe.sh: NET is AgeNet or GenderNet, not $net" >&2; exit 2 ;; esac
pretrain="${PRETRAIN:-models/AgeGenderNet_pretrain}"
protodir="${PROTOTXT_DIR:-prototxt}"
for need in "$pretrain" data/mean/mean.binaryproto "graph/$other.xml"; do
  [ -e "$need" ] || { echo "finetune_probe.sh: no $need; run ./run_pipeline.sh SOURCE --extra DIR first" >&2; exit 2; }
done
out="data/probe/$name" models="models/probe/$name/$net"
mkdir -p "$out/graph" "$models"
solver="$out/${net}_finetune_solver.prototxt"
frozen=()
if [ -n "${FREEZE:-}" ]; then
  "$python" - "$(solver_net "$protodir/${net}_finetune_solver.prototxt")" "$out/${net}_train_test.prototxt" $FREEZE <<'EOF'
import sys
from agegender.caffe.net import read_net, write_prototxt
net, names = read_net(sys.argv[1]), sys.argv[3:]
layers = {layer.name: layer for layer in net.layer}
for name in names:
    if name not in layers or not layers[name].param:
        sys.exit(f"finetune_probe.sh: FREEZE names {name}, which {sys.argv[1]} has no learnable layer of")
    for param in layers[name].param:
        param.lr_mult, param.decay_mult = 0, 0
write_prototxt(net, sys.argv[2])
EOF
  frozen=("net: \"$out/${net}_train_test.prototxt\"")
fi
solver_copy "$protodir/${net}_finetune_solver.prototxt" "$solver" "${frozen[@]}" "$@" \
  "snapshot_prefix: \"$models/$net\"" ${SEED:+"random_seed: $SEED"}
start=$(date +%s)
"$python" -m agegender train --solver "$solver" --weights "$pretrain" > "$out/train.log" 2>&1
echo "$net $(( $(date +%s) - start ))" > "$out/wall_seconds.txt"
"$python" -m agegender test --model "$protodir/${net}_deploy.prototxt" --weights "$models" \
  --mean data/mean/mean.binaryproto --lmdb "data/lmdb/${task}_val_lmdb" --labels "$task" --json "$out/val.json" \
  | grep -E "^(Accuracy|1-off)" | sed "s/^/$name $net, validation: /"
cp "graph/$other".xml "graph/$other".bin "graph/$other".json graph/age_gender_mean.npy "$out/graph/"
prior=()
[ "$task" = age ] && [ -f data/DEF/age_train_natural.txt ] && \
  prior=(--prior data/DEF/age_train_natural.txt --trained-on "${TRAINED_ON:-data/DEF/age_train.txt}")
"$python" -m agegender compile --model "$protodir/${net}_deploy.prototxt" --weights "$models" --labels "$task" \
  --mean data/mean/mean.binaryproto --output "$out/graph/$net" --check none "${prior[@]}" > "$out/compile.log" 2>&1
"$python" -m agegender test --ir "$out/graph/$net.xml" --lmdb "data/lmdb/${task}_val_lmdb" --json "$out/ir_val.json" \
  | grep -E "^(Accuracy|1-off)" | sed "s/^/$name $net IR, validation: /"
"$python" benchmarks/bench_wild.py --graph_dir "$out/graph" --no-peer --json "$out/wild.json" \
  --infer-args "--detector ultraface --detector-dir ${DETECTOR_DIR:-../shared/caffe-fixtures}" > "$out/wild.txt"
sed "s/^/$name: /" "$out/wild.txt"
