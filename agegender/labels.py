"""The age and gender classes, as the original project defined them (agegender.tasks registers the tasks)."""
from __future__ import annotations

AGE_BINS = ((0, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 79), (80, 120))
AGE_CLASSES = tuple(f"{lo}-{hi}" for lo, hi in AGE_BINS)
GENDER_CLASSES = ("Male", "Female")  # UTKFace gender field: 0 male, 1 female


def age_bin(age: int) -> int:
    """Label 0-8 of an age in years; ValueError outside 0-120."""
    for label, (lo, hi) in enumerate(AGE_BINS):
        if lo <= age <= hi:
            return label
    raise ValueError(f"age {age} is outside 0-120")
