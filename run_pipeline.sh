#!/usr/bin/env bash
# Set up .venv/ and run the whole pipeline on a UTKFace source: dataset, LMDBs, mean, both trainings,
# test reports, compile to OpenVINO IR, one inference. Usage: ./run_pipeline.sh [--quick] [--from STAGE] [SOURCE]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scripts/setup_venv.sh
source scripts/python.sh
exec "$python" -m agegender.pipeline "$@"
