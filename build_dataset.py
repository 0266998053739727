#!/usr/bin/env python3
"""Split data/UTKFace_AsianOnly 80/20 stratified by age bin, write data/DEF/*.txt (oversampled with --balanced).

``python3 build_dataset.py [--seed N] [--images DIR] ...``, run from the repository root: a door into
``python -m agegender dataset build``, run by the interpreter scripts/python.sh chooses (the checkout's .venv
when there is one, else this one); the arguments pass through untouched.
"""
import os
import sys

if __name__ == "__main__":
    door = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "python.sh")
    os.environ.setdefault("PYTHON", sys.executable)  # python.sh's choice when there is no .venv
    os.execv(door, [door, "-m", "agegender", "dataset", "build", *sys.argv[1:]])
