#!/usr/bin/env bash
# GenderNet fine-tuned on a race-balanced list instead of every source's faces once (a benchmark, not a test):
# does evening out UTKFace's races (White 10,076 of 22,711 training faces, Others 1,692) help gender in the wild?
#
#   benchmarks/race_balanced_probe.sh [SEED ...]        (default: 42 7)
#
# Needs the pipeline run with --extra (data/DEF/{age,gender}_pretrain.txt, models/AgeGenderNet_pretrain, graph/).
# Writes data/probe/racebal/: lists with each race's share of data/DEF/gender_pretrain.txt made equal (a race
# above its share sampled down, one below repeated at random; seed 42; only faces already in the pre-training
# list, so no test face), their LMDBs (`agegender lmdb --splits pretrain`), a copy of
# prototxt/GenderNet_train_test.prototxt reading them, then per seed benchmarks/finetune_probe.sh GenderNet
# g_racebalSEED on it: validation faces and FairFace dev only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
source benchmarks/solver.sh
out=data/probe/racebal
[ -f data/DEF/gender_pretrain.txt ] || {
  echo "race_balanced_probe.sh: no data/DEF/gender_pretrain.txt; run ./run_pipeline.sh SOURCE --extra DIR first" >&2; exit 2; }
mkdir -p "$out/lists"
"$python" - "$out/lists" <<'PY'
import collections, random, sys
random.seed(42)
ages = dict(line.split() for line in open("data/DEF/age_pretrain.txt"))
by_race = collections.defaultdict(list)
for line in open("data/DEF/gender_pretrain.txt"):
    path = line.split()[0]
    by_race[path.rsplit("/", 1)[1].split("_")[2]].append(line)  # UTKFace's [age]_[gender]_[race]_...
share = sum(map(len, by_race.values())) // len(by_race)
lines = []
for race, faces in sorted(by_race.items()):
    lines += random.sample(faces, share) if len(faces) >= share else faces + random.choices(faces, k=share - len(faces))
    print(f"race {race}: {len(faces)} faces -> {share} entries")
random.shuffle(lines)
open(f"{sys.argv[1]}/gender_pretrain.txt", "w").writelines(lines)
open(f"{sys.argv[1]}/age_pretrain.txt", "w").writelines(f"{l.split()[0]} {ages[l.split()[0]]}\n" for l in lines)
PY
"$python" -m agegender lmdb --lists "$out/lists" --out "$out/lmdb" --splits pretrain | tail -1
lmdb_copy prototxt/GenderNet_train_test.prototxt "$out/GenderNet_train_test.prototxt" "$out/lmdb" gender_pretrain_lmdb
for seed in "${@:-42 7}"; do
  for s in $seed; do
    SEED=$s benchmarks/finetune_probe.sh GenderNet "g_racebal$s" "net: \"$out/GenderNet_train_test.prototxt\""
  done
done
