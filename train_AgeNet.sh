#!/usr/bin/env bash
# Train AgeNet from prototxt/AgeNet_solver.prototxt on data/lmdb; snapshots go to models/AgeNet/.
# Extra arguments go to `python -m agegender train`: --max-iter N, --snapshot S.solverstate (resume),
# --weights W.caffemodel (fine-tune), --device cpu|cuda, --workers N. Several GPUs: see docs/training.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
python=".venv/bin/python"; [ -x "$python" ] || python=python3
exec "$python" -m agegender train --solver prototxt/AgeNet_solver.prototxt "$@"
