"""MTCNN (Zhang, Zhang, Li, Qiao 2016): P-Net on an image pyramid, R-Net and O-Net on the candidates, O-Net's
5 landmarks. A port of the authors' MATLAB ``detect_face.m`` (kpzhang93/MTCNN_face_detection_alignment): the
same scales, thresholds, NMS (union, then "min" at the end), box regression and squaring (``rerec``).

The nets were trained with MATLAB's column-major images, so every input is fed with height and width
swapped (C x W x H) and every P-Net map comes out as W x H; pixels are RGB, (x - 127.5) / 128.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from agegender.deploy.detectors.boxes import nms
from agegender.deploy.detectors.ir import CaffeNet

THRESHOLDS = (0.6, 0.7, 0.7)  # detect_face.m's threshold for P-, R- and O-Net
FACTOR = 0.709                # pyramid step
MIN_FACE = 20                 # detect_face.m's minsize, in pixels of the detection image
PNET_ALIGN = 16               # each pyramid level is padded to a multiple of this, so few P-Net shapes get compiled


def normalise(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB (or N x H x W x 3) -> the nets' input: (x - 127.5) * 0.0078125, C x W x H."""
    x = (rgb.astype(np.float32) - 127.5) * 0.0078125
    return x.transpose(2, 1, 0) if x.ndim == 3 else x.transpose(0, 3, 2, 1)


def scales(height: int, width: int, min_face: float) -> list[float]:
    m, side, out = 12.0 / min_face, min(height, width) * 12.0 / min_face, []
    while side >= 12:
        out.append(m * FACTOR ** len(out))
        side *= FACTOR
    return out


def square(boxes: np.ndarray) -> np.ndarray:
    """detect_face.m's ``rerec``: each box made square around its centre, side = the longer side."""
    boxes = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, 0:2] + side[:, None]
    return boxes


def regress(boxes: np.ndarray, reg: np.ndarray, plus_one: float = 1.0) -> np.ndarray:
    """detect_face.m's ``bbreg``: corners moved by the regression times the (pixel-inclusive) size."""
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + plus_one
    h = boxes[:, 3] - boxes[:, 1] + plus_one
    boxes[:, 0:4] += reg[:, 0:4] * np.stack([w, h, w, h], 1)
    return boxes


def crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """detect_face.m's ``pad`` + ``imResample``: each box (1-based MATLAB corners, fixed) cut out with zeros
    outside the image and resized to size x size."""
    height, width = rgb.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(np.fix(boxes[:, :4]).astype(int)):
        w, h = x1 - x0 + 1, y1 - y0 + 1
        if w <= 0 or h <= 0:
            continue
        patch = np.zeros((h, w, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1, width), min(y1, height)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - (y0 - 1):sy1 - (y0 - 1), sx0 - (x0 - 1):sx1 - (x0 - 1)] = rgb[sy0:sy1, sx0:sx1]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


