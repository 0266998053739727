#!/usr/bin/env python3
"""Split data/UTKFace_AsianOnly 80/20 stratified by age bin, oversample the training part, write data/DEF/*.txt.

``python3 build_dataset.py [--seed N] [--images DIR] ...``, run from the repository root: a door into
``python -m agegender dataset build`` (with the checkout's .venv when there is one).
"""
import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")

if __name__ == "__main__":
    if os.path.exists(VENV_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(ROOT, ".venv")):
        os.execv(VENV_PYTHON, [VENV_PYTHON, *sys.argv])
    sys.path.insert(0, ROOT)
    from agegender.cli import main

    sys.exit(main(["dataset", "build", *sys.argv[1:]]))
