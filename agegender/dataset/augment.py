"""Oversampling of the training part: flipped and noisy copies until every age bin is as large as the largest.

The j-th extra image of a bin with n training faces comes from source ``order[j % n]`` (a seeded order of the
bin) with variant ``j // n``: 0 ``flip``, then ``noise1``, ``flip_noise1``, ``noise2``, ``flip_noise2``, ...
Each copy is named ``<source file name>_<variant>.jpg`` and its noise is drawn from a seed derived from the run's
seed, the source name and the variant, so a copy is the same whatever process or order makes it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from agegender.dataset.utkface import Face

JPEG_QUALITY = 95  # cv::imwrite's default, as the original's OpenCV-written copies


@dataclass(frozen=True)
class Copy:
    """One augmented copy of a training face."""
    source: Face
    variant: int

    @property
    def flipped(self) -> bool:
        return self.variant % 2 == 0

    @property
    def noise_round(self) -> int:
        """0 for the plain flip, k for noise<k> / flip_noise<k>."""
        return (self.variant + 1) // 2

    @property
    def suffix(self) -> str:
        parts = (["flip"] if self.flipped else []) + ([f"noise{self.noise_round}"] if self.noise_round else [])
        return "_".join(parts)

    @property
    def name(self) -> str:
        return f"{self.source.name}_{self.suffix}.jpg"


def oversample_plan(train: Sequence[Face], n_bins: int, seed: int) -> list[Copy]:
    """The copies that bring every non-empty age bin up to the largest bin's size."""
    bins = [sorted((f for f in train if f.age_label == b), key=lambda f: f.name) for b in range(n_bins)]
    target = max(len(members) for members in bins)
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the split's draws stay as they are
    copies = []
    for members in bins:
        if not members:
            continue
        order = rng.permutation(len(members))
        copies += [Copy(members[order[j % len(members)]], j // len(members)) for j in range(target - len(members))]
    return copies


def noise_seed(seed: int, source_name: str, variant: int) -> int:
    digest = hashlib.blake2b(f"{seed}/{source_name}/{variant}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def augment(image: np.ndarray, copy: Copy, seed: int, sigma: float) -> np.ndarray:
    """The copy's pixels from its source's uint8 HxWx3 image: mirrored, then Gaussian noise added (saturated)."""
    out = cv2.flip(image, 1) if copy.flipped else image
    if copy.noise_round:
        noise = np.empty((out.shape[0], out.shape[1] * out.shape[2]), np.float32)  # one channel: scalar sigma
        cv2.setRNGSeed(noise_seed(seed, copy.source.name, copy.variant))
        cv2.randn(noise, 0.0, sigma)
        out = cv2.add(out, noise.reshape(out.shape), dtype=cv2.CV_8U)
    return out


def encode_jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return data.tobytes()
