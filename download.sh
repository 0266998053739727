#!/usr/bin/env bash
# Copy the Asian faces of UTKFace into data/UTKFace_AsianOnly/ from SOURCE: a UTKFace .tar.gz/.zip, a folder of
# its images, or the URL of an archive (downloaded only then). Run from the repository root:
#   ./download.sh ../shared/datasets/utkface-asian        (--race all|0-4, --out DIR: see --help)
# Or fetch a CNN face detector's Caffe files (pinned URLs, sha256 checked) into graph/detectors/NAME:
#   ./download.sh --detector ultraface|mtcnn|yunet-ssd    (--out DIR, --graph_dir DIR)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/python.sh"
if [ "${1:-}" = "--detector" ]; then
  shift
  exec "$python" -m agegender detector fetch "$@"
fi
exec "$python" -m agegender dataset fetch "$@"
