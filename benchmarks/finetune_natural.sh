#!/usr/bin/env bash
# The natural-distribution training lists (build_dataset.py --balanced none: each Asian training face once)
# fine-tuned from the same shared pre-training as the default balanced lists (a benchmark, not a test): the
# natural-list rows of README's UTKFace table and FairFace table.
#
#   benchmarks/finetune_natural.sh
#
# Needs the pipeline's stages up to "pretrain" (data/lmdb with the val/test/pretrain LMDBs, data/mean,
# models/AgeGenderNet_pretrain). Writes only under data/natural/ and models/natural/: the lists (same seed, so the
# same split, validation and 687 test faces as data/DEF), the natural training LMDBs (the other splits linked
# from data/lmdb), copies of prototxt/*_finetune_solver.prototxt and the train_test prototxts they name
# reading them, both nets fine-tuned (models/natural/NET), tested once on the test split
# (data/natural/{gender,age}.json), compiled as compile2Movidius.sh builds them (data/natural/graph; the INT8
# choice on the validation faces) and run end to end on FairFace dev (bench_wild.py, UltraFace + O-Net alignment
# from ../shared, no peer; data/natural/wild.txt and wild_mirror.txt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
source benchmarks/solver.sh
for need in models/AgeGenderNet_pretrain data/lmdb/age_val_lmdb data/lmdb/age_test_lmdb data/mean/mean.binaryproto; do
  [ -e "$need" ] || { echo "finetune_natural.sh: no $need; run ./run_pipeline.sh SOURCE --extra DIR first" >&2; exit 2; }
done
images="${IMAGES:-../shared/datasets/utkface-asian}" extra="${EXTRA:-../shared/datasets/utkface-other}"
detectors="${DETECTOR_DIR:-../shared/caffe-fixtures}"
out=data/natural; mkdir -p "$out/lmdb" "$out/prototxt"
uptime > "$out/uptime_start.txt"
"$python" build_dataset.py --images "$images" --extra-images "$extra" --balanced none --lists "$out/DEF" \
  --augmented "$out/augmented" > "$out/build_dataset.log"
./create_lmdb.sh --lists "$out/DEF" --out "$out/lmdb" --splits train > "$out/create_lmdb.log" 2>&1
for task in age gender; do
  for split in val test pretrain; do ln -sfn "$(realpath "data/lmdb/${task}_${split}_lmdb")" "$out/lmdb/${task}_${split}_lmdb"; done
done
for net in GenderNet AgeNet; do
  task=$([ "$net" = GenderNet ] && echo gender || echo age)
  sed 's#data/lmdb/#data/natural/lmdb/#' "$(solver_net "prototxt/${net}_finetune_solver.prototxt")" \
    > "$out/prototxt/${net}_train_test.prototxt"
  grep -v -e '^net:' -e '^snapshot_prefix:' "prototxt/${net}_finetune_solver.prototxt" > "$out/prototxt/${net}_finetune_solver.prototxt"
  printf 'net: "%s"\nsnapshot_prefix: "models/natural/%s/%s"\n' "$out/prototxt/${net}_train_test.prototxt" "$net" "$net" \
    >> "$out/prototxt/${net}_finetune_solver.prototxt"
  mkdir -p "models/natural/$net"
  start=$(date +%s)
  "$python" -m agegender train --solver "$out/prototxt/${net}_finetune_solver.prototxt" \
    --weights models/AgeGenderNet_pretrain > "$out/${net}_train.log" 2>&1
  echo "$net $(( $(date +%s) - start ))" >> "$out/wall_seconds.txt"
  "$python" -m agegender test --model "prototxt/${net}_deploy.prototxt" --weights "models/natural/$net" \
    --mean data/mean/mean.binaryproto --lmdb "data/lmdb/${task}_test_lmdb" --labels "$task" --json "$out/$task.json" \
    | grep -E "^(Accuracy|1-off|macro)" | sed "s/^/natural $net: /"
done
MODELS_DIR=models/natural LMDB_DIR="$out/lmdb" GRAPH_DIR="$out/graph" ./compile2Movidius.sh --check none > "$out/compile.log"
for mirror in "" --mirror; do
  "$python" benchmarks/bench_wild.py --graph_dir "$out/graph" --no-peer \
    --infer-args "--detector ultraface --detector-dir $detectors $mirror" > "$out/wild${mirror:+_mirror}.txt"
  sed "s/^/natural${mirror:+ $mirror}: /" "$out/wild${mirror:+_mirror}.txt"
done
uptime > "$out/uptime_end.txt"
