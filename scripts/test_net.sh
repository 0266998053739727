#!/usr/bin/env bash
# Shared body of test_AgeNet.sh / test_GenderNet.sh: NET TASK [extra args for `agegender test`, passed untouched].
# Without --ir or --model it tests the newest snapshot in models/NET/ with prototxt/NET_deploy.prototxt, as the
# original did; the LMDB is data/lmdb/TASK_test_lmdb unless --lmdb says otherwise.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/python.sh"
net="$1" task="$2"
shift 2
cd "$root"
defaults=(--labels "$task" --lmdb "data/lmdb/${task}_test_lmdb")  # before "$@": a later flag wins
if ! given --ir "$@" && ! given --model "$@"; then
  defaults+=(--model "prototxt/${net}_deploy.prototxt" --weights "models/${net}" --mean data/mean/mean.binaryproto)
fi
exec "$python" -m agegender test "${defaults[@]}" "$@"
