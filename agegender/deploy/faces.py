"""Faces in a photo: OpenCV's Haar cascade (shipped with opencv-python), framed like the training chips.

The nets were trained on UTKFace "aligned & cropped" 200x200 chips. On 185 of 430 chips where the Haar
cascade found one face, the chip extended beyond the Haar box by (median) 9% of the box width on the left,
10% on the right, 2% above and 17% below: CHIP_FRAME crops a detected face the same way, so a face
from a photo reaches the nets framed as the training faces were.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from agegender.errors import AgegenderError
from agegender.preprocess import to_bgr

FACE_MODES = ("auto", "haar", "none")
CHIP_FRAME = (0.09, 0.02, 0.10, 0.17)  # left, top, right, bottom margins, as fractions of the Haar box
DETECT_MAX_SIDE = 640       # larger photos are detected on a downscaled copy (faces are cropped at full size)
MIN_FACE_FRACTION = 1 / 20  # smallest face searched for, as a fraction of the photo's short side
CROP_ASPECT = (0.8, 1.25)   # an image of this aspect ratio and at most CROP_MAX_SIDE pixels ...
CROP_MAX_SIDE = 512         # ... "looks like a face crop" (UTKFace chips are 200x200) ...
CROP_MIN_SIDE = 24          # ... if it is at least as large as the smallest face the Haar cascade finds
CROP_FACE_AREA = 0.5        # a face whose frame covers this much of such an image means the image is the face


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
    """Where the faces of one image are, and how they were found:
    "detected" (Haar boxes), "whole" (--faces none), "crop" (auto: the image itself is a face crop)."""
    boxes: list[Box]
    source: str
    detected: int  # Haar detections, also when the image was used whole


def whole(image: np.ndarray) -> Box:
    return Box(0, 0, image.shape[1], image.shape[0])


def frame(box: Box, height: int, width: int, margins: tuple[float, float, float, float] = CHIP_FRAME) -> Box:
    """The detected box grown by ``margins`` (left, top, right, bottom fractions of its size), clipped to the image."""
    left, top, right, bottom = margins
    x0 = max(0, int(round(box.x - left * box.w)))
    y0 = max(0, int(round(box.y - top * box.h)))
    x1 = min(width, int(round(box.x + box.w * (1 + right))))
    y1 = min(height, int(round(box.y + box.h * (1 + bottom))))
    return Box(x0, y0, x1 - x0, y1 - y0)


def looks_like_face_crop(image: np.ndarray) -> bool:
    height, width = image.shape[:2]
    return (CROP_ASPECT[0] <= width / height <= CROP_ASPECT[1] and max(height, width) <= CROP_MAX_SIDE
            and min(height, width) >= CROP_MIN_SIDE)


class FaceFinder:
    """``find(image)`` -> Faces, by mode: "haar" detects; "none" takes the image as one face crop (as the
    original run_inference.py did); "auto" detects, but an image that looks like a face crop (near-square,
    <= 512 px) is used whole when no face is found in it or a found face fills it, since the nets were
    trained on such whole crops."""

    def __init__(self, mode: str = "auto"):
        if mode not in FACE_MODES:
            raise AgegenderError(f"--faces {mode!r}: choose one of {', '.join(FACE_MODES)}")
        self.mode = mode
        self._cascade = _haar_cascade() if mode != "none" else None

    def find(self, image: np.ndarray) -> Faces:
        if self.mode == "none":
            return Faces([whole(image)], "whole", 0)
        boxes = self.detect(image)
        if self.mode == "auto" and looks_like_face_crop(image):
            area = image.shape[0] * image.shape[1]
            if not boxes or any(box.area >= CROP_FACE_AREA * area for box in boxes):
                return Faces([whole(image)], "crop", len(boxes))
        return Faces(boxes, "detected", len(boxes))

    def detect(self, image: np.ndarray) -> list[Box]:
        """Haar boxes framed like the training chips, in full-resolution pixels, left to right."""
        gray = cv2.cvtColor(to_bgr(image), cv2.COLOR_BGR2GRAY)
        height, width = gray.shape
        scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
        if scale < 1.0:
            gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        smallest = max(24, int(min(gray.shape) * MIN_FACE_FRACTION))
        found = self._cascade.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5,
                                               minSize=(smallest, smallest))
        boxes = [Box(*(int(round(v / scale)) for v in box)) for box in found]
        return sorted((frame(box, height, width) for box in boxes), key=lambda box: (box.x, box.y))


def _haar_cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise AgegenderError(f"OpenCV's Haar face cascade is missing ({path}); reinstall opencv-python-headless "
                             f"or use --faces none with face crops")
    return cascade


def draw(image: np.ndarray, labelled: list[tuple[Box, str]]) -> np.ndarray:
    """A copy of ``image`` with each box and its label ("Female, 20-29") drawn on it."""
    out = image.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    font_scale = max(0.4, max(out.shape[:2]) / 1000)
    for box, label in labelled:
        cv2.rectangle(out, (box.x, box.y), (box.x + box.w - 1, box.y + box.h - 1), (0, 200, 0), thickness)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = box.y - th - base - 4 if box.y >= th + base + 4 else box.y
        cv2.rectangle(out, (box.x, top), (box.x + tw + 4, top + th + base + 4), (0, 200, 0), cv2.FILLED)
        cv2.putText(out, label, (box.x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)
    return out
