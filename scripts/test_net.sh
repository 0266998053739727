#!/usr/bin/env bash
# Shared body of test_AgeNet.sh / test_GenderNet.sh: NET TASK [extra args for `agegender test`].
# Without --ir it tests the newest snapshot in models/NET/ with prototxt/NET_deploy.prototxt, as the original did.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
net="$1" task="$2"
shift 2
cd "$root"
python=".venv/bin/python"; [ -x "$python" ] || python=python3
lmdb=(--lmdb "data/lmdb/${task}_test_lmdb")
if [[ " $* " == *" --ir "* ]]; then
  exec "$python" -m agegender test --labels "$task" "${lmdb[@]}" "$@"
fi
exec "$python" -m agegender test --model "prototxt/${net}_deploy.prototxt" --weights "models/${net}" \
  --mean data/mean/mean.binaryproto --labels "$task" "${lmdb[@]}" "$@"
