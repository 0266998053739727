#!/usr/bin/env bash
# Back on this machine: the GPU's pre-trainings (remote.sh's weights.tar.* parts, in the folder given) become
# caffemodels under models/full_res/NAME/, then AgeNet and GenderNet are fine-tuned from each as the defaults
# are (benchmarks/finetune_probe.sh: the committed fine-tuning solvers, the seed of the pre-training) and judged
# on the validation faces and FairFace dev, never the test split: data/probe/fr_{a,g}_NAME/.
#   benchmarks/full_res/finetune.sh PARTS_DIR [NAME ...]   (NAMEs default: full_42 full_7 pool0_42 pool0_7)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
[ $# -ge 1 ] && ls "$1"/weights.tar.* > /dev/null 2>&1 || {
  echo "usage: benchmarks/full_res/finetune.sh PARTS_DIR [NAME ...] (PARTS_DIR holds remote.sh's weights.tar.*)" >&2; exit 2; }
parts="$1"; shift
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(full_42 full_7 pool0_42 pool0_7)
mkdir -p data/full_res
cat "$parts"/weights.tar.* | tar xf - -C data/full_res
PYTHONPATH=. "$python" benchmarks/full_res/prototxts.py data/full_res/prototxt
for name in "${names[@]}"; do
  mkdir -p "models/full_res/$name"
  npz=$(ls -v data/full_res/"${name}"_iter_*.npz | tail -1)  # the latest, if an earlier run left one
  model="models/full_res/$name/AgeGenderNet_pretrain_iter_${npz##*_iter_}"
  model="${model%.npz}.caffemodel"
  [ -f "$model" ] || PYTHONPATH=. "$python" benchmarks/full_res/weights.py import "$npz" "$model"  # once
done
for name in "${names[@]}"; do
  protodir=prototxt; [ "${name%%_*}" = full ] && protodir=data/full_res/prototxt
  for net in AgeNet GenderNet; do
    probe="fr_$(echo "$net" | cut -c1 | tr A-Z a-z)_$name"
    [ -f "data/probe/$probe/wild.txt" ] && { echo "$probe: done before"; continue; }
    PRETRAIN="models/full_res/$name" PROTOTXT_DIR="$protodir" SEED="${name##*_}" \
      benchmarks/finetune_probe.sh "$net" "$probe"
  done
done
