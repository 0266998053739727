#!/usr/bin/env bash
# The one place that chooses the interpreter of the shell doors (test_*.sh, train_*.sh, create_*.sh, ...).
# Sourced: sets $root (the checkout), $python and PYTHONPATH (the checkout first, so `"$python" -m agegender`
# runs from any folder without `pip install -e .`) and defines `given` and `value`. Executed:
# `scripts/python.sh ARGS` runs "$python" ARGS (build_dataset.py uses it).
# $python: $AGEGENDER_PYTHON when set, else the checkout's .venv/bin/python, else $PYTHON, else python3.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${AGEGENDER_PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="${PYTHON:-python3}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

# given FLAG ARGS...: whether ARGS hold FLAG as `FLAG VALUE` or `FLAG=VALUE` (the commands refuse abbreviations).
given() {
  local flag="$1" arg
  shift
  for arg in "$@"; do
    [[ "$arg" == "--" ]] && return 1
    [[ "$arg" == "$flag" || "$arg" == "$flag="* ]] && return 0
  done
  return 1
}

# value FLAG ARGS...: the last value given to FLAG in either form (argparse keeps the last), else nothing.
value() {
  local flag="$1" found="" next=false arg
  shift
  for arg in "$@"; do
    if $next; then found="$arg" next=false
    elif [[ "$arg" == "$flag" ]]; then next=true
    elif [[ "$arg" == "$flag="* ]]; then found="${arg#*=}"
    fi
  done
  printf '%s' "$found"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  exec "$python" "$@"
fi
