"""Test-time views on FairFace dev (the selection set; a benchmark, not a test): whether averaging a face's
predictions over several views beats the one aligned centre crop run_inference.py uses.

    .venv/bin/python benchmarks/views_probe.py [--graph_dir graph] [--detector-dir ../shared/caffe-fixtures]

Each image's largest face is found and aligned as run_inference.py does (UltraFace + O-Net landmarks); the
views, each averaged over both nets' probabilities: the centre crop; it and its mirror (--mirror); Levi &
Hassner's 10 crops (4 corners + centre of the 256x256 resize, and their mirrors); 8 alignments jittered as a
video's frames would be (the first exact, 7 with rotation +-5 degrees, scale +-5%, shift +-4 px of the 200-px
chip, seed 0); the same 8 and their mirrors. Faces not found count wrong, as in bench_wild.py.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender.deploy import detectors  # noqa: E402
from agegender.deploy.faces import CHIP_SIZE, align, largest, make_finder  # noqa: E402
from agegender.deploy.runtime import Classifier  # noqa: E402
from agegender.preprocess import oversample, resize_like_lmdb, to_bgr, transform  # noqa: E402
from agegender.wild import EAST_SOUTHEAST_ASIAN, age_exact, age_one_off, fairface_targets  # noqa: E402

FAIRFACE = ROOT.parent / "shared" / "datasets" / "fairface-dev"
VIEWS = ("centre crop", "centre + mirror", "10 crops", "8 jittered alignments", "8 jittered + mirrors")


def jittered(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` aligned crops whose landmark template is turned, scaled and shifted a little (a video's frames)."""
    template = np.asarray(detectors.REGISTRY["mtcnn"].template, np.float64)
    centre = CHIP_SIZE / 2
    out = []
    for _ in range(n):
        a, scale, shift = np.deg2rad(rng.uniform(-5, 5)), rng.uniform(0.95, 1.05), rng.uniform(-4, 4, 2)
        turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        points = (template - centre) @ turn.T * scale + centre + shift
        out.append(align(image, landmarks, template=points.tolist()))  # run_inference's alignment, moved
    return out


def views(net: Classifier, crops: list[np.ndarray]) -> list[np.ndarray]:
    """One probability vector per entry of VIEWS (crops[0]: the exact alignment)."""
    height, width = net.meta.resize
    chws = [resize_like_lmdb(to_bgr(c), height, width).transpose(2, 0, 1) for c in crops]
    x = np.stack([transform(c, net.mean, net.meta.crop, net.meta.scale) for c in chws])
    mirrored = np.ascontiguousarray(x[..., ::-1])
    plain, flipped = net.predict(x), net.predict(mirrored)
    ten = net.predict(oversample(chws[0], net.mean, net.meta.crop, net.meta.scale)).mean(0)
    return [plain[0], (plain[0] + flipped[0]) / 2, ten, plain.mean(0), (plain.mean(0) + flipped.mean(0)) / 2]


def probe_setup(doc: str) -> tuple[argparse.Namespace, Classifier, Classifier, object, list[dict]]:
    """A FairFace probe's command line (--graph_dir, --detector-dir), its two nets (FP16 IRs), run_inference's
    face finder (UltraFace + O-Net alignment) and FairFace dev's label rows."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graph_dir", type=Path, default=ROOT / "graph")
    parser.add_argument("--detector-dir", type=Path, default=ROOT.parent / "shared" / "caffe-fixtures")
    args = parser.parse_args()
    if not FAIRFACE.is_dir():
        sys.exit(f"{FAIRFACE} is absent: the probe reads FairFace dev from ../shared")
    age = Classifier(args.graph_dir / "AgeNet.xml", "CPU")
    gender = Classifier(args.graph_dir / "GenderNet.xml", "CPU")
    finder = make_finder("detect", "ultraface", [args.detector_dir], align="auto")
    return args, age, gender, finder, list(csv.DictReader(open(FAIRFACE / "labels.tsv"), delimiter="\t"))


def main() -> int:
    args, age, gender, finder, rows = probe_setup(__doc__)
    rng = np.random.default_rng(0)
    right = {view: {"all": np.zeros(3), "asian": np.zeros(3)} for view in VIEWS}
    for row in rows:
        image = cv2.imread(str(FAIRFACE / "images" / row["file"]))
        faces = finder.find(image)
        index = largest(faces)
        if index is None:
            continue
        crops = [faces.crops(image)[index]]
        landmarks = faces.landmarks[index] if faces.landmarks else None
        if landmarks is not None:
            crops += jittered(image, landmarks, rng, 7)
        targets = fairface_targets(row["age"])
        for view, p_age, p_gender in zip(VIEWS, views(age, crops), views(gender, crops)):
            a = int(np.argmax(p_age))
            hit = np.array([age_exact(a, targets), age_one_off(a, targets),
                            gender.classes[int(np.argmax(p_gender))] == row["gender"]], float)
            right[view]["all"] += hit
            if row["race"] in EAST_SOUTHEAST_ASIAN:
                right[view]["asian"] += hit
    asian = sum(row["race"] in EAST_SOUTHEAST_ASIAN for row in rows)
    print(f"FairFace dev, {len(rows)} images ({asian} East/Southeast Asian), graphs {args.graph_dir}")
    print("| views | Asian: age exact / 1-off / gender | all: age exact / 1-off / gender |\n|---|---|---|")
    for view in VIEWS:
        a, b = 100 * right[view]["asian"] / asian, 100 * right[view]["all"] / len(rows)
        print(f"| {view} | {a[0]:.1f} / {a[1]:.1f} / {a[2]:.1f}% | {b[0]:.1f} / {b[1]:.1f} / {b[2]:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
