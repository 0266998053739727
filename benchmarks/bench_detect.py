"""Face detectors side by side: recall and false positives on dlib's annotated PASCAL VOC photos, the same
faces made small (each photo 4 times in a canvas twice its size: faces of 1/20 to 1/30 of its short side),
faces found on the group photos, and time per photo at 320x240, 640x480 and 1280x960; each at every
--min-face asked ("default": the detector's own, as run_inference uses it; 0: one pass).

    .venv/bin/python benchmarks/bench_detect.py [--detector-dir ../shared/caffe-fixtures] [--device CPU] [--repeats 10]
        [--min-face default,0] [--align onet]

Recall: a detector's raw box (before the chip margins) matches an annotated box of ``training.xml`` when their
IoU is >= --iou (0.4: dlib's boxes are tight squares, the detectors' boxes are taller), each annotated face at
most once, best score first; every unmatched detection on the 4 photos, and every detection on ``dogs.jpg``,
is a false positive. Times: the median of --repeats runs of ``Detector.detect`` (downscale, detect, decode)
on group photo 1.jpg resized to each size, after one warm-up run that compiles the IR for that size: wall ms,
and the process's CPU ms (all threads; less disturbed by other work on a loaded machine than wall time).
The last lines are a Markdown table for the README. ``--align onet``: each detector's boxes also go through
MTCNN's O-Net as run_inference's default ``--align auto`` sends them (landmarks; a box only a --min-face window
found is dropped when O-Net scores it under detectors.MIN_WINDOW_FACE_SCORE); times then include O-Net.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender.deploy import detectors  # noqa: E402
from agegender.deploy.detectors.boxes import iou  # noqa: E402

SHARED = ROOT.parent / "shared"
ANNOTATED, GROUP = SHARED / "photos" / "annotated", SHARED / "photos" / "group"
SIZES = ((320, 240), (640, 480), (1280, 960))


def annotations(path: Path) -> dict[str, np.ndarray]:
    """dlib's imglab XML: file -> N x 4 boxes (x0, y0, x1, y1)."""
    out = {}
    for image in ElementTree.parse(path).getroot().iter("image"):
        out[image.get("file")] = np.array([[int(b.get("left")), int(b.get("top")),
                                            int(b.get("left")) + int(b.get("width")),
                                            int(b.get("top")) + int(b.get("height"))] for b in image.iter("box")],
                                          np.float64).reshape(-1, 4)
    return out


def match(found: list[detectors.Detection], truth: np.ndarray, threshold: float) -> tuple[int, int]:
    """(true positives, false positives): greedy one-to-one matching, best score first."""
    taken, hits = set(), 0
    for det in sorted(found, key=lambda d: -d.score):
        overlaps = iou(np.array([det.box]), truth)[0] if len(truth) else np.empty(0)
        free = [i for i in np.argsort(-overlaps) if i not in taken and overlaps[i] >= threshold]
        if free:
            taken.add(free[0])
            hits += 1
    return hits, len(found) - hits


