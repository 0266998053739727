#!/usr/bin/env bash
# Both fine-tunings on lists whose turned heads are repeated (a benchmark, not a test): FairFace's candid faces
# are turned far more often than UTKFace's chips, and the nets do worst on turned faces (benchmarks/crop_probe.py).
#
#   REPEAT=0.2:2,0.3:4 PRETRAIN=models/AgeGenderNet_pretrain [NETS=GenderNet] benchmarks/pose_probe.sh NAME [SEED ...]
#
# Needs the pipeline run with --extra (data/DEF/*, the LMDBs, graph/). Writes data/probe/NAME/: the four training
# lists of the fine-tunings (GenderNet: every source's faces, data/DEF/*_pretrain.txt; AgeNet: the Asian balanced
# lists, data/DEF/*_train.txt) with each face repeated by its head turn (benchmarks/pose_lists.py --repeat
# REPEAT; turns cached in data/probe/posebal_turns.tsv), their LMDBs, copies of the fine-tuning prototxts that
# read them, then per SEED (default 42) benchmarks/finetune_probe.sh for GenderNet and AgeNet, or the NETS named
# (data/probe/g_NAME_SEED, a_NAME_SEED): validation faces and FairFace dev only, never the test split.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
source benchmarks/solver.sh
[ $# -ge 1 ] || { echo "usage: benchmarks/pose_probe.sh NAME [SEED ...]" >&2; exit 2; }
name="$1"; shift
out="data/probe/$name"
[ -f data/DEF/gender_pretrain.txt ] || {
  echo "pose_probe.sh: no data/DEF/gender_pretrain.txt; run ./run_pipeline.sh SOURCE --extra DIR first" >&2; exit 2; }
"$python" benchmarks/pose_lists.py "$out/lists" --repeat "${REPEAT:-0.2:2,0.3:4}" --cache data/probe/posebal_turns.tsv \
  data/DEF/{age,gender}_pretrain.txt data/DEF/{age,gender}_train.txt
"$python" -m agegender lmdb --lists "$out/lists" --out "$out/lmdb" --splits train pretrain | tail -1
lmdb_copy prototxt/AgeNet_finetune_train_test.prototxt "$out/AgeNet_finetune_train_test.prototxt" "$out/lmdb" \
  age_train_lmdb age_pretrain_lmdb
lmdb_copy prototxt/GenderNet_train_test.prototxt "$out/GenderNet_train_test.prototxt" "$out/lmdb" \
  gender_train_lmdb gender_pretrain_lmdb
nets="${NETS:-GenderNet AgeNet}"
for seed in "${@:-42}"; do
  if [[ " $nets " == *" GenderNet "* ]]; then
    SEED=$seed benchmarks/finetune_probe.sh GenderNet "g_${name}_$seed" "net: \"$out/GenderNet_train_test.prototxt\""
  fi
  if [[ " $nets " == *" AgeNet "* ]]; then
    SEED=$seed TRAINED_ON="$out/lists/age_train.txt" benchmarks/finetune_probe.sh AgeNet "a_${name}_$seed" \
      "net: \"$out/AgeNet_finetune_train_test.prototxt\""
  fi
done
