"""Image preprocessing identical to training: BGR, resize to the LMDB size, mean subtraction, crops.

Caffe's DataTransformer subtracts the mean image at the crop's offset, then crops; TEST takes the centre
crop. Everything here is numpy + OpenCV (no torch), so the edge runtime and the trainer share it.
"""
from __future__ import annotations

import cv2
import numpy as np


def to_bgr(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 BGR from grayscale, BGR or BGRA (alpha dropped) images."""
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"unsupported image shape {image.shape}")


def resize_like_lmdb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """What create_lmdb does to each image (convert_imageset's cv::resize, bilinear)."""
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def centre_offset(height: int, width: int, crop: int) -> tuple[int, int]:
    return (height - crop) // 2, (width - crop) // 2


def transform(chw: np.ndarray, mean: np.ndarray | None, crop: int, scale: float = 1.0,
              offset: tuple[int, int] | None = None, mirror: bool = False) -> np.ndarray:
    """Caffe's DataTransformer on one uint8 CxHxW image: (x - mean) * scale, cropped at ``offset``
    (centre when None; no crop when ``crop`` is 0), optionally mirrored; float32. ValueError, as Caffe's
    checks, when the mean or the crop does not fit the image."""
    c, h, w = chw.shape
    if mean is not None and (mean.shape[0] != c or mean.shape[1:] not in ((h, w), (1, 1))):
        raise ValueError(f"mean image is {'x'.join(map(str, mean.shape))} but the image is {c}x{h}x{w}")
    crop_h, crop_w = (crop, crop) if crop else (h, w)  # crop 0: the whole image, as Caffe
    if crop_h > h or crop_w > w:
        raise ValueError(f"crop {crop} is larger than the {h}x{w} image")
    y, x = offset if offset is not None else ((h - crop_h) // 2, (w - crop_w) // 2)
    out = chw[:, y:y + crop_h, x:x + crop_w].astype(np.float32)
    if mean is not None:
        out -= mean if mean.shape[1:] == (1, 1) else mean[:, y:y + crop_h, x:x + crop_w]
    if scale != 1.0:
        out *= scale
    return out[:, :, ::-1].copy() if mirror else out


def face_to_input(bgr: np.ndarray, mean: np.ndarray, crop: int) -> np.ndarray:
    """A face image (any size, BGR/gray/BGRA) -> the net's 1x3xcrop x crop input, as the TEST phase sees it."""
    bgr = to_bgr(bgr)
    h, w = mean.shape[1:] if mean.shape[1:] != (1, 1) else (bgr.shape[0], bgr.shape[1])
    chw = resize_like_lmdb(bgr, h, w).transpose(2, 0, 1)
    return transform(chw, mean, crop)[None]


def oversample(chw: np.ndarray, mean: np.ndarray | None, crop: int, scale: float = 1.0) -> np.ndarray:
    """Levi & Hassner's test-time over-sampling: 4 corner + centre crops and their mirrors, 10 x C x crop x crop."""
    _, h, w = chw.shape
    offsets = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), centre_offset(h, w, crop)]
    crops = [transform(chw, mean, crop, scale, o, mirror) for mirror in (False, True) for o in offsets]
    return np.stack(crops)
