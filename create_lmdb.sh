#!/usr/bin/env bash
# data/DEF/{age,gender}_{train,test}.txt -> data/lmdb/{age,gender}_{train,test}_lmdb (Caffe Datum, 256x256, shuffled),
# as convert_imageset did. Run from the repository root; extra arguments (--resize, --workers, ...): see --help.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="$root/.venv/bin/python"; [ -x "$python" ] || python=python3
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m agegender lmdb "$@"
