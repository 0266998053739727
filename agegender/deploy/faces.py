"""Faces in a photo, cropped the way the training chips were: one face pipeline for run_inference.py and the
dataset stage (same image -> same crops).

A detector (agegender.deploy.detectors: Haar, MTCNN, UltraFace, YuFaceDetectNet) gives boxes and, for MTCNN,
5 landmarks. A box is grown by the detector's own margins, measured on UTKFace "aligned & cropped" chips
(benchmarks/measure_margins.py), so a face from a photo reaches the nets framed as the training faces were.
With landmarks the crop is aligned instead: the similarity transform that puts the 5 landmarks where MTCNN
finds them on a median UTKFace chip (Umeyama's least squares, as OpenCV's ``estimateAffinePartial2D`` without
RANSAC), warped to a 200x200 chip (``cv2.warpAffine``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from agegender.deploy import detectors
from agegender.errors import AgegenderError
from agegender.preprocess import to_bgr

FACE_MODES = ("auto", "detect", "haar", "none")
CROP_ASPECT = (0.8, 1.25)   # an image of this aspect ratio and at most CROP_MAX_SIDE pixels ...
CROP_MAX_SIDE = 512         # ... "looks like a face crop" (UTKFace chips are 200x200) ...
CROP_MIN_SIDE = 24          # ... if it is at least as large as the smallest face the Haar cascade finds
CROP_FACE_AREA = 0.5        # a face whose frame covers this much of such an image means the image is the face
CROP_NO_DETECT_SIDE = 256   # a face-crop-like image this small is used whole without running the detector
CHIP_SIZE = 200             # side of an aligned crop, as UTKFace's chips
NEAR_PROFILE = 0.3          # head_turn from which a face is near profile: 23% of FairFace's faces, 1.7% of the
                            # training chips; the nets get its exact age right a fifth of the time (docs/inference.md)


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y:self.y + self.h, self.x:self.x + self.w]

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True)
class Faces:
    """Where the faces of one image are, and how they were found: "detected" (detector boxes, framed),
    "whole" (--faces none), "crop" (auto: the image itself is a face crop). ``detected``: the detector's
    faces, also when the image was used whole; None when the detector did not run. ``landmarks``: per box,
    5 x 2 landmarks in image pixels (the crop is then aligned), or None."""
    boxes: list[Box]
    source: str
    detected: int | None
    landmarks: list[np.ndarray | None] = field(default_factory=list)

    def crop(self, image: np.ndarray, index: int) -> np.ndarray:
        """Face ``index`` as the nets get it: aligned by its landmarks, else cut out of its framed box."""
        points = self.landmarks[index] if self.landmarks else None
        return self.boxes[index].crop(image) if points is None else align(image, points)

    def crops(self, image: np.ndarray) -> list[np.ndarray]:
        return [self.crop(image, index) for index in range(len(self.boxes))]


def whole(image: np.ndarray) -> Box:
    return Box(0, 0, image.shape[1], image.shape[0])


def frame(box: Box, height: int, width: int, margins: tuple[float, float, float, float]) -> Box:
    """The detected box grown by ``margins`` (left, top, right, bottom fractions of its size), clipped to the image."""
    left, top, right, bottom = margins
    x0 = max(0, int(round(box.x - left * box.w)))
    y0 = max(0, int(round(box.y - top * box.h)))
    x1 = min(width, int(round(box.x + box.w * (1 + right))))
    y1 = min(height, int(round(box.y + box.h * (1 + bottom))))
    return Box(x0, y0, x1 - x0, y1 - y0)


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2 x 3 matrix of the rotation + uniform scale + shift taking ``source`` points closest to ``target``
    (Umeyama 1991, least squares; what ``cv2.estimateAffinePartial2D`` fits, without its RANSAC)."""
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    a, b = src - src_mean, dst - dst_mean
    u, s, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / a.var(0).sum()
    return np.hstack([scale * rotation, (dst_mean - scale * rotation @ src_mean)[:, None]])


