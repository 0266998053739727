#!/usr/bin/env bash
# Train GenderNet from prototxt/GenderNet_solver.prototxt on data/lmdb; snapshots go to models/GenderNet/.
# Extra arguments go to `python -m agegender train` untouched: --max-iter N, --snapshot S.solverstate (resume),
# --weights W.caffemodel (fine-tune), --device auto|cpu|cuda, --workers N. Several GPUs: see docs/training.md.
exec "$(dirname "$0")/scripts/train_net.sh" GenderNet "$@"
