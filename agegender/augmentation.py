"""Training-time augmentation (transform_param's augment_param, an agegender extension): the distortions a face
meets between UTKFace's aligned chips and a deployed camera + detector: framing (zoom, rotation, shift),
exposure and colour (brightness, contrast, gamma, saturation, grayscale), focus (blur), compression (JPEG) and
occlusion (random erasing, Zhong et al. 2017: hands, glasses, another head in front of the face).

Applied to the uint8 C x H x W BGR image before Caffe's DataTransformer (mean, crop, mirror), in the TRAIN phase
only; every draw comes from the batch's generator, so a resumed run repeats them exactly. numpy + OpenCV only.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np


@dataclass(frozen=True)
class Augmentation:
    scale_jitter: float = 0.0
    max_rotation: float = 0.0
    max_shift: float = 0.0
    geometry_prob: float = 1.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    gray_prob: float = 0.0
    blur_prob: float = 0.0
    max_blur_sigma: float = 1.5
    jpeg_prob: float = 0.0
    min_jpeg_quality: int = 30
    gamma: float = 0.0
    erase_prob: float = 0.0
    max_erase_area: float = 0.2

    @classmethod
    def from_proto(cls, param) -> Augmentation | None:
        """None when the layer has no augment_param (nothing to do); ValueError on out-of-range values."""
        if param is None:
            return None
        aug = cls(**{f.name: getattr(param, f.name) for f in fields(cls)})
        aug.check()
        return aug

    def check(self) -> None:
        for name in ("geometry_prob", "gray_prob", "blur_prob", "jpeg_prob", "scale_jitter", "contrast", "saturation",
                     "erase_prob", "max_erase_area"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment_param {name} is {getattr(self, name):g}; give a value in 0-1")
        for name in ("max_rotation", "max_shift", "brightness", "max_blur_sigma", "gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment_param {name} is {getattr(self, name):g}; give a value >= 0")
        if not 1 <= self.min_jpeg_quality <= 95:
            raise ValueError(f"augment_param min_jpeg_quality is {self.min_jpeg_quality}; give 1-95")

    def __call__(self, chw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = np.ascontiguousarray(chw.transpose(1, 2, 0))
        if image.shape[2] == 1:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        image = self._geometry(image, rng)
        image = self._photometric(image, rng)
        image = self._degrade(image, rng)
        image = self._erase(image, rng)
        return image.transpose(2, 0, 1)[: chw.shape[0]]

    def _geometry(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not (self.scale_jitter or self.max_rotation or self.max_shift) or rng.random() >= self.geometry_prob:
            return image
        h, w = image.shape[:2]
        scale = 1 + rng.uniform(-self.scale_jitter, self.scale_jitter)
        angle = rng.uniform(-self.max_rotation, self.max_rotation)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-self.max_shift, self.max_shift, 2) * (w, h)
        return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    def _photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not (self.brightness or self.contrast or self.saturation or self.gamma):
            return image if rng.random() >= self.gray_prob else _gray(image)
        if self.gamma:  # under- and over-exposure (dark rooms, backlight): a tone curve, as a 256-entry table
            curve = 255 * (np.arange(256) / 255) ** np.exp(rng.uniform(-self.gamma, self.gamma))
            image = cv2.LUT(image, np.clip(curve + 0.5, 0, 255).astype(np.uint8))
        out = image.astype(np.float32)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)[..., None]
        if self.saturation:
            s = 1 + rng.uniform(-self.saturation, self.saturation)
            out = gray + s * (out - gray)
        if self.contrast:
            out = gray.mean() + (1 + rng.uniform(-self.contrast, self.contrast)) * (out - gray.mean())
        if self.brightness:
            out += rng.uniform(-self.brightness, self.brightness)
        out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        return _gray(out) if rng.random() < self.gray_prob else out

    def _degrade(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.blur_prob and rng.random() < self.blur_prob:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, max(self.max_blur_sigma, 0.3)))
        if self.jpeg_prob and rng.random() < self.jpeg_prob:
            quality = int(rng.integers(self.min_jpeg_quality, 96))
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else image
        return image


    def _erase(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.erase_prob or rng.random() >= self.erase_prob:
            return image
        h, w = image.shape[:2]
        area = rng.uniform(0.02, max(self.max_erase_area, 0.02)) * h * w
        aspect = np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3)))
        eh, ew = min(h, max(1, round(np.sqrt(area * aspect)))), min(w, max(1, round(np.sqrt(area / aspect))))
        y, x = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
        out = image.copy()
        out[y:y + eh, x:x + ew] = rng.integers(0, 256, (eh, ew, image.shape[2]), dtype=np.uint8)
        return out


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
