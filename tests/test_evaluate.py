"""Metrics and reports of the test stage, on synthetic predictions."""
from __future__ import annotations

import numpy as np
import pytest

from agegender.caffe import array_to_datum, write_lmdb
from agegender.evaluate import format_report, plot_confusion
from agegender.labels import AGE_CLASSES, GENDER_CLASSES
from agegender.scoring import evaluate, lmdb_batches, score


def test_accuracy_one_off_and_confusion_rows_are_actual():
    labels = [0, 0, 1, 2, 3, 8, 8]
    preds = [0, 1, 1, 4, 3, 7, 8]
    s = score(labels, preds, AGE_CLASSES)
    assert (s.correct, s.total) == (4, 7)
    assert s.confusion[0, 1] == 1 and s.confusion[1, 0] == 0  # actual 0-9 predicted 10-19
    assert s.one_off == pytest.approx(6 / 7)  # only 20-29 -> 40-49 is two bins away
    d = s.to_dict("age")
    assert d["accuracy"] == pytest.approx(4 / 7) and d["one_off"] == pytest.approx(6 / 7)
    assert "one_off" not in score([0, 1], [0, 1], GENDER_CLASSES).to_dict("gender")


def test_per_class_precision_recall_f1_match_sklearn():
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 9, 300), rng.integers(0, 9, 300)
    s = score(labels, preds, AGE_CLASSES)
    p, r, f, support = precision_recall_fscore_support(labels, preds, labels=range(9), zero_division=0)
    np.testing.assert_allclose([row["precision"] for row in s.per_class()], p)
    np.testing.assert_allclose([row["recall"] for row in s.per_class()], r)
    np.testing.assert_allclose([row["f1"] for row in s.per_class()], f)
    assert s.macro_f1 == pytest.approx(f1_score(labels, preds, average="macro", zero_division=0))


def test_report_has_the_original_layout():
    s = score([0] * 267 + [0] * 53 + [1] * 49 + [1] * 318, [0] * 267 + [1] * 53 + [0] * 49 + [1] * 318, GENDER_CLASSES)
    report = format_report(s, "gender")
    assert report.splitlines()[0] == "Accuracy: 85.2%, 585/687 corrects"
    assert "Actual\\Predict\tMale\tFemale\t" in report
    assert "Male\t\t267\t53" in report and "Female\t\t49\t318" in report
    assert "macro-F1" in report and "1-off" not in report


def test_plot_writes_png(tmp_path):
    import cv2

    plot_confusion(score([0, 1, 1], [0, 1, 0], GENDER_CLASSES), str(tmp_path / "cm.png"), "gender")
    image = cv2.imread(str(tmp_path / "cm.png"))
    assert image is not None and image.shape[0] > 100


def _lmdb(tmp_path, n=10):
    rng = np.random.default_rng(1)
    records = [(f"{i:08d}_x.jpg".encode(), array_to_datum(rng.integers(0, 256, (3, 12, 12), dtype=np.uint8), i % 2))
               for i in range(n)]
    write_lmdb(tmp_path / "db", records)
    return str(tmp_path / "db"), records


def test_evaluate_feeds_centre_crops_minus_mean(tmp_path):
    path, records = _lmdb(tmp_path)
    mean = np.full((3, 12, 12), 7.0, np.float32)
    seen = []

    def predict(batch):
        seen.append(batch)
        # class 1 when the crop's first pixel is odd: a deterministic function of the input
        return np.eye(2, dtype=np.float32)[(batch[:, 0, 0, 0] + 7).astype(int) % 2]

    s = evaluate(predict, path, mean, 8, GENDER_CLASSES)
    batch = np.concatenate(seen)
    assert batch.shape == (10, 3, 8, 8)
    from agegender.caffe import datum_to_array

    first = datum_to_array(records[0][1]).astype(np.float32)
    np.testing.assert_array_equal(batch[0], first[:, 2:10, 2:10] - 7.0)
    expected = [(int(datum_to_array(d)[0, 2, 2]) % 2) == d.label for _, d in records]
    assert s.correct == sum(expected) and s.total == 10


def test_oversample_averages_ten_crops(tmp_path):
    path, _ = _lmdb(tmp_path, 3)
    batches = list(lmdb_batches(path, None, 8, ten_crop=True))
    assert batches[0][0].shape == (30, 3, 8, 8) and batches[0][2] == 3

    def predict(batch):  # 4 of the 10 crops vote for class 0, 6 for class 1: the average says 1
        votes = np.tile(np.float32([0.0, 1.0]), (len(batch), 1))
        votes.reshape(-1, 10, 2)[:, :4] = [1.0, 0.0]
        return votes

    s = evaluate(predict, path, None, 8, GENDER_CLASSES, ten_crop=True)
    assert s.total == 3  # one prediction per image, not per crop
    assert s.confusion[:, 1].sum() == 3 and s.correct == 1  # labels are 0, 1, 0


def test_label_outside_classes_is_a_clear_error(tmp_path):
    from agegender.errors import AgegenderError

    records = [(b"00000000_x", array_to_datum(np.zeros((3, 4, 4), np.uint8), 5))]
    write_lmdb(tmp_path / "db", records)
    with pytest.raises(AgegenderError, match="label 5 outside the 2 classes"):
        evaluate(lambda b: np.ones((len(b), 2), np.float32), str(tmp_path / "db"), None, 4, GENDER_CLASSES)


@pytest.mark.parametrize("mean,crop,message", [
    (np.zeros((3, 10, 10), np.float32), 8, "mean image is 3x10x10 but the image is 3x12x12"),
    (None, 16, "crop 16 is larger than the 12x12 image"),
])
def test_mean_or_crop_that_does_not_fit_the_lmdb_is_a_clear_error(tmp_path, mean, crop, message):
    from agegender.errors import AgegenderError

    path, _ = _lmdb(tmp_path, 2)
    with pytest.raises(AgegenderError, match=f"LMDB {path}: {message}"):
        evaluate(lambda b: np.ones((len(b), 2), np.float32), path, mean, crop, GENDER_CLASSES)
