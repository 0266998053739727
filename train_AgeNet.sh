#!/usr/bin/env bash
# Train AgeNet from prototxt/AgeNet_solver.prototxt on data/lmdb; snapshots go to models/AgeNet/.
# By default it fine-tunes from the newest GenderNet snapshot in models/GenderNet/ (conv1-fc7 copied by layer
# name), when there is one and neither --weights nor --snapshot is given.
# Extra arguments go to `python -m agegender train` untouched: --max-iter N, --snapshot S.solverstate (resume),
# --weights W.caffemodel (fine-tune), --device auto|cpu|cuda, --workers N. Several GPUs: see docs/training.md.
exec "$(dirname "$0")/scripts/train_net.sh" AgeNet "$@"
