"""Train/test split stratified by age bin, reproducible from a seed.

The test set holds ceil(fraction x N) images, as scikit-learn's train_test_split counts it; each age bin gets
floor(fraction x n_bin) of them and the remaining few go to the bins with the largest remainders (ties: the
larger bin, then the lower label). A bin always keeps at least one training image, even where that leaves
the test set a little short. On the 3,434 Asian UTKFace faces this gives 687 test and 2,747 training images,
the original project's numbers.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import numpy as np

from agegender.dataset.utkface import Face


def holdout_quotas(bin_sizes: Sequence[int], fraction: Fraction) -> list[int]:
    """Number of test images per bin."""
    total = math.ceil(fraction * sum(bin_sizes))
    exact = [fraction * n for n in bin_sizes]
    quotas = [min(math.floor(x), max(n - 1, 0)) for x, n in zip(exact, bin_sizes)]
    by_remainder = sorted(range(len(bin_sizes)), key=lambda b: (-(exact[b] - quotas[b]), -bin_sizes[b], b))
    for b in by_remainder:
        if sum(quotas) >= total:
            break
        if quotas[b] + 1 < bin_sizes[b]:
            quotas[b] += 1
    return quotas


def stratified_split(faces: Sequence[Face], fraction: Fraction, seed: int,
                     n_bins: int) -> tuple[list[Face], list[Face]]:
    """(train, test), each sorted by name; within a bin the test images are a seeded random choice."""
    bins = [sorted((f for f in faces if f.age_label == b), key=lambda f: f.name) for b in range(n_bins)]
    quotas = holdout_quotas([len(members) for members in bins], fraction)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for members, quota in zip(bins, quotas):
        order = rng.permutation(len(members))
        test += [members[i] for i in order[:quota]]
        train += [members[i] for i in order[quota:]]
    return sorted(train, key=lambda f: f.name), sorted(test, key=lambda f: f.name)
