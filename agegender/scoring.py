"""Scores of a classifier on a test LMDB: the confusion matrix and what follows from it (accuracy, 1-off for an
ordinal task, per-class precision / recall / F1, macro-F1), and the loop that feeds a predictor the TEST-phase
inputs of every record (mean at the crop offset, centre crop; or Levi & Hassner's 10 crops).

Used by ``agegender test`` (agegender.evaluate) and by INT8's comparison with FP32 (agegender.deploy.quantize);
it imports neither torch nor openvino.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from agegender.caffe import lmdb_size, read_lmdb
from agegender.caffe.datum import record_image
from agegender.errors import AgegenderError
from agegender.lmdb_set import check_lmdb_set
from agegender.preprocess import oversample, transform
from agegender.progress import Progress
from agegender.tasks import TASKS

Predictor = Callable[[np.ndarray], np.ndarray]  # N x C x H x W float32 -> N x classes probabilities
BATCH = 32


@dataclass
class Scores:
    classes: list[str]
    confusion: np.ndarray  # rows = actual, columns = predicted

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def one_off(self) -> float:
        """Share of predictions at most one class away (meaningful for ordered age bins)."""
        i, j = np.indices(self.confusion.shape)
        return float(self.confusion[np.abs(i - j) <= 1].sum() / self.total) if self.total else 0.0

    def per_class(self) -> list[dict]:
        rows = []
        for k, name in enumerate(self.classes):
            tp = self.confusion[k, k]
            predicted, actual = self.confusion[:, k].sum(), self.confusion[k].sum()
            precision = tp / predicted if predicted else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append({"class": name, "precision": float(precision), "recall": float(recall),
                         "f1": float(f1), "support": int(actual)})
        return rows

    @property
    def macro_f1(self) -> float:
        return float(np.mean([r["f1"] for r in self.per_class()]))

    def to_dict(self, task: str) -> dict:
        data = {"task": task, "accuracy": self.accuracy, "correct": self.correct, "total": self.total,
                "classes": self.classes, "confusion": self.confusion.tolist(),
                "per_class": self.per_class(), "macro_f1": self.macro_f1}
        if is_ordinal(task):
            data["one_off"] = self.one_off
        return data


def is_ordinal(task: str) -> bool:
    """Whether the task's classes are ordered (age bins): then the 1-off accuracy means something."""
    return task in TASKS and TASKS[task].ordinal


def score(labels: Sequence[int], predictions: Sequence[int], classes: Sequence[str]) -> Scores:
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (np.asarray(labels), np.asarray(predictions)), 1)
    return Scores(list(classes), confusion)


def lmdb_batches(lmdb: str, mean: np.ndarray | None, crop: int, ten_crop: bool
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(inputs, labels, images) batches of TEST-phase inputs; 10 inputs per image with ten_crop."""
    images, labels = [], []
    for key, datum in read_lmdb(lmdb):
        chw = record_image(lmdb, key, datum)
        try:
            images.append(oversample(chw, mean, crop) if ten_crop else transform(chw, mean, crop)[None])
        except ValueError as exc:
            raise AgegenderError(f"LMDB {lmdb}: {exc}; use the mean and the net made for this LMDB's images") from None
        labels.append(datum.label)
        if len(images) == BATCH:
            yield np.concatenate(images), np.asarray(labels), len(labels)
            images, labels = [], []
    if images:
        yield np.concatenate(images), np.asarray(labels), len(labels)


def evaluate(predict: Predictor, lmdb: str, mean: np.ndarray | None, crop: int, classes: Sequence[str],
             ten_crop: bool = False) -> Scores:
    check_lmdb_set([lmdb])
    total = lmdb_size(lmdb)
    if total == 0:
        raise AgegenderError(f"LMDB {lmdb} holds no records")
    progress = Progress(total, "test", "images")
    labels, predictions = [], []
    for inputs, batch_labels, n in lmdb_batches(lmdb, mean, crop, ten_crop):
        probs = predict(inputs)
        if probs.shape[-1] != len(classes):
            raise AgegenderError(f"the model has {probs.shape[-1]} outputs but --labels names {len(classes)} classes")
        probs = probs.reshape(n, -1, len(classes)).mean(1)
        if batch_labels.max() >= len(classes) or batch_labels.min() < 0:
            others = [t.name for t in TASKS.values() if len(t.classes) > batch_labels.max()]
            raise AgegenderError(f"LMDB {lmdb} has label {batch_labels.max()} outside the {len(classes)} classes; "
                                 f"is it the LMDB of another task ({', '.join(others) or 'none fits'})?")
        labels += batch_labels.tolist()
        predictions += probs.argmax(1).tolist()
        progress.update(n)
    progress.close()
    return score(labels, predictions, classes)
