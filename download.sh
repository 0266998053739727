#!/usr/bin/env bash
# Copy the Asian faces of UTKFace into data/UTKFace_AsianOnly/ from SOURCE: a UTKFace .tar.gz/.zip, a folder of
# its images, or the URL of an archive (downloaded only then). Run from the repository root:
#   ./download.sh ../shared/datasets/utkface-asian        (--race all|0-4, --out DIR: see --help)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/python.sh"
exec "$python" -m agegender dataset fetch "$@"
