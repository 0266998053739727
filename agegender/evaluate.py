"""``agegender test``: score a classifier on a test LMDB (agegender.scoring): accuracy, confusion matrix, 1-off
(ordinal tasks: age), per-class P/R/F1, macro-F1, printed as the original's report, as JSON, as a picture.

The model is a caffemodel run by the PyTorch engine (``--model`` + ``--weights``) or a compiled IR run by
OpenVINO (``--ir``); both see exactly the TEST-phase preprocessing (mean at the crop offset, centre crop),
or Levi & Hassner's 10-crop over-sampling with ``--oversample``. ``score_model(Options(...))`` is the importable
function, ``write_outputs`` prints and saves its result; ``add_arguments``/``run`` are the argparse adapter.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, fields

import numpy as np

from agegender.caffe import read_mean
from agegender.devices import add_device_argument
from agegender.errors import AgegenderError
from agegender.fileio import newest_snapshot
from agegender.scoring import Predictor, Scores, evaluate, is_ordinal
from agegender.tasks import TASKS, by_outputs
from agegender.tasks import get as get_task


def format_report(scores: Scores, task: str) -> str:
    """The original project's report (tab-separated confusion matrix), then what it lacked."""
    lines = [f"Accuracy: {100 * scores.accuracy:.1f}%, {scores.correct}/{scores.total} corrects"]
    if is_ordinal(task):
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


@dataclass
class Options:
    """What ``agegender test`` takes, flag for flag: a caffemodel (``model`` + ``weights`` + ``mean``) or an IR."""
    lmdb: str | os.PathLike
    model: str | os.PathLike | None = None    # deploy prototxt, run by the PyTorch engine
    ir: str | os.PathLike | None = None       # compiled IR, run by OpenVINO
    weights: str | os.PathLike | None = None  # caffemodel, or a folder: its newest *_iter_N.caffemodel
    mean: str | os.PathLike | None = None     # needed for model; for ir checked against the sidecar
    labels: str | None = None                 # the task; None: the IR's, else guessed from the outputs
    device: str = "CPU"                       # OpenVINO device for ir
    oversample: bool = False                  # average Levi & Hassner's 10 crops
    json: str | None = None                   # report file; "-" prints the JSON instead of the text report
    plot: str | None = None                   # confusion-matrix PNG


@dataclass
class Result:
    task: str
    scores: Scores
    model: str  # the caffemodel or IR that was tested

    def report(self, options: Options) -> dict:
        return self.scores.to_dict(self.task) | {"model": self.model, "lmdb": str(options.lmdb),
                                                  "oversample": options.oversample}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="deploy prototxt (with --weights), run by the PyTorch engine")
    source.add_argument("--ir", help="compiled OpenVINO IR (graph/AgeNet.xml), run by OpenVINO")
    parser.add_argument("--weights", help="caffemodel for --model, or a folder: its newest *_iter_N.caffemodel")
    parser.add_argument("--lmdb", required=True, help="test LMDB, e.g. data/lmdb/age_test_lmdb")
    parser.add_argument("--mean",
                        help="mean.binaryproto or .npy (needed for --model; for --ir checked against its sidecar)")
    parser.add_argument("--labels", choices=list(TASKS), metavar="TASK",
                        help=f"the task, {'|'.join(TASKS)}: its class names (default: the IR's, else the task "
                             f"with as many classes as the model has outputs); with a net of several heads "
                             f"(AgeGenderNet), the head to test")
    add_device_argument(parser, "CPU", "OpenVINO device for --ir (default CPU; --model runs on the CPU)")
    parser.add_argument("--oversample", action="store_true", help="average 10 crops (corners, centre, mirrors)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="write the scores as JSON to FILE; with no FILE, print them instead of the report")
    parser.add_argument("--plot", metavar="FILE.png", help="save a confusion-matrix picture")


def run(args: argparse.Namespace) -> int:
    options = Options(**{f.name: getattr(args, f.name) for f in fields(Options)})
    write_outputs(score_model(options), options)
    return 0


def score_model(options: Options) -> Result:
    """Test a caffemodel (PyTorch engine) or an IR (OpenVINO) on the LMDB; nothing printed but progress."""
    if options.model:
        if not options.weights or not options.mean or options.ir:
            raise AgegenderError("--model needs --weights W.caffemodel and --mean mean.binaryproto (and no --ir)")
        weights = newest_snapshot(options.weights)
        predict, crop, _ = caffemodel_predictor(str(options.model), str(weights), options.labels)
        print(f"testing {weights}", file=sys.stderr)
        mean, task, classes, model_name = read_mean(options.mean), options.labels, None, str(weights)
    elif options.ir:
        if options.weights:
            raise AgegenderError("--weights goes with --model, not --ir (the IR holds its weights)")
        predict, crop, mean, (task, classes) = _ir_predictor(options.ir, options.device, options.mean, options.labels)
        if options.labels and options.labels != task:
            task, classes = options.labels, None
        model_name = str(options.ir)
    else:
        raise AgegenderError("test needs --model (with --weights and --mean) or --ir")
    n_classes = predict(np.zeros((1, 3, crop, crop), np.float32)).shape[-1]
    task = task or getattr(by_outputs(n_classes), "name", None)
    if task is None:
        raise AgegenderError(f"the model has {n_classes} classes; give --labels {'|'.join(TASKS)}")
    classes = classes or get_task(task).classes
    scores = evaluate(predict, str(options.lmdb), mean, crop, classes, options.oversample)
    return Result(task, scores, model_name)


def _ir_predictor(ir, device: str, mean_file, labels: str | None = None
                  ) -> tuple[Predictor, int, np.ndarray, tuple[str, list[str]]]:
    """(predict, crop, mean, (task, class names)) of an IR, all from its sidecar; ``labels`` picks the head of a
    net with several (AgeGenderNet)."""
    from agegender.deploy.runtime import Classifier

    classifier = Classifier(ir, device=device, mean_file=mean_file, head=labels)
    if len(classifier.tasks) > 1 and not labels:
        raise AgegenderError(f"{ir} has several heads ({', '.join(classifier.tasks)}); give --labels "
                             f"{'|'.join(classifier.tasks)} to test one")
    task = classifier.head["task"]
    return classifier.predict, classifier.meta.crop, classifier.mean, (task, classifier.classes if task else None)


def write_outputs(result: Result, options: Options) -> None:
    """The original's report on stdout (or the JSON with ``json="-"``), the JSON file, the picture."""
    report, scores, task = result.report(options), result.scores, result.task
    if options.json == "-":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(format_report(scores, task))
        if options.json:
            from agegender.fileio import write_text_atomic

            write_text_atomic(options.json, json.dumps(report, indent=2) + "\n")
    if options.plot:
        plot_confusion(scores, options.plot, f"{task}: {100 * scores.accuracy:.1f}% ({scores.correct}/{scores.total})")