def head_turn(landmarks: np.ndarray) -> float:
    """How far the head is turned: the nose's sideways offset from the point between the eyes, in eye
    distances, along the eye line (0: frontal; 0.3 and more: near profile). Landmarks in MTCNN's order."""
    points = np.asarray(landmarks, np.float64)
    left, right, nose = points[0], points[1], points[2]
    eye = right - left
    span = float(np.dot(eye, eye))
    return abs(float(np.dot(nose - (left + right) / 2, eye)) / span) if span > 0 else 0.0


def align(image: np.ndarray, landmarks: np.ndarray, template=None, size: int = CHIP_SIZE) -> np.ndarray:
    """A size x size chip with the 5 landmarks moved onto ``template`` (default: MTCNN's median landmarks on
    UTKFace's 200x200 chips, scaled to ``size``); outside the image, the border pixels are repeated."""
    points = np.asarray(template or detectors.REGISTRY["mtcnn"].template, np.float64) * size / CHIP_SIZE
    matrix = similarity(landmarks, points)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def looks_like_face_crop(image: np.ndarray, max_side: int = CROP_MAX_SIDE) -> bool:
    height, width = image.shape[:2]
    return (CROP_ASPECT[0] <= width / height <= CROP_ASPECT[1] and max(height, width) <= max_side
            and min(height, width) >= CROP_MIN_SIDE)


class FaceFinder:
    """``find(image)`` -> Faces, by mode: "detect" (and "haar", which also picks the Haar cascade) detects;
    "none" takes the image as one face crop (as the original run_inference.py did); "auto" detects, but
    uses whole an image that looks like a face crop: without detecting when it is at most 256 px, else
    when no face is found in it or a found face fills it, since the nets were trained on such whole crops.

    ``detector``: a loaded detectors.Detector (default: the Haar cascade). Thread-safe: decode/detect
    workers share one finder."""

    def __init__(self, mode: str = "auto", detector: detectors.Detector | None = None,
                 no_detect_side: int = CROP_NO_DETECT_SIDE, landmarker: detectors.Landmarker | None = None,
                 min_face: float | None = None):
        """``no_detect_side`` 0: auto detects on every image (as before face crops skipped the detector).
        ``landmarker``: gives landmarks to the faces the detector found without (their crops are then aligned).
        ``min_face``: --min-face, the smallest face searched for, in pixels (Detector.detect); 0: one pass;
        None: the detector's default for the photo (``detectors.default_min_face``)."""
        if mode not in FACE_MODES:
            raise AgegenderError(f"--faces {mode!r}: choose one of {', '.join(FACE_MODES)}")
        self.mode, self.no_detect_side, self.min_face = mode, no_detect_side, min_face
        if mode != "none" and (detector is None or (mode == "haar" and detector.name != "haar")):
            detector = detectors.load("haar", [])
        self.detector = detector if mode != "none" else None
        self.landmarker = landmarker if mode != "none" else None
        self.detected_any = False  # whether the detector ran on any image
        self.hint: str | None = None  # how to get a better detector, said once after a run that used this one

    def find(self, image: np.ndarray) -> Faces:
        if self.mode == "none":
            return Faces([whole(image)], "whole", None)  # no detector ran
        if self.mode == "auto" and looks_like_face_crop(image, self.no_detect_side):
            return Faces([whole(image)], "crop", None)
        found = self.detect(image)
        boxes = [box for box, _ in found]
        if self.mode == "auto" and looks_like_face_crop(image):
            area = image.shape[0] * image.shape[1]
            if not boxes or any(box.area >= CROP_FACE_AREA * area for box in boxes):
                return Faces([whole(image)], "crop", len(boxes))
        return Faces(boxes, "detected", len(boxes), [points for _, points in found])

    def min_face_for(self, height: int, width: int) -> float:
        """The smallest face searched for in a height x width photo: --min-face, else the detector's default
        for it (``detectors.default_min_face``); 0: one pass."""
        if self.min_face is not None:
            return self.min_face
        return detectors.default_min_face(self.detector.entry, height, width)

    def detect(self, image: np.ndarray) -> list[tuple[Box, np.ndarray | None]]:
        """The detector's faces, each box framed like the training chips (in full-resolution pixels, left to
        right) with its landmarks or None."""
        bgr = to_bgr(image)
        height, width = bgr.shape[:2]
        self.detected_any = True
        out = []
        found = self.detector.detect(bgr, self.min_face_for(height, width) or None)
        if self.landmarker is not None:
            found = self.landmarker.add(bgr, found)
        for det in found:
            x0, y0, x1, y1 = det.box
            raw = Box(int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0)))
            out.append((frame(raw, height, width, self.detector.margins), det.landmarks))
        return [(box, points) for box, points in out if box.w > 0 and box.h > 0]


