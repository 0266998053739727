"""--track: faces followed across video frames by IoU (SORT's association without its motion model) and
their predictions averaged over each track's last N frames."""
from __future__ import annotations

import numpy as np
import pytest

from agegender.deploy.tracking import MAX_MISSED, Tracker


def probs(*values: float) -> np.ndarray:
    return np.array(values, np.float64)


def test_two_moving_faces_keep_their_tracks_and_answer_with_the_mean_of_their_last_frames():
    tracker = Tracker(window=3)
    seen = []
    for frame in range(6):  # two faces walking right 6 px a frame, side by side; the gender of each flickers
        boxes = [(10 + 6 * frame, 20, 60 + 6 * frame, 80), (200 + 6 * frame, 20, 250 + 6 * frame, 80)]
        male = 0.9 if frame % 2 else 0.3
        out = tracker.update(boxes, [probs(0.2, 0.8), probs(0.7, 0.3)], [probs(male, 1 - male), probs(0.1, 0.9)])
        seen.append([(track, frames) for track, frames, _, _ in out])
        last = out
    assert seen[0] == [(1, 1), (2, 1)] and seen[1] == [(1, 2), (2, 2)] and seen[5] == [(1, 3), (2, 3)]
    np.testing.assert_allclose(last[0][3], probs(0.7, 0.3))  # frames 3-5: (0.9 + 0.3 + 0.9) / 3
    np.testing.assert_allclose(last[0][2], probs(0.2, 0.8))
    np.testing.assert_allclose(last[1][3], probs(0.1, 0.9))


def test_window_1_gives_each_frames_own_answer_with_track_ids():
    tracker = Tracker(window=1)
    tracker.update([(0, 0, 50, 50)], [probs(1, 0)], [probs(1, 0)])
    (track, frames, age, gender), = tracker.update([(2, 0, 52, 50)], [probs(0, 1)], [probs(0.4, 0.6)])
    assert (track, frames) == (1, 1)
    np.testing.assert_allclose(gender, probs(0.4, 0.6))


def test_a_face_elsewhere_or_gone_too_long_starts_a_new_track():
    tracker = Tracker(window=15)
    p = probs(0.5, 0.5)
    assert [t[0] for t in tracker.update([(0, 0, 50, 50), (300, 0, 350, 50)], [p, p], [p, p])] == [1, 2]
    for _ in range(MAX_MISSED):
        tracker.update([], [], [])
    assert tracker.update([(0, 0, 50, 50)], [p], [p])[0][:2] == (1, 2)  # missed MAX_MISSED frames: continues
    for _ in range(MAX_MISSED + 1):
        tracker.update([], [], [])
    assert tracker.update([(300, 0, 350, 50)], [p], [p])[0][:2] == (3, 1)  # track 2 gone longer: a new track
    assert tracker.update([(600, 0, 650, 50)], [p], [p])[0][:2] == (4, 1)  # overlapping no track: a new one


def test_max_missed_counts_the_frames_a_track_went_unseen():
    p = probs(0.5, 0.5)
    for missed, continues in ((0, True), (1, True), (2, False)):
        tracker = Tracker(window=3, max_missed=1)
        tracker.update([(0, 0, 50, 50)], [p], [p])
        for _ in range(missed):
            tracker.update([], [], [])
        assert (tracker.update([(0, 0, 50, 50)], [p], [p])[0][0] == 1) == continues, missed


def test_each_track_takes_one_box_the_best_overlapping_one():
    tracker = Tracker(window=5)
    p = probs(0.5, 0.5)
    tracker.update([(0, 0, 100, 100)], [p], [p])
    out = tracker.update([(40, 0, 140, 100), (5, 0, 105, 100)], [p, p], [p, p])  # both overlap track 1
    assert [track for track, *_ in out] == [2, 1]
    with pytest.raises(ValueError):
        Tracker(window=0)


def test_frames_weighing_nothing_leave_the_mean_while_the_window_has_others():
    tracker = Tracker(window=4)
    box = (0, 0, 50, 50)
    tracker.update([box], [probs(0.9, 0.1)], [probs(0.8, 0.2)], [1.0])          # frontal
    (_, frames, age, gender), = tracker.update([box], [probs(0.1, 0.9)], [probs(0.2, 0.8)], [0.0])  # profile
    assert frames == 1
    np.testing.assert_allclose(age, probs(0.9, 0.1))
    np.testing.assert_allclose(gender, probs(0.8, 0.2))
    (_, frames, age, _), = tracker.update([box], [probs(0.5, 0.5)], [probs(0.5, 0.5)], [1.0])
    assert frames == 2
    np.testing.assert_allclose(age, probs(0.7, 0.3))   # (0.9 + 0.5) / 2: the profile frame left out


def test_a_window_of_only_weightless_frames_is_averaged_alike():
    tracker = Tracker(window=3)
    box = (0, 0, 50, 50)
    tracker.update([box], [probs(1.0, 0.0)], [probs(1.0, 0.0)], [0.0])
    (_, frames, age, _), = tracker.update([box], [probs(0.0, 1.0)], [probs(0.0, 1.0)], [0.0])
    assert frames == 2
    np.testing.assert_allclose(age, probs(0.5, 0.5))
    with pytest.raises(ValueError):
        tracker.update([box], [probs(0.5, 0.5)], [probs(0.5, 0.5)], [float("nan")])
    with pytest.raises(ValueError):  # a face without its weight would silently drop out of the frame's answers
        tracker.update([box, (100, 0, 150, 50)], [probs(0.5, 0.5)] * 2, [probs(0.5, 0.5)] * 2, [1.0])


def test_run_inference_gives_near_profile_frames_no_weight_in_their_track():
    from agegender.deploy.faces import Box
    from agegender.infer import FaceResult, Record, follow

    frontal = np.array([[60, 58], [138, 58], [99, 105], [66, 140], [132, 140]], np.float64)
    profile = frontal.copy()
    profile[2, 0] += 0.4 * 78   # the nose 0.4 eye distances to one side: near profile
    tracker = Tracker(window=15)
    answers = []
    for landmarks, male in ((frontal, 0.9), (profile, 0.1), (None, 0.7)):  # None: a framed (unaligned) crop
        face = FaceResult(Box(40, 40, 120, 120), landmarks, age=probs(0.5, 0.5), gender=probs(male, 1 - male))
        follow(tracker, Record("frame", results=[face]))
        answers.append((face.track, face.frames, face.gender[0]))
    assert answers == [(1, 1, pytest.approx(0.9)), (1, 1, pytest.approx(0.9)), (1, 2, pytest.approx(0.8))]
