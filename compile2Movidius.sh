#!/usr/bin/env bash
# Compile the newest snapshot of every task's net (agegender/tasks.py: AgeNet, GenderNet; models/NET/*_iter_N.caffemodel,
# largest N) to OpenVINO IR: graph/AgeNet.{xml,bin,json}, graph/GenderNet.{xml,bin,json}, graph/age_gender_mean.npy. FP16 by default,
# which runs on CPUs, Intel NPUs and (with --target myriad, OpenVINO <= 2022.3) the Neural Compute Stick 2.
# Extra arguments go to `python -m agegender compile` untouched, e.g. --precision FP32, --target myriad,
# --precision INT8 (calibrated on data/lmdb/<task>_train_lmdb unless --calibration is given).
# Folders can be moved with MODELS_DIR, PROTOTXT_DIR, MEAN_FILE, LMDB_DIR and GRAPH_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/python.sh"
cd "$root"
models="${MODELS_DIR:-models}" prototxt="${PROTOTXT_DIR:-prototxt}" mean="${MEAN_FILE:-data/mean/mean.binaryproto}"
lmdb="${LMDB_DIR:-data/lmdb}" graph="${GRAPH_DIR:-graph}"

calibrate=false
if [[ "$(value --precision "$@")" == INT8 ]] && ! given --calibration "$@"; then
  calibrate=true
fi

mapfile -t heads < <("$python" -m agegender.tasks)  # "NET TASK" lines
[ "${#heads[@]}" -gt 0 ] || { echo "compile2Movidius.sh: no task registered (python -m agegender.tasks)" >&2; exit 2; }
for head in "${heads[@]}"; do
  read -r net task <<< "$head"
  if ! compgen -G "$models/$net/*_iter_*.caffemodel" > /dev/null; then
    echo "compile2Movidius.sh: no $net snapshot in $models/$net/ (*_iter_N.caffemodel); train first with train_$net.sh" >&2
    exit 2
  fi
  extra=()
  $calibrate && extra=(--calibration "$lmdb/${task}_train_lmdb")
  "$python" -m agegender compile --model "$prototxt/${net}_deploy.prototxt" --weights "$models/$net" \
    --mean "$mean" --labels "$task" --output "$graph/$net" "${extra[@]}" "$@"
done
