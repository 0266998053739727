"""Box arithmetic shared by the detectors: non-maximum suppression as the models' authors wrote it."""
from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union", plus_one: float = 0.0) -> np.ndarray:
    """Indices kept by greedy NMS, best score first. ``boxes`` N x 4 (x0, y0, x1, y1). ``method`` "union"
    (IoU) or "min" (intersection over the smaller box, MTCNN's last stage); ``plus_one`` 1 for MTCNN's
    MATLAB pixel-inclusive widths (kpzhang93's nms.m), 0 for UltraFace's box_utils.hard_nms."""
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0 + plus_one) * (y1 - y0 + plus_one)
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.maximum(0.0, np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]) + plus_one)
        h = np.maximum(0.0, np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]) + plus_one)
        inter = w * h
        if method == "min":
            overlap = inter / np.minimum(area[best], area[rest])
        else:
            overlap = inter / np.maximum(area[best] + area[rest] - inter, 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N x 4) with every box in ``b`` (M x 4), x0 y0 x1 y1."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)
