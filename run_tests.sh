#!/usr/bin/env bash
# Set up .venv/ (pinned requirements) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q tests "$@"
