"""The no-leak rule: no test face, nor a copy of one, reaches a training or validation list.

A face is fingerprinted twice: the SHA-1 of its file (byte-identical copies, which UTKFace holds: 375 pairs in
its 23,704 files, 100 of them Asian) and a 64-bit difference hash of its pixels (dHash: 9x8 grayscale, one bit
per horizontal gradient), which survives re-encoding, resizing and small brightness changes. A training or
validation candidate sharing either fingerprint with a test face is dropped and reported.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Fingerprint:
    sha1: str
    dhash: int


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash of a BGR or grayscale image."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def fingerprint(data: bytes, image: np.ndarray) -> Fingerprint:
    return Fingerprint(hashlib.sha1(data).hexdigest(), dhash(image))


class LeakGuard:
    """Fingerprints of the held-out faces; ``leaks(fp)`` is True for a copy of one of them."""

    def __init__(self, held_out: list[Fingerprint]):
        self.sha1 = {f.sha1 for f in held_out}
        self.dhash = {f.dhash for f in held_out if f.dhash not in (0, 2 ** 64 - 1)}  # flat images hash alike

    def leaks(self, fp: Fingerprint) -> bool:
        return fp.sha1 in self.sha1 or fp.dhash in self.dhash
