"""Score a classifier on a test LMDB: accuracy, confusion matrix, 1-off (age), per-class P/R/F1, macro-F1.

The model is a caffemodel run by the PyTorch engine (``--model`` + ``--weights``) or a compiled IR run by
OpenVINO (``--ir``); both see exactly the TEST-phase preprocessing (mean at the crop offset, centre crop),
or Levi & Hassner's 10-crop over-sampling with ``--oversample``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from agegender.caffe import datum_to_array, lmdb_size, read_lmdb, read_mean
from agegender.errors import AgegenderError
from agegender.fileio import newest_snapshot
from agegender.labels import CLASSES
from agegender.preprocess import oversample, transform
from agegender.progress import Progress

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
        if task == "age":
            data["one_off"] = self.one_off
        return data


def score(labels: Sequence[int], predictions: Sequence[int], classes: Sequence[str]) -> Scores:
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (np.asarray(labels), np.asarray(predictions)), 1)
    return Scores(list(classes), confusion)


def format_report(scores: Scores, task: str) -> str:
    """The original project's report (tab-separated confusion matrix), then what it lacked."""
    lines = [f"Accuracy: {100 * scores.accuracy:.1f}%, {scores.correct}/{scores.total} corrects"]
    if task == "age":
        lines.append(f"1-off accuracy: {100 * scores.one_off:.1f}%")
    lines += ["", "Confusion matrix:", "Actual\\Predict\t" + "\t".join(scores.classes) + "\t",
              "\t\t" + "-" * 47]
    lines += [f"{name}\t\t" + "\t".join(str(v) for v in row) for name, row in zip(scores.classes, scores.confusion)]
    lines += ["", f"{'class':>8}  precision  recall     f1  support"]
    lines += [f"{r['class']:>8}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}"
              for r in scores.per_class()]
    lines.append(f"macro-F1: {scores.macro_f1:.3f}")
    return "\n".join(lines)