def _landmarks(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """O-Net's ``conv6-3`` (N x 10: 5 x, then 5 y, as fractions of each box) -> N x 5 x 2 image pixels."""
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    return np.stack([w[:, None] * points[:, 0:5] + boxes[:, 0:1] - 1,
                     h[:, None] * points[:, 5:10] + boxes[:, 1:2] - 1], axis=2)


def onet_landmarks(onet: CaffeNet, bgr: np.ndarray, boxes: np.ndarray,
                   passes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """O-Net's 5 landmarks (N x 5 x 2) and face scores (N) for face boxes (N x 4, x0 y0 x1 y1) another detector
    found in a BGR image: each box made square (``rerec``), O-Net run on it, its box regression applied and
    O-Net run again (``passes`` times in all), as detect_face.m's last stage treats R-Net's boxes. Only the
    48x48 crops are turned to RGB (the whole photo's conversion cost more than O-Net itself)."""
    boxes = np.fix(square(np.asarray(boxes, np.float64)[:, :4]))
    for _ in range(passes):
        out = onet.run(normalise(crops(bgr, boxes, 48)[..., ::-1]))
        n = len(boxes)
        score, reg, points = out["prob1"].reshape(n, 2)[:, 1], out["conv6-2"].reshape(n, 4), out["conv6-3"].reshape(n, 10)
        landmarks = _landmarks(boxes, points)
        boxes = np.fix(square(regress(boxes, reg)))
    return landmarks.astype(np.float32), score.astype(np.float32)


class MTCNN:
    """``detect(rgb)`` -> (N x 5 boxes x0 y0 x1 y1 score, N x 5 x 2 landmarks), in the image's pixels."""

    def __init__(self, files: dict, device: str, cache_dir):
        self.pnet = CaffeNet(files["det1.prototxt"], files["det1.caffemodel"], device, cache_dir)
        self.rnet = CaffeNet(files["det2.prototxt"], files["det2.caffemodel"], device, cache_dir, batch_dynamic=True)
        self.onet = CaffeNet(files["det3.prototxt"], files["det3.caffemodel"], device, cache_dir, batch_dynamic=True)

    def detect(self, rgb: np.ndarray, min_face: float = MIN_FACE) -> tuple[np.ndarray, np.ndarray]:
        """``min_face``: detect_face.m's minsize, in pixels of ``rgb``."""
        boxes = self._proposals(rgb, min_face)
        if len(boxes):
            boxes = self._refine(rgb, boxes)
        if not len(boxes):
            return np.empty((0, 5), np.float32), np.empty((0, 5, 2), np.float32)
        return self._output(rgb, boxes)

    def _pnet(self, rgb: np.ndarray, scale: float) -> np.ndarray:
        height, width = rgb.shape[:2]
        hs, ws = math.ceil(height * scale), math.ceil(width * scale)
        level = cv2.resize(rgb, (ws, hs), interpolation=cv2.INTER_AREA)
        padded_h, padded_w = (-(-v // PNET_ALIGN) * PNET_ALIGN for v in (hs, ws))  # grey = 0 after normalising
        level = cv2.copyMakeBorder(level, 0, padded_h - hs, 0, padded_w - ws, cv2.BORDER_CONSTANT, value=(128,) * 3)
        out = self.pnet.run(normalise(level)[None])
        prob, reg = out["prob1"][0, 1], out["conv4-2"][0]  # W' x H' maps (the transposed image)
        xs, ys = np.nonzero(prob >= THRESHOLDS[0])
        inside = (2 * xs + 12 <= ws) & (2 * ys + 12 <= hs)  # windows wholly in the real image, not the padding
        xs, ys = xs[inside], ys[inside]
        if not len(xs):
            return np.empty((0, 9), np.float32)
        corner = np.stack([xs, ys], 1).astype(np.float64)
        boxes = np.hstack([np.fix((2 * corner + 1) / scale), np.fix((2 * corner + 12) / scale),
                           prob[xs, ys][:, None], reg[:, xs, ys].T])
        return boxes[nms(boxes[:, :4], boxes[:, 4], 0.5, plus_one=1.0)]

    def _proposals(self, rgb: np.ndarray, min_face: float) -> np.ndarray:
        found = [self._pnet(rgb, s) for s in scales(*rgb.shape[:2], min_face)]
        boxes = np.concatenate(found) if found else np.empty((0, 9))
        if not len(boxes):
            return boxes
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7, plus_one=1.0)]
        refined = regress(boxes[:, :4], boxes[:, 5:9], plus_one=0.0)  # detect_face.m: regw = x2 - x1 here
        return np.fix(square(np.hstack([refined, boxes[:, 4:5]])))

    def _refine(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        out = self.rnet.run(normalise(crops(rgb, boxes, 24)))
        score = out["prob1"].reshape(len(boxes), 2)[:, 1]
        keep = score > THRESHOLDS[1]
        boxes, reg = np.hstack([boxes[keep, :4], score[keep, None]]), out["conv5-2"].reshape(len(score), 4)[keep]
        if not len(boxes):
            return boxes
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, plus_one=1.0)
        boxes = square(regress(boxes[pick], reg[pick]))
        return np.hstack([np.fix(boxes[:, :4]), boxes[:, 4:5]])

    def _output(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.onet.run(normalise(crops(rgb, boxes, 48)))
        n = len(boxes)
        score = out["prob1"].reshape(n, 2)[:, 1]
        keep = score > THRESHOLDS[2]
        boxes = np.hstack([boxes[keep, :4], score[keep, None]])
        reg, points = out["conv6-2"].reshape(n, 4)[keep], out["conv6-3"].reshape(n, 10)[keep]
        landmarks = _landmarks(boxes, points)
        boxes = regress(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, "min", plus_one=1.0)
        return boxes[pick].astype(np.float32), landmarks[pick].astype(np.float32)
