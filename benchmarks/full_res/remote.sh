#!/usr/bin/env bash
# On the GPU machine (run by the device tool, from the repository root, with .gpu/ and .whl/ carried): rebuild the
# pre-training and validation LMDBs from pack.py's pack, then pre-train AgeGenderNet without pool0 (227x227 input)
# and, as the control on the same data and machine, with pool0, for each seed in SEEDS, all at once; export each
# final snapshot as float16 (weights.py) and the logs to $OUT as one tar split in 15 MiB parts.
# Env: SEEDS (default "42 7"), NETS (default "full pool0"; "strong": pool0 with strong.py's stronger augmentation),
# SNAPSHOT interval (default 500), WORKERS per run (default 3; WORKERS_FULL for the nets
# without pool0), LIMIT seconds after which
# trainings are stopped (default 450; the latest snapshot of a stopped run is exported), MAX_ITER (smoke tests).
set -uo pipefail
start=$(date +%s)
out="${OUT:-/tmp/full_res_out}"; mkdir -p "$out"
log="$out/remote.log"
exec > >(tee -a "$log") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 OPENCV_FOR_THREADS_NUM=1 OMP_NUM_THREADS=2
nvidia-smi -L 2>/dev/null; echo "$(getconf _NPROCESSORS_ONLN) CPUs"
python3 -c "import torch, cv2, PIL, lmdb, google.protobuf as p; print('torch', torch.__version__, torch.cuda.is_available(), 'cv2', cv2.__version__, 'PIL', PIL.__version__, 'protobuf', p.__version__)"
[ -e data/mean/mean.binaryproto ] || { mkdir -p data/mean && cp .gpu/mean.binaryproto data/mean/mean.binaryproto; }
df -h /dev/shm . | sed 1d
# the four LMDBs take ~18 GB of raw Datums: in RAM when /dev/shm has room (disk writes can be slow there)
if [ ! -e data/lmdb ] && [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt 25000000 ] 2>/dev/null; then
  mkdir -p /dev/shm/lmdb && ln -s /dev/shm/lmdb data/lmdb
fi
# a warm machine keeps an earlier call's unpacked LMDBs (their stamps say so): used again
if grep -qs "unpacked from" data/lmdb/age_pretrain_lmdb/agegender.json; then echo "LMDBs unpacked by an earlier call"
else python3 benchmarks/full_res/unpack.py .gpu || { echo "unpack failed"; exit 1; }; fi
python3 benchmarks/full_res/prototxts.py data/full_res/prototxt || exit 1
python3 benchmarks/full_res/strong.py data/full_res/strong_prototxt || exit 1
mkdir -p data/full_res/logs
echo "setup took $(( $(date +%s) - start )) s"
source benchmarks/solver.sh
pids=() solvers=()
for net in ${NETS:-full pool0}; do
  dir=prototxt; [ "$net" = full ] && dir=data/full_res/prototxt; [ "$net" = strong ] && dir=data/full_res/strong_prototxt
  for seed in ${SEEDS:-42 7}; do
    name="${net}_$seed" solver="data/full_res/${net}_$seed.solver.prototxt"
    solver_copy "$dir/AgeGenderNet_pretrain_solver.prototxt" "$solver" \
      "snapshot_prefix: \"models/full_res/$name/AgeGenderNet_pretrain\"" "random_seed: $seed" "snapshot: ${SNAPSHOT:-500}" \
      ${MAX_ITER:+"max_iter: $MAX_ITER"}
    workers="${WORKERS:-3}"; [ "$net" = full ] && workers="${WORKERS_FULL:-$workers}"
    python3 -m agegender train --solver "$solver" --device "${DEVICE:-GPU}" --workers "$workers" \
      > "data/full_res/logs/$name.train.log" 2>&1 &
    pids+=($!) solvers+=("$solver")
  done
done
deadline=$(( start + ${LIMIT:-450} ))
alive() { local p; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while alive && [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 5
  for s in "${solvers[@]}"; do n=$(basename "$s" .solver.prototxt); echo "$(( $(date +%s) - start )) s $n: $(grep -o 'Iteration [0-9]*' "data/full_res/logs/$n.train.log" | tail -1)"; done | paste -sd ' ' 
done
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait "${pids[@]}"
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
for s in "${solvers[@]}"; do
  n=$(basename "$s" .solver.prototxt)
  last=$(ls -t "models/full_res/$n"/*.caffemodel 2>/dev/null | head -1)
  it="${last##*_iter_}"; it="${it%.caffemodel}"
  [ -n "$last" ] && python3 benchmarks/full_res/weights.py export "$last" "data/full_res/${n}_iter_$it.npz" \
    && echo "$n: exported $last"
done
cp data/full_res/*.solver.prototxt data/full_res/logs/ 2>/dev/null
(cd data/full_res && tar cf "$out/logs.tar" logs)
(cd data/full_res && tar cf - *.npz) | split -b 15M -d - "$out/weights.tar."
echo "total $(( $(date +%s) - start )) s"
