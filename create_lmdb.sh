#!/usr/bin/env bash
# data/DEF/{age,gender}_{train,test}.txt -> data/lmdb/{age,gender}_{train,test}_lmdb (Caffe Datum, 256x256, shuffled),
# as convert_imageset did. Run from the repository root; extra arguments (--resize, --workers, ...): see --help.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/python.sh"
exec "$python" -m agegender lmdb "$@"
