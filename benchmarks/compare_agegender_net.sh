#!/usr/bin/env bash
# AgeGenderNet next to AgeNet + GenderNet on the same data and the same training budget (a benchmark, not a test).
#
#   benchmarks/compare_agegender_net.sh [GENDER_ITER [AGE_ITER]]     # default 2000 1200: the committed recipes
#
# Needs build_dataset.py, create_lmdb.sh and create_mean.sh to have run (data/lmdb, data/mean). Trains, with the
# committed solvers and only max_iter and snapshot_prefix changed (copies in data/compare/):
#   GenderNet GENDER_ITER iterations from scratch, then AgeNet AGE_ITER iterations fine-tuned from it (as
#   train_GenderNet.sh && train_AgeNet.sh do), and AgeGenderNet GENDER_ITER + AGE_ITER iterations from scratch
#   (the same number of batches through the trunk: the same training time);
# then tests each caffemodel on the test LMDBs (`agegender test --json`, one report per net and head) and prints
# the accuracies side by side with the training wall times. Snapshots go to models/compare/, logs and reports
# to data/compare/, so the pipeline's models/ and graph/ are left alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
gender_iter="${1:-2000}"; age_iter="${2:-1200}"; joint_iter=$((gender_iter + age_iter))
out=data/compare; mkdir -p "$out"
uptime | tee "$out/uptime_start.txt"

solver() {  # NET ITER -> a copy of prototxt/NET_solver.prototxt snapshotting to models/compare/NET_ITER
  local copy="$out/$1_$2_solver.prototxt"
  { grep -v '^snapshot_prefix:' "prototxt/$1_solver.prototxt"; echo "snapshot_prefix: \"models/compare/$1_$2\""; } > "$copy"
  echo "$copy"
}

train() {  # NET ITER [train flags...]: trains, records the wall time
  local net="$1" iter="$2"; shift 2
  local start; start=$(date +%s)
  "$python" -m agegender train --solver "$(solver "$net" "$iter")" --max-iter "$iter" "$@" > "$out/${net}_$iter.log" 2>&1
  echo "$net $iter $(( $(date +%s) - start ))" >> "$out/wall_seconds.txt"
}

test_head() {  # NET ITER TASK
  "$python" -m agegender test --model "prototxt/$1_deploy.prototxt" --weights "models/compare/$1_$2_iter_$2.caffemodel" \
    --mean data/mean/mean.binaryproto --lmdb "data/lmdb/$3_test_lmdb" --labels "$3" --json "$out/$1_$2_$3.json" > /dev/null
}

: > "$out/wall_seconds.txt"
train GenderNet "$gender_iter"
train AgeNet "$age_iter" --weights "models/compare/GenderNet_${gender_iter}_iter_${gender_iter}.caffemodel"
train AgeGenderNet "$joint_iter"
test_head GenderNet "$gender_iter" gender
test_head AgeNet "$age_iter" age
test_head AgeGenderNet "$joint_iter" gender
test_head AgeGenderNet "$joint_iter" age
uptime | tee "$out/uptime_end.txt"
"$python" - "$out" "$gender_iter" "$age_iter" "$joint_iter" <<'EOF'
import json, sys
out, g, a, j = sys.argv[1:]
wall = {line.split()[0]: int(line.split()[2]) for line in open(f"{out}/wall_seconds.txt")}
r = lambda net, it, task: json.load(open(f"{out}/{net}_{it}_{task}.json"))
for task, net, it in (("gender", "GenderNet", g), ("age", "AgeNet", a)):
    sep, joint = r(net, it, task), r("AgeGenderNet", j, task)
    extra = lambda s: f", 1-off {100 * s['one_off']:.1f}%" if "one_off" in s else ""
    print(f"{task:6s}: {net} {100 * sep['accuracy']:.1f}% ({sep['correct']}/{sep['total']}{extra(sep)}, "
          f"macro-F1 {sep['macro_f1']:.3f})  AgeGenderNet {100 * joint['accuracy']:.1f}% "
          f"({joint['correct']}/{joint['total']}{extra(joint)}, macro-F1 {joint['macro_f1']:.3f})")
print(f"training: GenderNet {g} + AgeNet {a} iterations {wall['GenderNet'] + wall['AgeNet']} s, "
      f"AgeGenderNet {j} iterations {wall['AgeGenderNet']} s")
EOF
