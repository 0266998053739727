#!/usr/bin/env bash
# Shared body of train_AgeNet.sh / train_GenderNet.sh: NET [extra args for `agegender train`, passed untouched].
# Trains prototxt/NET_solver.prototxt (snapshots go to its snapshot_prefix, models/NET/). A net whose task fine-tunes
# from another (agegender/tasks.py: AgeNet from GenderNet) starts from that net's newest snapshot, when there is one
# and neither --weights nor --snapshot is given.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/python.sh"
net="$1"
shift
cd "$root"
start=()
if ! given --weights "$@" && ! given --snapshot "$@"; then
  weights="$("$python" -m agegender.tasks fine-tune-weights "$net")"
  [ -n "$weights" ] && start=(--weights "$weights")
fi
exec "$python" -m agegender train --solver "prototxt/${net}_solver.prototxt" "${start[@]}" "$@"
