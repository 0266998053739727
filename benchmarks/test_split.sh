#!/usr/bin/env bash
# The UTKFace test split (687 Asian faces), read once per final model of a recipe chosen on validation and
# FairFace dev by finetune_probe.sh (which never reads it): each probe's caffemodel (PyTorch engine) and its
# FP16 IR (AgeNet's with the class prior), accuracy, 1-off and macro-F1 in data/reports/test_split/PROBE.*.json.
#
#   benchmarks/test_split.sh PROBE ...   (data/probe/PROBE/ of finetune_probe.sh; a_* / fr_a_* are AgeNet)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"; [ -x "$python" ] || python=python3
[ $# -ge 1 ] || { echo "usage: benchmarks/test_split.sh PROBE ... (folders of data/probe/)" >&2; exit 2; }
out=data/reports/test_split
mkdir -p "$out"
for probe in "$@"; do
  case "$probe" in a_*|*_a_*) net=AgeNet task=age ;; g_*|*_g_*) net=GenderNet task=gender ;;
    *) echo "test_split.sh: $probe is neither an AgeNet (a_*) nor a GenderNet (g_*) probe" >&2; exit 2 ;; esac
  [ -f "data/probe/$probe/graph/$net.xml" ] || { echo "test_split.sh: no data/probe/$probe/graph/$net.xml" >&2; exit 2; }
  PYTHONPATH=. "$python" -m agegender test --ir "data/probe/$probe/graph/$net.xml" --lmdb "data/lmdb/${task}_test_lmdb" \
    --json "$out/$probe.ir.json" > /dev/null 2> "$out/$probe.log" || { cat "$out/$probe.log" >&2; exit 1; }
  PYTHONPATH=. "$python" -m agegender test --model "prototxt/${net}_deploy.prototxt" --weights "models/probe/$probe/$net" \
    --mean data/mean/mean.binaryproto --lmdb "data/lmdb/${task}_test_lmdb" --json "$out/$probe.caffe.json" > /dev/null 2>> "$out/$probe.log" || { cat "$out/$probe.log" >&2; exit 1; }
  "$python" - "$out/$probe" <<'PY'
import json, sys
line = []
for kind in ("caffe", "ir"):
    r = json.load(open(f"{sys.argv[1]}.{kind}.json"))
    extra = f", 1-off {100 * r['one_off']:.1f}%" if "one_off" in r else ""
    line.append(f"{kind} {100 * r['accuracy']:.1f}% ({r['correct']}/{r['total']}{extra}, macro-F1 {r['macro_f1']:.3f})")
print(sys.argv[1].rsplit("/", 1)[1] + ": " + "; ".join(line))
PY
done
