"""Faces followed across the frames of a video or camera, and their predictions averaged over each track
(run_inference.py --track N): a person's age and gender then stop flickering from frame to frame, and each
answer is the mean of up to N frames' predictions, as an ensemble over views of the same face.

Association as in SORT (Bewley et al. 2016) without its motion model: each frame's boxes are matched to the
tracks seen in the last ``max_missed`` frames, greedily by IoU (highest first, at least ``min_iou``); an
unmatched box starts a new track. A track's answer is the mean of the probability vectors of its last N
frames (N = 1: tracks without averaging), each weighted by how far it can be trusted: run_inference gives a
near-profile frame weight 0 (its exact age is right half as often as a frontal face's on FairFace dev,
docs/inference.md "Turned heads in the wild"), so a turned head does not pull the answer while frontal frames
of the same face are in the window; a window of only such frames is averaged alike. Runtime side: NumPy only.
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
    history: collections.deque = field(default_factory=collections.deque)  # (age, gender, weight)


class Tracker:
    """``update(boxes, ages, genders[, weights])`` for each frame in order -> per face (track id, frames
    averaged, averaged age probabilities, averaged gender probabilities)."""

    def __init__(self, window: int, min_iou: float = MIN_IOU, max_missed: int = MAX_MISSED):
        if window < 1:
            raise ValueError("a track averages at least 1 frame")
        self.window, self.min_iou, self.max_missed = window, min_iou, max_missed
        self.tracks: list[Track] = []
        self.frame = -1
        self.next_id = 1

    def update(self, boxes: list[tuple[float, float, float, float]], ages: list[np.ndarray],
               genders: list[np.ndarray], weights: list[float] | None = None,
               ) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        """``weights`` (default 1 each, at least 0): how much each face's frame counts in its track's mean; a
        track whose window weighs 0 in all averages its frames alike. "frames averaged" counts those that weigh."""
        weights = [1.0] * len(boxes) if weights is None else weights
        if not len(boxes) == len(ages) == len(genders) == len(weights):
            raise ValueError("one age, gender and weight per box")
        if not all(w >= 0 for w in weights):
            raise ValueError(f"a frame's weight is at least 0, not {weights}")
        self.frame += 1
        self.tracks = [t for t in self.tracks if self.frame - t.last - 1 <= self.max_missed]  # frames missed
        assigned = self._match(np.asarray(boxes, np.float64).reshape(-1, 4))
        out = []
        for index, (box, age, gender, weight) in enumerate(zip(boxes, ages, genders, weights)):
            track = assigned.get(index)
            if track is None:
                track = Track(self.next_id, history=collections.deque(maxlen=self.window))
                self.next_id += 1
                self.tracks.append(track)
            track.box, track.last = np.asarray(box, np.float64), self.frame
            track.history.append((np.asarray(age, np.float64), np.asarray(gender, np.float64), float(weight)))
            w = np.array([h[2] for h in track.history])
            w = w if w.sum() > 0 else np.ones_like(w)
            mean_age = np.average([h[0] for h in track.history], axis=0, weights=w)
            mean_gender = np.average([h[1] for h in track.history], axis=0, weights=w)
            out.append((track.id, int(np.count_nonzero(w)), mean_age, mean_gender))
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
