"""Ultra-Light-Fast-Generic-Face-Detector-1MB (Linzaer, 2019), RFB-320 or slim-320: priors, box decoding and
hard NMS as in the authors' ``caffe/ultra_face_opencvdnn_inference.py``. The image is resized to the
net's 320x240 (aspect not kept, as the authors do), RGB, (x - 127) / 128; outputs ``boxes`` (N x 4 centre
offsets) and ``scores`` (N x 2 softmax)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from agegender.deploy.detectors.boxes import nms
from agegender.deploy.detectors.ir import CaffeNet

MIN_BOXES = ((10.0, 16.0, 24.0), (32.0, 48.0), (64.0, 96.0), (128.0, 192.0, 256.0))
STRIDES = (8.0, 16.0, 32.0, 64.0)
CENTER_VARIANCE, SIZE_VARIANCE = 0.1, 0.2
THRESHOLD, IOU, CANDIDATES = 0.7, 0.3, 200  # the authors' --threshold default, iou_threshold, candidate_size


def priors(width: int, height: int) -> np.ndarray:
    """The authors' ``define_img_size`` + ``generate_priors``: N x 4 (cx, cy, w, h), relative, clipped to [0, 1]."""
    out = []
    for stride, sizes in zip(STRIDES, MIN_BOXES):
        cols, rows = math.ceil(width / stride), math.ceil(height / stride)
        for j in range(rows):
            for i in range(cols):
                for size in sizes:
                    out.append([(i + 0.5) * stride / width, (j + 0.5) * stride / height, size / width, size / height])
    return np.clip(np.asarray(out, np.float32), 0.0, 1.0)


def decode(locations: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """``convert_locations_to_boxes`` + ``center_form_to_corner_form``: N x 4 relative x0 y0 x1 y1."""
    centre = locations[:, :2] * CENTER_VARIANCE * anchors[:, 2:] + anchors[:, :2]
    size = np.exp(locations[:, 2:] * SIZE_VARIANCE) * anchors[:, 2:]
    return np.hstack([centre - size / 2, centre + size / 2])


class UltraFace:
    """``detect(bgr)`` -> N x 5 boxes (x0, y0, x1, y1, score) in the image's pixels."""

    def __init__(self, prototxt, caffemodel, device: str, cache_dir, size: tuple[int, int] = (320, 240),
                 threshold: float = THRESHOLD):
        self.net = CaffeNet(prototxt, caffemodel, device, cache_dir)
        self.size, self.threshold = size, threshold
        self.anchors = priors(*size)

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        height, width = bgr.shape[:2]
        rgb = cv2.cvtColor(cv2.resize(bgr, self.size), cv2.COLOR_BGR2RGB)
        x = ((rgb.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        out = self.net.run(x)
        scores = out["scores"].reshape(-1, 2)[:, 1]
        keep = scores > self.threshold
        boxes, scores = decode(out["boxes"].reshape(-1, 4)[keep], self.anchors[keep]), scores[keep]
        top = np.argsort(scores, kind="stable")[-CANDIDATES:]
        boxes, scores = boxes[top], scores[top]
        pick = nms(boxes, scores, IOU)
        found = np.hstack([boxes[pick] * [width, height, width, height], scores[pick, None]])
        return found.astype(np.float32)
