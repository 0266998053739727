"""libfacedetection's YuFaceDetectNet (Shiqi Yu, 2019; v1/v2 "open" Caffe models): an SSD whose PriorBox and
DetectionOutput layers (decoding and NMS, the model's own parameters) are inside the IR. The image is
resized to the net's 320x240, BGR, 0-255, no mean; ``detection_out`` rows are (image, label, confidence,
x0, y0, x1, y1), relative to the input."""
from __future__ import annotations

import cv2
import numpy as np

from agegender.deploy.detectors.ir import CaffeNet

THRESHOLD = 0.5


class YuFaceDetectNet:
    """``detect(bgr)`` -> N x 5 boxes (x0, y0, x1, y1, score) in the image's pixels."""

    def __init__(self, prototxt, caffemodel, device: str, cache_dir, size: tuple[int, int] = (320, 240),
                 threshold: float = THRESHOLD):
        self.net = CaffeNet(prototxt, caffemodel, device, cache_dir)
        self.size, self.threshold = size, threshold

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        height, width = bgr.shape[:2]
        x = cv2.resize(bgr, self.size).astype(np.float32).transpose(2, 0, 1)[None]
        rows = self.net.run(x)["detection_out"].reshape(-1, 7)
        rows = rows[(rows[:, 0] >= 0) & (rows[:, 2] > self.threshold)]
        boxes = np.clip(rows[:, 3:7], 0.0, 1.0) * [width, height, width, height]
        return np.hstack([boxes, rows[:, 2:3]]).astype(np.float32)