def make_finder(faces: str, detector: str | None, dirs: list,
                placement: Callable[[], tuple[str, object]] | None = None, align: str = "none",
                min_face: float | None = None) -> FaceFinder:
    """The face finder of ``--faces`` with ``--detector`` (None: the best installed in ``dirs``, else Haar with a
    one-line ``hint``) and ``--align`` (detectors.ALIGN_MODES: "auto" aligns with the first landmark model found
    in ``dirs``): run_inference.py and the LMDB stage build theirs here, so a training image and a photo are
    cropped alike. CNNs are compiled for the (device, IR cache folder) ``placement()`` returns (default: CPU, no
    cache), asked only when one is used, so Haar alone never starts an OpenVINO device. ``min_face``: --min-face."""
    if faces == "none":
        return FaceFinder("none")
    name = "haar" if faces == "haar" else detector
    fallback = name is None and not detectors.installed(dirs)
    place = placement or (lambda: ("CPU", None))
    landmarker = detectors.load_landmarker(align, dirs, place)
    if name == "haar" or fallback:
        finder = FaceFinder(faces, detectors.load("haar", dirs), landmarker=landmarker, min_face=min_face)
        finder.hint = f"a CNN face detector finds more faces than Haar: {detectors.fetch_hint()}" if fallback else None
        return finder
    finder = FaceFinder(faces, detectors.load(name, dirs, *place()), landmarker=landmarker, min_face=min_face)
    if align == "auto" and landmarker is None and not finder.detector.entry.landmarks:
        finder.hint = (f"faces were cropped without alignment (no landmark model in {', '.join(map(str, dirs))}); "
                       f"aligned crops give better ages: ./download.sh --detector mtcnn")
    return finder


def largest(faces: Faces) -> int | None:
    """Index of the largest face (the person a face crop or a portrait is of), None when there is none."""
    return max(range(len(faces.boxes)), key=lambda index: faces.boxes[index].area) if faces.boxes else None


MIN_LABEL_SCALE = 0.3  # OpenCV's Hershey font below this is not legible


def draw(image: np.ndarray, labelled: list[tuple[Box, str]]) -> np.ndarray:
    """A copy of ``image`` with each box and its label ("Female, 20-29") drawn on it: the label's text at most
    1.5 times its box's width (down to a legible minimum), so the labels of a crowd's small faces do not hide
    the faces; every box first, then every label."""
    out = image.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    font_scale = max(0.4, max(out.shape[:2]) / 1000)
    for box, _ in labelled:
        cv2.rectangle(out, (box.x, box.y), (box.x + box.w - 1, box.y + box.h - 1), (0, 200, 0), thickness)
    for box, label in labelled:
        unit = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0]
        scale = min(font_scale, max(MIN_LABEL_SCALE, 1.5 * box.w / unit))
        weight = max(1, round(thickness * scale / font_scale))
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
        top = box.y - th - base - 4 if box.y >= th + base + 4 else box.y
        cv2.rectangle(out, (box.x, top), (box.x + tw + 4, top + th + base + 4), (0, 200, 0), cv2.FILLED)
        cv2.putText(out, label, (box.x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    weight, cv2.LINE_AA)
    return out
