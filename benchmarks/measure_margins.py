"""How each detector's box sits in a UTKFace "aligned & cropped" chip: the margins that frame a detected face
like the training chips, and (for detectors with landmarks) the median landmark positions on a 200x200 chip.

    .venv/bin/python benchmarks/measure_margins.py [--detector-dir ../shared/caffe-fixtures] [--every 8]

Runs ``Detector.detect`` on every --every-th chip of ../shared/datasets/utkface-asian (sorted by name; 430
chips with --every 8); on the chips where exactly one face is found, the chip extends beyond the box by
(left, top, right, bottom) fractions of the box's width/height; prints the median of each, which is what
the registry entries in agegender/deploy/detectors/__init__.py hold (negative: the box reaches past the chip).

``--fidelity``: how faithfully the aligned crop run_inference makes (``--align auto``: the detector's boxes,
O-Net's landmarks, the similarity onto the registered template) reproduces each chip itself, by how far the
head is turned (the nose's sideways offset from between the eyes, in eye distances): the median scale of the
chip-to-crop transform (1: the face as large as in the chip) and the median shift of the chip's centre.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender.deploy import detectors  # noqa: E402

UTKFACE = ROOT.parent / "shared" / "datasets" / "utkface-asian"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector-dir", type=Path, default=ROOT.parent / "shared" / "caffe-fixtures")
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--detectors", help="comma-separated registry names (default: all; with --fidelity, ultraface)")
    parser.add_argument("--fidelity", action="store_true", help="only the aligned crops' fidelity to the chips, "
                        "by head turn, for --detectors (default ultraface)")
    args = parser.parse_args()
    if args.fidelity:
        chips = sorted(UTKFACE.glob("*.jpg"))[::args.every]
        for name in (args.detectors or "ultraface").split(","):
            fidelity(name, args.detector_dir, chips)
        return 0
    chips = sorted(UTKFACE.glob("*.jpg"))[::args.every]
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / "agegender-measure-margins"
    for name in (args.detectors or ",".join(detectors.REGISTRY)).split(","):
        detector = detectors.load(name, [args.detector_dir], "CPU", cache)
        margins, points = [], []
        for chip in chips:
            image = cv2.imread(str(chip))
            found = detector.detect(image)
            if len(found) != 1:
                continue
            x0, y0, x1, y1 = found[0].box
            w, h = x1 - x0, y1 - y0
            margins.append((x0 / w, y0 / h, (image.shape[1] - x1) / w, (image.shape[0] - y1) / h))
            if found[0].landmarks is not None:
                points.append(found[0].landmarks * (200.0 / image.shape[1], 200.0 / image.shape[0]))
        median = np.median(np.array(margins), axis=0)
        print(f"{name}: {len(margins)} of {len(chips)} chips with one face; margins (left, top, right, bottom) = "
              f"({', '.join(f'{v:.2f}' for v in median)})")
        if points:
            template = np.median(np.array(points), axis=0)
            print(f"  landmarks on a 200x200 chip: ({', '.join(f'({x:.1f}, {y:.1f})' for x, y in template)})")
    return 0


TURNS = ((0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, float("inf")))


def fidelity(name: str, detector_dir: Path, chips: list[Path]) -> None:
    from agegender.deploy.faces import head_turn, make_finder, similarity

    finder = make_finder("detect", name, [detector_dir], align="auto")
    template = np.asarray(detectors.REGISTRY["mtcnn"].template, np.float64)
    rows = []
    for chip in chips:
        image = cv2.imread(str(chip))
        found = finder.detector.detect(image)
        if finder.landmarker is not None:
            found = finder.landmarker.add(image, found)
        found = [det for det in found if det.landmarks is not None]
        if len(found) == 1 and image.shape[:2] == (200, 200):
            matrix = similarity(found[0].landmarks, template)
            shift = matrix @ np.array([100.0, 100.0, 1.0]) - 100.0
            rows.append((head_turn(np.asarray(found[0].landmarks)), float(np.hypot(*matrix[:, 0])),
                         float(np.hypot(*shift))))
    print(f"{name}{' + O-Net' if finder.landmarker is not None else ''}: aligned crops of {len(rows)} of "
          f"{len(chips)} chips (one face with landmarks) against the chips themselves")
    print("  head turn | chips | median scale | median centre shift (px of 200)")
    values = np.array(rows)
    for low, high in TURNS:
        sel = values[(values[:, 0] >= low) & (values[:, 0] < high)] if len(values) else values
        if len(sel):
            print(f"  {low:.2f}-{high:.2f} | {len(sel)} | {np.median(sel[:, 1]):.3f} | {np.median(sel[:, 2]):.1f}")


if __name__ == "__main__":
    sys.exit(main())
