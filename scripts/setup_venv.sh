#!/usr/bin/env bash
# Create or update .venv/ in the checkout from the pinned requirements; a no-op when nothing changed.
# Usage: scripts/setup_venv.sh [requirements file]   (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="${1:-$root/requirements.txt}"
venv="$root/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(cat "$req" "$root"/requirements-edge.txt | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $("$python" --version 2>&1)" >&2
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing $(basename "$req") into .venv (first run takes a minute or two)" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
