"""Training lists with turned heads repeated (a benchmark's helper, not a stage of the pipeline): FairFace's candid
faces are far more often turned than UTKFace's chips (benchmarks/crop_probe.py), and the nets do worst on them.

    .venv/bin/python benchmarks/pose_lists.py OUT_DIR LIST [LIST ...] [--repeat 0.2:2,0.3:4]

Each image of each LIST (build_dataset.py's "path label" lines) is given its head turn
(agegender.deploy.faces.head_turn) from UltraFace + O-Net landmarks, found as run_inference.py finds them and
cached in OUT_DIR/turns.tsv or --cache FILE (a chip without exactly one face keeps turn 0; an oversampled copy takes its
chip's). OUT_DIR/NAME of each LIST then holds its lines, each repeated by the --repeat of the largest turn
threshold it reaches (default: 2 times from 0.2, 4 times from 0.3), shuffled with seed 42. Only lines of the
given lists are repeated, so no face enters a split it was not in.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from measure_margins import TURNS  # noqa: E402

from agegender.deploy.faces import head_turn, make_finder  # noqa: E402
from agegender.progress import Progress  # noqa: E402


def source(path: str) -> str:
    """The chip an oversampled copy was made from (build_dataset.py's ``..._augmented/NAME_flip_noise1.jpg``:
    flips and noise keep the head turn's size), else ``path`` itself."""
    folder, _, name = path.rpartition("/")
    if folder.endswith("_augmented") and ".chip.jpg_" in name:
        return f"{folder[:-len('_augmented')]}/{name.split('.chip.jpg_')[0]}.chip.jpg"
    return path


def turns(paths: list[str], cache: Path, detector_dir: Path) -> dict[str, float]:
    """Head turn per image path (cached by source chip in ``cache``, a TSV of path and turn)."""
    wanted = {p: source(p) for p in paths}
    paths = list(dict.fromkeys(wanted.values()))
    known = dict(line.rstrip("\n").split("\t") for line in open(cache)) if cache.exists() else {}
    todo = [p for p in dict.fromkeys(paths) if p not in known]
    if todo:
        finder = make_finder("detect", "ultraface", [detector_dir], align="auto")
        progress = Progress(len(todo), "head turns")
        with open(cache, "a") as out:
            for path in todo:
                image = cv2.imread(str(ROOT / path))
                if image is None:
                    sys.exit(f"pose_lists.py: cannot read {ROOT / path}; run the benchmark from the checkout the "
                             "lists were built in")
                found = finder.detector.detect(image)
                found = finder.landmarker.add(image, found) if found else found
                turn = head_turn(np.asarray(found[0].landmarks)) if (
                    len(found) == 1 and found[0].landmarks is not None) else 0.0
                out.write(f"{path}\t{turn:.4f}\n")
                known[path] = f"{turn:.4f}"
                progress.update(1)
    return {p: float(known[s]) for p, s in wanted.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("lists", type=Path, nargs="+")
    parser.add_argument("--repeat", default="0.2:2,0.3:4", help="THRESHOLD:TIMES,... (default %(default)s)")
    parser.add_argument("--detector-dir", type=Path, default=ROOT.parent / "shared" / "caffe-fixtures")
    parser.add_argument("--cache", type=Path, help="the head turns' cache, shared between runs "
                        "(default OUT_DIR/turns.tsv)")
    args = parser.parse_args()
    repeats = sorted((float(t), int(n)) for t, n in (item.split(":") for item in args.repeat.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    lines = {path: open(path).read().splitlines() for path in args.lists}
    cache = args.cache or args.out / "turns.tsv"
    cache.parent.mkdir(parents=True, exist_ok=True)
    turn = turns([line.split()[0] for ls in lines.values() for line in ls], cache, args.detector_dir)
    for path, ls in lines.items():
        out = []
        for line in ls:
            times = max([n for t, n in repeats if turn[line.split()[0]] >= t], default=1)
            out += [line] * times
        random.Random(42).shuffle(out)
        (args.out / path.name).write_text("\n".join(out) + "\n")
        shares = [np.mean([low <= turn[line.split()[0]] < high for line in ls]) for low, high in TURNS]
        print(f"{path}: {len(ls)} lines -> {len(out)}; head turn shares "
              + ", ".join(f"{low}-{high:g} {100 * s:.1f}%" for (low, high), s in zip(TURNS, shares)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