def plot_confusion(scores: Scores, path: str, title: str) -> None:
    """A confusion-matrix picture drawn with OpenCV (no plotting library needed)."""
    import cv2

    from agegender.fileio import write_bytes_atomic

    n, cell, left, top = len(scores.classes), 64, 110, 70
    image = np.full((top + n * cell + 40, left + n * cell + 20, 3), 255, np.uint8)
    rows = scores.confusion / np.maximum(scores.confusion.sum(1, keepdims=True), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, title, (10, 25), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i, name in enumerate(scores.classes):
        cv2.putText(image, name, (5, top + i * cell + cell // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(image, name, (left + i * cell + 4, top - 10), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(n):
            shade = int(255 * (1 - rows[i, j]))
            x, y = left + j * cell, top + i * cell
            cv2.rectangle(image, (x, y), (x + cell - 2, y + cell - 2), (255, shade, shade), -1)
            ink = (255, 255, 255) if rows[i, j] > 0.5 else (0, 0, 0)
            cv2.putText(image, str(scores.confusion[i, j]), (x + 8, y + cell // 2 + 5), font, 0.5, ink, 1, cv2.LINE_AA)
    cv2.putText(image, "rows: actual, columns: predicted", (10, image.shape[0] - 12), font, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    ok, png = cv2.imencode(".png", image)
    write_bytes_atomic(path, png.tobytes())


def lmdb_batches(lmdb: str, mean: np.ndarray | None, crop: int, ten_crop: bool
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(inputs, labels, images) batches of TEST-phase inputs; 10 inputs per image with ten_crop."""
    images, labels = [], []
    for _, datum in read_lmdb(lmdb):
        chw = datum_to_array(datum)
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
            raise AgegenderError(f"LMDB {lmdb} has label {batch_labels.max()} outside the {len(classes)} classes; "
                                 f"is it the {'gender' if len(classes) == 9 else 'age'} LMDB?")
        labels += batch_labels.tolist()
        predictions += probs.argmax(1).tolist()
        progress.update(n)
    progress.close()
    return score(labels, predictions, classes)


def caffemodel_predictor(prototxt: str, weights: str, task: str | None = None) -> tuple[Predictor, int, str]:
    """The PyTorch engine on a deploy net: (predict, crop size, output blob). A net with several outputs
    (AgeGenderNet) is tested on the head of ``task`` (prob_age, prob_gender)."""
    from agegender.deploy.metadata import output_task
    from agegender.layers.net import load_deploy
    from agegender.layers.torch_net import numpy_forward

    net, arrays = load_deploy(prototxt, weights)
    if len(net.inputs) != 1:
        raise AgegenderError(f"{prototxt} has inputs {net.inputs}; test needs a deploy net with one image input")
    input_name, output = net.inputs[0], net.outputs[-1]
    tasks = {output_task(o, int(np.prod(net.blob_shapes[o][1:]))): o for o in net.outputs}
    tasks.pop("", None)
    if len(net.outputs) > 1 and tasks:
        if task not in tasks:
            raise AgegenderError(f"{prototxt} has several heads ({', '.join(net.outputs)}); give --labels "
                                 f"{'|'.join(tasks)} to test one")
        output = tasks[task]
    forward = numpy_forward(net, arrays)

    def predict(batch: np.ndarray) -> np.ndarray:
        return forward({input_name: batch})[output].reshape(len(batch), -1)

    return predict, net.blob_shapes[input_name][-1], output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="deploy prototxt (with --weights), run by the PyTorch engine")
    source.add_argument("--ir", help="compiled OpenVINO IR (graph/AgeNet.xml), run by OpenVINO")
    parser.add_argument("--weights", help="caffemodel for --model, or a folder: its newest *_iter_N.caffemodel")
    parser.add_argument("--lmdb", required=True, help="test LMDB, e.g. data/lmdb/age_test_lmdb")
    parser.add_argument("--mean", help="mean.binaryproto or .npy (needed for --model; for --ir checked against its sidecar)")
    parser.add_argument("--labels", choices=sorted(CLASSES),
                        help="class names (default: from the IR, or 9 -> age, 2 -> gender); "
                             "with a net of several heads (AgeGenderNet), the head to test")
    parser.add_argument("--device", default="CPU", help="OpenVINO device for --ir (default CPU)")
    parser.add_argument("--oversample", action="store_true", help="average 10 crops (corners, centre, mirrors)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write the scores as JSON (stdout with no FILE)")
    parser.add_argument("--plot", metavar="FILE.png", help="save a confusion-matrix picture")


def _ir_predictor(args) -> tuple[Predictor, int, np.ndarray, str]:
    from agegender.deploy.runtime import Classifier

    classifier = Classifier(args.ir, device=args.device, mean_file=args.mean, head=args.labels)
    if len(classifier.tasks) > 1 and not args.labels:
        raise AgegenderError(f"{args.ir} has several heads ({', '.join(classifier.tasks)}); give --labels "
                             f"{'|'.join(classifier.tasks)} to test one")
    return classifier.predict, classifier.meta.crop, classifier.mean, classifier.head["task"]


def run(args: argparse.Namespace) -> int:
    if args.model:
        if not args.weights or not args.mean:
            raise AgegenderError("--model needs --weights W.caffemodel and --mean mean.binaryproto")
        weights = newest_snapshot(args.weights)
        predict, crop, _ = caffemodel_predictor(args.model, str(weights), args.labels)
        print(f"testing {weights}", file=sys.stderr)
        mean, task, model_name = read_mean(args.mean), args.labels, str(weights)
    else:
        if args.weights:
            raise AgegenderError("--weights goes with --model, not --ir (the IR holds its weights)")
        predict, crop, mean, task = _ir_predictor(args)
        task, model_name = args.labels or task, args.ir
    n_classes = predict(np.zeros((1, 3, crop, crop), np.float32)).shape[-1]
    task = task or {9: "age", 2: "gender"}.get(n_classes)
    if task is None:
        raise AgegenderError(f"the model has {n_classes} classes; give --labels age|gender")
    scores = evaluate(predict, args.lmdb, mean, crop, CLASSES[task], args.oversample)
    report = scores.to_dict(task) | {"model": model_name, "lmdb": args.lmdb, "oversample": args.oversample}
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(format_report(scores, task))
        if args.json:
            from agegender.fileio import write_text_atomic

            write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot_confusion(scores, args.plot, f"{task}: {100 * scores.accuracy:.1f}% ({scores.correct}/{scores.total})")
    return 0
