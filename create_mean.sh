#!/usr/bin/env bash
# data/lmdb/age_train_lmdb -> data/mean/mean.binaryproto (1x3xHxW) and mean.npy, as compute_image_mean did.
# Run from the repository root; extra arguments (--lmdb, --out): see --help.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/python.sh"
exec "$python" -m agegender mean "$@"