def small_faces(image: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` 4 times in a grey canvas twice its size (4x its sides), and the boxes moved with it."""
    height, width = image.shape[:2]
    canvas, boxes = np.full((4 * height, 4 * width, 3), 120, np.uint8), []
    for top, left in ((0, 0), (0, 2 * width), (2 * height, width), (3 * height, 3 * width)):
        canvas[top:top + height, left:left + width] = image
        boxes.append(truth + [left, top, left, top])
    return canvas, np.vstack(boxes)


class Aligned:
    """A detector whose boxes then go through a landmark model, as FaceFinder.detect sends them."""

    def __init__(self, detector: detectors.Detector, landmarker: detectors.Landmarker):
        self.detector, self.landmarker, self.entry = detector, landmarker, detector.entry

    def detect(self, bgr: np.ndarray, min_face: float | None = None) -> list[detectors.Detection]:
        return self.landmarker.add(bgr, self.detector.detect(bgr, min_face))


def evaluate(detector: detectors.Detector, iou_threshold: float, repeats: int, min_face: float | None) -> dict:
    truth = annotations(ANNOTATED / "training.xml")
    hits = false = total = small = small_total = 0
    for name, boxes in truth.items():
        image = cv2.imread(str(ANNOTATED / name))
        h, f = match(detector.detect(image, min_face), boxes, iou_threshold)
        hits, false, total = hits + h, false + f, total + len(boxes)
        canvas, moved = small_faces(image, boxes)
        small += match(detector.detect(canvas, min_face), moved, iou_threshold)[0]
        small_total += len(moved)
    dogs = len(detector.detect(cv2.imread(str(ANNOTATED / "dogs.jpg")), min_face))
    group = sum(len(detector.detect(cv2.imread(str(p)), min_face)) for p in sorted(GROUP.glob("*.jpg")))
    photo = cv2.imread(str(GROUP / "1.jpg"))
    times = {}
    for size in SIZES:
        image = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
        detector.detect(image, min_face)
        runs, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            detector.detect(image, min_face)
            runs.append(1000 * (time.perf_counter() - start))
            cpu.append(1000 * (time.process_time() - start_cpu))
        times[size] = (statistics.median(runs), statistics.median(cpu))
    return {"hits": hits, "total": total, "false": false + dogs, "dogs": dogs, "group": group, "times": times,
            "small": small, "small_total": small_total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector-dir", type=Path, default=SHARED / "caffe-fixtures")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--iou", type=float, default=0.4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--detectors", default=",".join(detectors.REGISTRY))
    parser.add_argument("--min-face", default="default,0", help="comma-separated: default (the detector's own), "
                                                                "0 (one pass) or pixels")
    parser.add_argument("--align", choices=("none", "onet"), default="none",
                        help="onet: boxes also through O-Net, as run_inference's --align auto (its files in "
                             "--detector-dir)")
    args = parser.parse_args()
    if not ANNOTATED.is_dir():
        sys.exit(f"{ANNOTATED} is absent: the benchmark reads dlib's annotated photos from ../shared")
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / "agegender-bench-detect"
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; device {args.device}; "
          f"match IoU >= {args.iou}")
    rows = []
    for name in args.detectors.split(","):
        try:
            detector = detectors.load(name, [args.detector_dir], args.device, cache)
            if args.align == "onet" and not detector.entry.landmarks:
                detector = Aligned(detector, detectors.load_landmarker("onet", [args.detector_dir],
                                                                       lambda: (args.device, cache)))
        except Exception as exc:  # a detector whose layers cannot be compiled yet: say so, measure the others
            print(f"{name}: not measured ({type(exc).__name__}: {str(exc).splitlines()[0]})")
            continue
        for asked in args.min_face.split(","):
            min_face = detector.entry.min_face if asked == "default" else float(asked)
            label = (f"{name}{' + O-Net' if isinstance(detector, Aligned) else ''}, --min-face {min_face:g}"
                     + (" (its default)" if asked == "default" else ""))
            r = evaluate(detector, args.iou, args.repeats, min_face or None)
            print(f"{label}: {r['hits']}/{r['total']} annotated faces, {r['small']}/{r['small_total']} made small, "
                  f"{r['false']} false positives ({r['dogs']} on dogs.jpg), {r['group']} faces on "
                  f"{len(list(GROUP.glob('*.jpg')))} group photos, "
                  + ", ".join(f"{w}x{h} {ms:.1f} ms ({cpu:.1f} CPU ms)" for (w, h), (ms, cpu) in r["times"].items()),
                  flush=True)
            rows.append((label, r))
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| detector | annotated faces found (IoU >= %.1f) | the same made small | false positives (dogs.jpg) "
          "| faces on the 24 group photos | ms (CPU ms) per 320x240 | 640x480 | 1280x960 |" % args.iou)
    print("|---|---|---|---|---|---|---|---|")
    for label, r in rows:
        t = [f"{r['times'][s][0]:.1f} ({r['times'][s][1]:.1f})" for s in SIZES]
        print(f"| {label} | {r['hits']}/{r['total']} | {r['small']}/{r['small_total']} | {r['false']} ({r['dogs']}) "
              f"| {r['group']} | {' | '.join(t)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
