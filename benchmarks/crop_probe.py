"""Which crop of a detected face the nets should get in the wild, by head turn (FairFace dev, the selection set;
a benchmark, not a test).

    .venv/bin/python benchmarks/crop_probe.py [--graph_dir graph] [--detector-dir ../shared/caffe-fixtures]

Each image's largest face is found as run_inference.py finds it (UltraFace + O-Net landmarks) and given to both
nets (FP16 IRs of --graph_dir) as five crops: run_inference's aligned chip (5-point similarity onto the
UTKFace template); the framed detector box (--align none); the aligned chip re-centred on the box's centre
(its rotation and scale kept), fully and half-way; and that re-centred chip zoomed out by 10%. A turned
head's landmarks sit to one side of it, so the aligned chip of a profile pushes the head to the chip's edge:
the re-centred crops test whether that costs the nets accuracy. Figures by head turn (the nose's sideways
offset from between the eyes, in eye distances: agegender.deploy.faces.head_turn) and over the East/Southeast
Asian and all faces with landmarks (faces without any are left out, unlike bench_wild.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from measure_margins import TURNS  # noqa: E402
from views_probe import FAIRFACE, probe_setup  # noqa: E402

from agegender.deploy import detectors  # noqa: E402
from agegender.deploy.faces import CHIP_SIZE, Box, align, head_turn, largest, similarity  # noqa: E402
from agegender.deploy.runtime import Classifier  # noqa: E402
from agegender.preprocess import resize_like_lmdb, to_bgr, transform  # noqa: E402
from agegender.wild import EAST_SOUTHEAST_ASIAN, age_exact, age_one_off, fairface_targets  # noqa: E402

CROPS = ("aligned (run_inference)", "framed box", "aligned, box centre", "aligned, half-way to it",
         "box centre, zoomed out 10%")


def crops(image: np.ndarray, box: Box, landmarks: np.ndarray) -> list[np.ndarray]:
    """The CROPS of one face, each CHIP_SIZE square."""
    matrix = similarity(landmarks, detectors.REGISTRY["mtcnn"].template)
    scale = float(np.hypot(*matrix[:, 0]))
    rotation = matrix[:, :2] / scale
    chip_centre = cv2.invertAffineTransform(matrix) @ np.array([CHIP_SIZE / 2, CHIP_SIZE / 2, 1.0])
    box_centre = np.array([box.x + box.w / 2, box.y + box.h / 2])

    def warp(zoom: float, centre: np.ndarray) -> np.ndarray:
        linear = rotation * zoom
        shift = CHIP_SIZE / 2 - linear @ centre
        return cv2.warpAffine(image, np.hstack([linear, shift[:, None]]), (CHIP_SIZE, CHIP_SIZE),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    return [align(image, landmarks), cv2.resize(box.crop(image), (CHIP_SIZE, CHIP_SIZE)),
            warp(scale, box_centre), warp(scale, (chip_centre + box_centre) / 2), warp(0.9 * scale, box_centre)]


def predict(net: Classifier, crops_: list[np.ndarray]) -> np.ndarray:
    height, width = net.meta.resize
    x = np.stack([transform(resize_like_lmdb(to_bgr(c), height, width).transpose(2, 0, 1), net.mean,
                            net.meta.crop, net.meta.scale) for c in crops_])
    return net.predict(x).argmax(1)


def table(rows: list[dict], label: str) -> str:
    hits = np.array([r["hits"] for r in rows])  # faces x crops x (exact, 1-off, gender)
    cells = " | ".join("/".join(f"{v:.1f}" for v in 100 * hits[:, k].mean(0)) for k in range(len(CROPS)))
    return f"| {label} | {len(rows)} | {cells} |"


def main() -> int:
    args, age, gender, finder, labels = probe_setup(__doc__)
    rows = []
    for label in labels:
        image = cv2.imread(str(FAIRFACE / "images" / label["file"]))
        faces = finder.find(image)
        index = largest(faces)
        if index is None or not faces.landmarks or faces.landmarks[index] is None:
            continue
        points = np.asarray(faces.landmarks[index], np.float64)
        views = crops(image, faces.boxes[index], points)
        targets = fairface_targets(label["age"])
        hits = [(age_exact(int(a), targets), age_one_off(int(a), targets), gender.classes[int(g)] == label["gender"])
                for a, g in zip(predict(age, views), predict(gender, views))]
        rows.append({"turn": head_turn(points), "asian": label["race"] in EAST_SOUTHEAST_ASIAN, "hits": hits})
    print(f"FairFace dev: {len(rows)} of {len(labels)} images with a face and its landmarks; graphs {args.graph_dir}")
    print("| faces | n | " + " | ".join(f"{c}: exact / 1-off / gender" for c in CROPS) + " |")
    print("|---|---|" + "---|" * len(CROPS))
    for low, high in TURNS:
        band = [r for r in rows if low <= r["turn"] < high]
        if band:
            print(table(band, f"head turn {low}-{high:g}"))
    print(table([r for r in rows if r["asian"]], "East/Southeast Asian"))
    print(table(rows, "all with landmarks"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
