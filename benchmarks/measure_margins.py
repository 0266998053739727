"""How each detector's box sits in a UTKFace "aligned & cropped" chip: the margins that frame a detected face
like the training chips, and (for detectors with landmarks) the median landmark positions on a 200x200 chip.

    .venv/bin/python benchmarks/measure_margins.py [--detector-dir ../shared/caffe-fixtures] [--every 8]

Runs ``Detector.detect`` on every --every-th chip of ../shared/datasets/utkface-asian (sorted by name; 430
chips with --every 8); on the chips where exactly one face is found, the chip extends beyond the box by
(left, top, right, bottom) fractions of the box's width/height; prints the median of each, which is what
the registry entries in agegender/deploy/detectors/__init__.py hold (negative: the box reaches past the chip).
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
    parser.add_argument("--detectors", default=",".join(detectors.REGISTRY))
    args = parser.parse_args()
    chips = sorted(UTKFACE.glob("*.jpg"))[::args.every]
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / "agegender-measure-margins"
    for name in args.detectors.split(","):
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


if __name__ == "__main__":
    sys.exit(main())
