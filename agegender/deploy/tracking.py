"""Faces followed across the frames of a video or camera, and their predictions averaged over each track
(run_inference.py --track N): a person's age and gender then stop flickering from frame to frame, and each
answer is the mean of up to N frames' predictions, as an ensemble over views of the same face.

Association as in SORT (Bewley et al. 2016) without its motion model: each frame's boxes are matched to the
tracks seen in the last ``max_missed`` frames, greedily by IoU (highest first, at least ``min_iou``); an
unmatched box starts a new track. A track's answer is the arithmetic mean of the probability vectors of its
last N frames (N = 1: tracks without averaging). Runtime side: NumPy only.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

from agegender.deploy.detectors.boxes import iou

MIN_IOU = 0.3     # a box overlapping a track's last box this much continues it
MAX_MISSED = 15   # frames a track may go unseen (a missed detection, a head turned away) and still continue


@dataclass
class Track:
    id: int
    box: np.ndarray | None = None     # x0, y0, x1, y1 in the last frame it was seen
    last: int = -1                    # the frame it was last seen in
    history: collections.deque = field(default_factory=collections.deque)  # (age, gender) probabilities


class Tracker:
    """``update(boxes, ages, genders)`` for each frame in order -> per face (track id, frames averaged,
    averaged age probabilities, averaged gender probabilities)."""

    def __init__(self, window: int, min_iou: float = MIN_IOU, max_missed: int = MAX_MISSED):
        if window < 1:
            raise ValueError("a track averages at least 1 frame")
        self.window, self.min_iou, self.max_missed = window, min_iou, max_missed
        self.tracks: list[Track] = []
        self.frame = -1
        self.next_id = 1

    def update(self, boxes: list[tuple[float, float, float, float]], ages: list[np.ndarray],
               genders: list[np.ndarray]) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        self.frame += 1
        self.tracks = [t for t in self.tracks if self.frame - t.last - 1 <= self.max_missed]  # frames missed
        assigned = self._match(np.asarray(boxes, np.float64).reshape(-1, 4))
        out = []
        for index, (box, age, gender) in enumerate(zip(boxes, ages, genders)):
            track = assigned.get(index)
            if track is None:
                track = Track(self.next_id, history=collections.deque(maxlen=self.window))
                self.next_id += 1
                self.tracks.append(track)
            track.box, track.last = np.asarray(box, np.float64), self.frame
            track.history.append((np.asarray(age, np.float64), np.asarray(gender, np.float64)))
            mean_age = np.mean([a for a, _ in track.history], axis=0)
            mean_gender = np.mean([g for _, g in track.history], axis=0)
            out.append((track.id, len(track.history), mean_age, mean_gender))
        return out

    def _match(self, boxes: np.ndarray) -> dict[int, Track]:
        """Box index -> the track it continues: pairs taken greedily, highest IoU first, each once."""
        if not len(boxes) or not self.tracks:
            return {}
        overlaps = iou(boxes, np.array([t.box for t in self.tracks]))
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for flat in np.argsort(-overlaps, axis=None, kind="stable"):
            b, t = np.unravel_index(flat, overlaps.shape)
            if overlaps[b, t] < self.min_iou:
                break
            b, t = int(b), int(t)
            if b in assigned or t in used:
                continue
            assigned[b] = self.tracks[t]
            used.add(t)
        return assigned
