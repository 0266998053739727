#!/usr/bin/env bash
# Compile the newest snapshot of every task's net (agegender/tasks.py: AgeNet, GenderNet; models/NET/*_iter_N.caffemodel,
# largest N) to OpenVINO IR: graph/AgeNet.{xml,bin,json}, graph/GenderNet.{xml,bin,json} and graph/age_gender_mean.npy
# in FP16, which runs on CPUs, Intel NPUs and (OpenVINO 2022.3.1 with its MYRIAD plugin) the Neural Compute Stick 2;
# and, when data/lmdb/<task>_train_lmdb exists, an INT8 CPU build beside them, graph/AgeNet_int8.* and
# graph/GenderNet_int8.* (calibrated on it, its accuracy against FP32 measured on the validation faces,
# <task>_val_lmdb (else <task>_test_lmdb), and kept in the sidecar; run_inference.py uses it on a CPU when it loses
# at most 1 point there: the keep-or-refuse choice is never made on the test split when a validation split exists).
# INT8=0 skips it.
# Extra arguments go to `python -m agegender compile` untouched, e.g. --check none; with --precision, --target or --device
# (FP32, --target myriad, INT8 calibrated on data/lmdb/<task>_train_lmdb) only that one build is made.
# AgeNet's IRs carry the class prior of the training faces (compile --prior data/DEF/age_train_natural.txt
# --trained-on data/DEF/age_train.txt, at the task's weight; PRIOR=0 compiles the nets as trained).
# Folders can be moved with MODELS_DIR, PROTOTXT_DIR, MEAN_FILE, LMDB_DIR, LISTS_DIR and GRAPH_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/python.sh"
cd "$root"
models="${MODELS_DIR:-models}" prototxt="${PROTOTXT_DIR:-prototxt}" mean="${MEAN_FILE:-data/mean/mean.binaryproto}"
lmdb="${LMDB_DIR:-data/lmdb}" graph="${GRAPH_DIR:-graph}" lists="${LISTS_DIR:-data/DEF}"

calibrate=false
if [[ "$(value --precision "$@")" == INT8 ]] && ! given --calibration "$@"; then
  calibrate=true
fi
int8_build=false  # the default build (no --precision, --target or --device) adds the INT8 CPU build
if [[ "${INT8:-1}" != 0 ]] && ! given --precision "$@" && ! given --target "$@" && ! given --device "$@"; then
  int8_build=true
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
  # the class prior (agegender/deploy/prior.py): the natural frequencies of the training faces over those of
  # the list the net trained on, at the task's weight (age 0.5, gender 0: agegender/tasks.py); PRIOR=0 skips it
  if [[ "${PRIOR:-1}" != 0 ]] && ! given --prior "$@" && [ -f "$lists/${task}_train_natural.txt" ] \
      && [ -f "$lists/${task}_train.txt" ]; then
    extra+=(--prior "$lists/${task}_train_natural.txt" --trained-on "$lists/${task}_train.txt")
  fi
  "$python" -m agegender compile --model "$prototxt/${net}_deploy.prototxt" --weights "$models/$net" \
    --mean "$mean" --labels "$task" --output "$graph/$net" "${extra[@]}" "$@"
  if $int8_build; then
    if [ -f "$lmdb/${task}_train_lmdb/data.mdb" ]; then
      "$python" -m agegender compile --model "$prototxt/${net}_deploy.prototxt" --weights "$models/$net" \
        --mean "$mean" --labels "$task" --output "$graph/${net}_int8" --precision INT8 --target cpu \
        --calibration "$lmdb/${task}_train_lmdb" "${extra[@]}" "$@"
    else
      echo "compile2Movidius.sh: no $lmdb/${task}_train_lmdb to calibrate on: no INT8 build of $net (FP16 only)" >&2
      rm -f "$graph/${net}_int8.json" "$graph/${net}_int8.xml" "$graph/${net}_int8.bin"  # never a stale one
    fi
  elif [[ "${INT8:-1}" == 0 ]]; then
    rm -f "$graph/${net}_int8.json" "$graph/${net}_int8.xml" "$graph/${net}_int8.bin"
  fi
done
