"""Compile a Caffe deploy prototxt + caffemodel to OpenVINO IR (FP16, FP32 or INT8) with a .json sidecar,
then check the IR against an independent forward pass (OpenCV's Caffe importer, or the PyTorch engine).

The ov.Model is built straight from the prototxt's layers with OpenVINO operations: no Caffe, ONNX or
torch is involved. ``--target myriad`` keeps to what OpenVINO 2022.3's MYRIAD plugin (the Neural Compute
Stick 2) runs: FP16, static shapes, opset1 operations.

``compile_model(Options(...))`` is the importable function; ``add_arguments``/``run`` are its argparse adapter.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from agegender.caffe import array_to_blob, caffe_pb2, read_mean, read_net, write_caffemodel, write_mean
from agegender.deploy.metadata import finish_switch, output_task, switch_in
from agegender.devices import add_device_argument
from agegender.errors import AgegenderError
from agegender.fileio import check_writable, crash_point, newest_snapshot, temporary_directory
from agegender.layers.net import Net
from agegender.limits import check_net_memory
from agegender.progress import Progress
from agegender.tasks import TASKS, by_outputs
from agegender.tasks import get as get_task

PRECISIONS = ("FP16", "FP32", "INT8")
TARGETS = ("cpu", "npu", "myriad")  # device families an IR is built for (the sidecar's "target")
FAMILY = {"AUTO": "cpu", "CPU": "cpu", "GPU": "cpu", "NPU": "npu", "MYRIAD": "myriad"}  # --device -> target
MEAN_FILE = "age_gender_mean.npy"
CALIBRATION_SIZE = 300  # INT8 calibration images, the default of --calibration-size
CHECKS = ("auto", "opencv", "torch", "none")
PRIOR_WEIGHTS = "prior.caffemodel"  # the caffemodel with the class prior folded in, staged beside the IR
MAX_CHECK_INPUTS = 1000
# Relative max difference (to the reference's largest magnitude) above which the IR is refused.
TOLERANCE = {"FP32": 1e-3, "FP16": 5e-2}
# (type, opset) of every operation OpenVINO 2022.3's MYRIAD plugin takes (it converts opset1 to its own layers).
MYRIAD_OPS = frozenset((op, "opset1") for op in (
    "Parameter", "Result", "Constant", "Convert", "Convolution", "GroupConvolution", "MaxPool", "AvgPool", "Pad",
    "LRN", "Relu", "PRelu", "Sigmoid", "Tanh", "MatMul", "Add", "Multiply", "Maximum", "Softmax", "Concat",
    "Split", "VariadicSplit", "Reshape", "Transpose", "Unsqueeze", "NormalizeL2", "PriorBox", "DetectionOutput",
    "ConvolutionBackpropData", "GroupConvolutionBackpropData", "Power", "Exp", "Log", "Abs", "Elu", "Clamp",
    "StridedSlice", "TopK", "ReduceMean", "Subtract", "Divide"))

Forward = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class Options:
    """What ``agegender compile`` takes, flag for flag (``--calibration-size`` is ``calibration_size``)."""
    model: str | os.PathLike                # deploy prototxt
    weights: str | os.PathLike              # caffemodel, or a folder: its newest *_iter_N.caffemodel
    output: str | os.PathLike               # IR path without extension: OUTPUT.xml/.bin/.json
    mean: str | os.PathLike | None = None   # copied beside the IR as MEAN_FILE
    precision: str = "FP16"
    device: str = "CPU"                     # AUTO|CPU|GPU|NPU|MYRIAD: the family the IR is built for
    batch: int | None = None
    labels: str | None = None               # the task (agegender.tasks); None: guessed from the outputs
    calibration: str | os.PathLike | None = None  # INT8: LMDB to calibrate on
    calibration_size: int = CALIBRATION_SIZE
    test_lmdb: str | os.PathLike | None = None    # INT8: LMDB to compare INT8 with FP32 on
    check: str = "auto"
    check_inputs: int = 8
    prior: str | os.PathLike | None = None       # list of the natural class frequencies (agegender.deploy.prior)
    trained_on: str | os.PathLike | None = None  # list the net was trained on (with prior)
    prior_weight: float | None = None            # None: the task's registered prior_weight
    prior_head: str | None = None                # several heads: the task the lists are for (None: registry's)

    @property
    def target(self) -> str | None:
        return FAMILY.get(self.device.split(".")[0].upper())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="deploy prototxt (Input layer or input/input_dim, TEST phase)")
    parser.add_argument("--weights", required=True, help="caffemodel, or a folder: its newest *_iter_N.caffemodel")
    parser.add_argument("--mean", help="mean.binaryproto or .npy; copied to OUTPUT's folder as " + MEAN_FILE)
    parser.add_argument("--output", required=True,
                        help="IR path without extension, e.g. graph/AgeNet (.xml/.bin/.json)")
    parser.add_argument("--precision", choices=PRECISIONS, default="FP16", help="weights and compute (default FP16)")
    add_device_argument(parser, "CPU", "the device the IR is for: CPU and GPU, NPU, or MYRIAD (NCS2, OpenVINO <= "
                        "2022.3: FP16, opset1 only); default CPU. --target cpu|npu|myriad is the same", "--target")
    parser.add_argument("--batch", type=int, help="batch size of the IR's inputs (default: as the prototxt says)")
    parser.add_argument("--labels", choices=list(TASKS), metavar="TASK",
                        help=f"the task, {'|'.join(TASKS)}: its class names go to the sidecar (default: the task "
                             f"with as many classes as the net has outputs, else numbers)")
    parser.add_argument("--calibration", help="INT8: LMDB of calibration images, e.g. data/lmdb/age_train_lmdb")
    parser.add_argument("--calibration-size", type=int, default=CALIBRATION_SIZE,
                        help=f"INT8: calibration images (default {CALIBRATION_SIZE})")
    parser.add_argument("--test-lmdb", help="INT8: LMDB to compare INT8 with FP32 on; its drop decides whether "
                                            "run_inference uses INT8 (default: the calibration LMDB's *_val_lmdb "
                                            "sibling, else its *_test_lmdb sibling, when one exists)")
    parser.add_argument("--check", choices=CHECKS, default="auto",
                        help="reference forward for verification: auto = OpenCV dnn, else PyTorch, else none")
    parser.add_argument("--check-inputs", type=int, default=8, help="random inputs to verify on (default 8)")
    parser.add_argument("--prior", metavar="LIST", help="fold a class prior into the IR: the 'path label' list "
                        "of the class frequencies to expect, e.g. data/DEF/age_train_natural.txt (each training "
                        "face once); needs --trained-on")
    parser.add_argument("--trained-on", metavar="LIST", help="with --prior: the list the net was trained on, "
                        "e.g. data/DEF/age_train.txt (the age-balanced oversampled set)")
    parser.add_argument("--prior-weight", type=float, help="with --prior: 0 none ... 1 Bayes' rule (default: the "
                        "task's, agegender/tasks.py: age 0.5, gender 0)")
    parser.add_argument("--prior-head", choices=list(TASKS), metavar="TASK", help="with --prior on a net with "
                        "several heads (AgeGenderNet): the task whose head the lists are for (default: the one "
                        "with a registered prior, age)")


def run(args: argparse.Namespace) -> int:
    compile_model(Options(**{f.name: getattr(args, f.name) for f in fields(Options)}))
    return 0


def compile_model(options: Options) -> Path:
    """Compile, verify and write OUTPUT.xml/.bin/.json (+ the mean beside them); returns the .xml path."""
    import openvino as ov

    from agegender.layers.openvino_ops import build_model

    _check_options(options)
    xml = check_writable(str(options.output).removesuffix(".xml") + ".xml", "--output")
    finish_switch(xml)
    prototxt = Path(options.model)
    net = _load_net(prototxt, options.batch)
    check_net_memory(net, False, "--batch or num_output")
    if not net.inputs:
        raise AgegenderError(f"{prototxt} has no Input layer (or input/input_dim); compile takes a deploy prototxt")
    heads = _heads(options.labels, net)
    if options.precision == "INT8" and len(heads) > 1:
        raise AgegenderError(f"--precision INT8 of a net with several outputs ({', '.join(net.outputs)}) is not "
                             f"supported yet; compile it as FP16 or FP32")
    source_weights = newest_snapshot(options.weights)
    mean = _read_mean(options.mean, net) if options.mean else None
    tmp = temporary_directory(xml)
    try:
        weights_path, prior = _with_prior(options, net, heads, source_weights, tmp)
        model = build_model(net, net.weights_from(weights_path, model_name=str(source_weights)))
        if options.target == "myriad":
            check_ops(model, MYRIAD_OPS, "OpenVINO 2022.3's MYRIAD plugin")
        reference = reference_forward(options.check, prototxt, weights_path, net)
        staged = tmp / xml.name
        int8_report = None
        if options.precision == "INT8":
            int8_report = _quantize(options, model, net, mean, heads[0]["classes"], staged)
        else:
            ov.save_model(model, staged, compress_to_fp16=options.precision == "FP16")
        verification = verify(staged, net, reference, mean, options.check_inputs, options.precision)
        if int8_report:
            verification["int8_vs_fp32"] = int8_report
        _write_sidecar(options, staged, net, heads, (prototxt, source_weights), mean, verification, prior)
        crash_point("compile-staged")
        shutil.rmtree(tmp / "fp32", ignore_errors=True)
        (tmp / PRIOR_WEIGHTS).unlink(missing_ok=True)
        switch_in(tmp, xml)
    finally:  # on failure, Ctrl-C and SIGTERM alike (after a switch there is nothing left to remove)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"compiled {prototxt.name} + {source_weights.name} -> {xml} ({options.precision}, target {options.target}); "
          f"inputs {', '.join(net.inputs)}, outputs {', '.join(net.outputs)}")
    return xml


def _load_net(prototxt: Path, batch: int | None) -> Net:
    """The TEST-phase net, its Input layers' first dimension set to ``batch`` when given."""
    proto = read_net(prototxt)
    if batch is not None:
        for layer in proto.layer:
            for shape in layer.input_param.shape if layer.type == "Input" else ():
                if shape.dim:
                    shape.dim[0] = batch
    return Net.from_proto(proto, "TEST", source=str(prototxt))


def _check_options(options: Options) -> None:
    if options.target is None:
        raise AgegenderError(f"device {options.device!r} is not one of {', '.join(FAMILY)}")
    if options.precision not in PRECISIONS:
        raise AgegenderError(f"precision {options.precision!r} is not one of {', '.join(PRECISIONS)}")
    if options.check not in CHECKS:
        raise AgegenderError(f"check {options.check!r} is not one of {', '.join(CHECKS)}")
    if options.target == "myriad" and options.precision != "FP16":
        raise AgegenderError(f"--device MYRIAD runs FP16 only (the NCS2 computes in FP16); "
                             f"drop --precision {options.precision}")
    if options.precision == "INT8" and not options.calibration:
        raise AgegenderError("--precision INT8 needs --calibration LMDB (e.g. data/lmdb/age_train_lmdb) "
                             "to quantize with")
    if options.calibration and options.precision != "INT8":
        raise AgegenderError("--calibration is for --precision INT8")
    if options.calibration_size < 1 or options.check_inputs < 1 or (options.batch is not None and options.batch < 1):
        raise AgegenderError("--batch, --calibration-size and --check-inputs must be at least 1")
    if bool(options.prior) != bool(options.trained_on):
        raise AgegenderError("--prior LIST and --trained-on LIST go together (the class frequencies to expect and "
                             "those the net was trained on, e.g. data/DEF/age_train_natural.txt and age_train.txt)")
    if (options.prior_weight is not None or options.prior_head) and not options.prior:
        raise AgegenderError("--prior-weight and --prior-head go with --prior LIST --trained-on LIST")
    if options.check_inputs > MAX_CHECK_INPUTS:
        raise AgegenderError(f"--check-inputs {options.check_inputs}: at most {MAX_CHECK_INPUTS} (each runs the IR and "
                             f"the reference once; the default 8 already compare every output value)")


def _with_prior(options: Options, net: Net, heads: list[dict], weights: Path, tmp: Path) -> tuple[Path, dict]:
    """(caffemodel to compile, sidecar record): ``weights`` itself, or with ``--prior`` a staged copy whose
    logits layer has the class prior folded in (agegender.deploy.prior); the references verify that copy."""
    from agegender.deploy import prior

    if not options.prior:
        return weights, {}
    head = _prior_head(heads, options.prior_head)
    weight = options.prior_weight
    if weight is None:
        weight = TASKS[head["task"]].prior_weight if head["task"] in TASKS else 1.0
        if options.prior_head and weight == 0:
            raise AgegenderError(f"--prior-head {options.prior_head}: the task's registered prior weight is 0 "
                                 f"(agegender/tasks.py), nothing would change; add --prior-weight W (1: Bayes' rule)")
    delta = prior.log_adjustment(options.prior, options.trained_on, len(head["classes"]), weight)
    layer = prior.logits_layer(net, head["output_name"])
    if not np.any(delta):  # weight 0 (gender's), or a net trained on the natural frequencies already
        return weights, {}
    record = prior.describe(options.prior, options.trained_on, weight, head["task"], layer, delta)
    print(f"compile: class prior folded into {layer}'s bias (weight {weight:g}, from {options.prior} over "
          f"{options.trained_on}): {' '.join(f'{v:+.2f}' for v in delta)}", file=sys.stderr)
    return prior.adjusted_caffemodel(weights, layer, delta, tmp / PRIOR_WEIGHTS), record


def _prior_head(heads: list[dict], task: str | None = None) -> dict:
    """The head --prior's lists are for: the head of ``task`` (--prior-head), else the one head, else of a net
    with several (AgeGenderNet) the one whose task has a class prior (agegender/tasks.py prior_weight > 0: age)."""
    if task is not None:
        named = [h for h in heads if h["task"] == task]
        if not named:
            outputs = ", ".join(h["output_name"] for h in heads)
            raise AgegenderError(f"--prior-head {task}: the net's heads are {outputs} "
                                 f"({', '.join(str(h['task']) for h in heads)}); name one of their tasks")
        return named[0]
    if len(heads) == 1:
        return heads[0]
    with_prior = [h for h in heads if h["task"] in TASKS and TASKS[h["task"]].prior_weight > 0]
    if len(with_prior) != 1:
        raise AgegenderError(f"--prior on a net with the heads {', '.join(h['output_name'] for h in heads)}: "
                             f"{'none' if not with_prior else 'more than one'} of them has a registered class "
                             f"prior (agegender/tasks.py prior_weight); name one with --prior-head TASK")
    return with_prior[0]


def _read_mean(path: str, net: Net) -> np.ndarray:
    mean = read_mean(path)
    c, h, w = net.blob_shapes[net.inputs[0]][1:]
    if mean.shape[0] != c:
        raise AgegenderError(f"mean file {path} has {mean.shape[0]} channels but input '{net.inputs[0]}' has {c}")
    if mean.shape[1:] != (1, 1) and (mean.shape[1] < h or mean.shape[2] < w):
        raise AgegenderError(f"mean image {path} is {mean.shape[1]}x{mean.shape[2]}, smaller than the {h}x{w} input")
    return mean


def check_ops(model, allowed: frozenset[tuple[str, str]], runtime: str) -> None:
    """Every operation of ``model`` is in ``allowed`` as (type, opset), else a one-line error."""
    for op in model.get_ordered_ops():
        info = op.get_type_info()
        if (info.name, info.version_id) not in allowed:
            raise AgegenderError(f"operation {info.name}-{info.version_id} ('{op.get_friendly_name()}') "
                                 f"is not supported by {runtime}")


def model_ops(model) -> set[tuple[str, str]]:
    return {(op.get_type_info().name, op.get_type_info().version_id) for op in model.get_ordered_ops()}


def _quantize(options: Options, model, net: Net, mean, classes: list[str], staged: Path) -> dict:
    """Save the INT8 model at ``staged``; returns the calibration facts and the comparison with FP32."""
    import openvino as ov

    from agegender.deploy import quantize as q

    crop = net.blob_shapes[net.inputs[0]][-1]
    inputs = q.calibration_inputs(options.calibration, mean, crop, options.calibration_size)
    short = f" (all it holds; {options.calibration_size} requested)" if len(inputs) < options.calibration_size else ""
    print(f"INT8: calibrating on {len(inputs)} images from {options.calibration}{short}", file=sys.stderr)
    ov.save_model(q.quantize(model, inputs, options.target), staged, compress_to_fp16=False)
    test_lmdb = options.test_lmdb or q.default_test_lmdb(options.calibration)
    if test_lmdb is None:
        print("INT8: no test LMDB (give --test-lmdb) - accuracy, size and throughput against FP32 not measured",
              file=sys.stderr)
        return {"calibration_images": len(inputs)}
    fp32_xml = staged.parent / "fp32" / staged.name
    ov.save_model(model, fp32_xml, compress_to_fp16=False)
    report = q.compare_int8(fp32_xml, staged, str(test_lmdb), mean, crop, classes)
    print(q.format_comparison(report))
    return {"calibration_images": len(inputs), **report}


def _labels(labels: str | None, net: Net) -> tuple[str, list[str]]:
    """(task, class names) from --labels, else the task with as many classes as the net has outputs,
    else ("", numbers)."""
    n_classes = int(np.prod(net.blob_shapes[net.outputs[-1]][1:]))
    if labels and len(get_task(labels).classes) != n_classes:
        raise AgegenderError(f"--labels {labels} names {len(get_task(labels).classes)} classes but output "
                             f"'{net.outputs[-1]}' has {n_classes}")
    task = labels or getattr(by_outputs(n_classes), "name", "")
    return task, list(TASKS[task].classes) if task else [str(i) for i in range(n_classes)]


def _heads(labels: str | None, net: Net) -> list[dict]:
    """{task, classes, output_name} of each head. A net with several outputs named by task (AgeGenderNet's
    prob_age and prob_gender) has one head per such output; any other net one head, its last output, whose
    task ``_labels`` gives."""
    named = {output: output_task(output, int(np.prod(net.blob_shapes[output][1:]))) for output in net.outputs}
    named = {output: task for output, task in named.items() if task}
    if len(net.outputs) == 1 or not named:
        task, classes = _labels(labels, net)
        return [{"task": task, "classes": classes, "output_name": net.outputs[-1]}]
    if labels:
        raise AgegenderError(f"--labels names the task of a one-output net; {net.name}'s outputs "
                             f"({', '.join(net.outputs)}) are each named by their task (prob_age, prob_gender)")
    return [{"task": task, "classes": list(TASKS[task].classes), "output_name": output}
            for output, task in named.items()]


# --- verification -------------------------------------------------------------------------------------------

def reference_forward(check: str, prototxt: Path, weights: Path, net: Net) -> tuple[str, Forward] | None:
    """(name, forward) of the independent reference chosen by ``--check``; None to skip verification.
    ``auto`` takes OpenCV, else (not installed, or a net it cannot load) the PyTorch engine, else nothing."""
    if check == "none":
        return None
    builders = {"opencv": lambda: opencv_forward(prototxt, weights, net), "torch": lambda: torch_forward(net, weights)}
    reasons = []
    for name in ("opencv", "torch") if check == "auto" else (check,):
        try:
            return name, builders[name]()
        except ImportError as exc:
            reasons.append(f"{name}: {exc.name or exc} is not installed")
        except AgegenderError as exc:
            reasons.append(f"{name}: {exc}")
        if check != "auto":
            raise AgegenderError(f"--check {check} is not possible ({reasons[-1]}); choose another --check") from None
    print(f"compile: no reference forward ({'; '.join(reasons)}): the IR is not verified", file=sys.stderr)
    return None


def opencv_forward(prototxt: Path, weights: Path, net: Net) -> Forward:
    """OpenCV 4's own Caffe importer and engine; each output is asked of the layer that writes it last."""
    import cv2

    try:
        dnn = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    except cv2.error as exc:
        message = str(exc).strip().splitlines()[-1]
        raise AgegenderError(f"OpenCV cannot load {prototxt.name} ({message})") from None
    dnn.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    writer = {}  # blob -> (OpenCV layer, output index); OpenCV makes a Split's tops aliases of its bottom
    for node in net.nodes:
        for index, top in enumerate(node.tops):
            writer[top] = writer[node.bottoms[0]] if node.type == "Split" else (node.name, index)
    layers = sorted({writer[o][0] for o in net.outputs})

    def forward(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, value in inputs.items():
            dnn.setInput(value, name)
        tops = dict(zip(layers, dnn.forwardAndRetrieve(layers)))
        return {o: tops[writer[o][0]][writer[o][1]] for o in net.outputs}

    return forward


def torch_forward(net: Net, weights: Path) -> Forward:
    from agegender.layers.torch_net import numpy_forward

    return numpy_forward(net, net.weights_from(weights))


def random_input(shape: tuple[int, ...], mean: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """An input like the pipeline's: a random 8-bit image minus the mean crop, or uniform [0, 1) without a mean."""
    if mean is None or shape[1] != mean.shape[0]:
        return rng.random(shape, dtype=np.float32)
    from agegender.preprocess import transform

    n, c, h, w = shape
    size = (h, w) if mean.shape[1:] == (1, 1) else mean.shape[1:]
    images = rng.integers(0, 256, (n, c, *size), dtype=np.uint8)
    return np.stack([transform(image, mean, h) for image in images])


def verify(xml: Path, net: Net, reference: tuple[str, Forward] | None, mean: np.ndarray | None,
           n_inputs: int, precision: str) -> dict:
    """Run the saved IR and the reference on the same random inputs; print one line; refuse a wrong IR."""
    import openvino as ov

    if reference is None:
        return {"reference": "none"}
    name, forward = reference
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(0)
    detections = {n.tops[0]: (n.spec.confidence_threshold, n.spec.rows_per_image(n.bottom_shapes))
                  for n in net.nodes if n.type == "DetectionOutput"}  # top: (threshold, keep)
    max_abs, magnitude, agree, samples = 0.0, 0.0, 0, 0
    decided = [o for o in net.outputs if output_task(o, int(np.prod(net.blob_shapes[o][1:])))] or net.outputs[-1:]
    progress = Progress(n_inputs, f"verification vs {name}", "inputs", silent=n_inputs < 50)
    for _ in range(n_inputs):
        progress.update()
        inputs = {blob: random_input(net.blob_shapes[blob], mean, rng) for blob in net.inputs}
        expected = forward(inputs)
        got = compiled(inputs)
        for blob in net.outputs:
            ours = got[compiled.output(blob)]
            # np.max, not max(): a NaN must stay (max(0.0, nan) is 0.0, and a NaN IR would pass)
            if blob in detections:
                difference = detection_difference(ours, expected[blob], *detections[blob])
            else:
                difference = np.abs(ours - expected[blob]).max()
            max_abs = float(np.max([max_abs, difference]))
            magnitude = float(np.max([magnitude, np.abs(expected[blob]).max()]))
        for blob in decided:  # the top-1 class of each head (the last output when no output names a task)
            ours, theirs = (a.reshape(len(a), -1).argmax(1) for a in (got[compiled.output(blob)], expected[blob]))
            same = (ours == theirs) if blob not in detections else np.ones(1, bool)  # detections: matched above
            agree += int(same.sum())
        samples += len(same)
    progress.close()
    relative = max_abs / magnitude if magnitude else max_abs
    decisions = samples * len(decided)
    result = {"reference": name, "inputs": samples, "max_abs_diff": max_abs, "max_rel_diff": relative,
              "top1_agreement": agree / decisions}
    print(f"verification vs {name} on {samples} random inputs: max abs diff {max_abs:.3g} "
          f"(relative {relative:.3g}), top-1 agreement {agree}/{decisions}")
    if not np.isfinite(relative):
        raise AgegenderError(f"the {precision} IR or {name} gives NaN or infinite outputs on random inputs (NaN/inf "
                             f"weights or mean?); nothing written")
    limit = TOLERANCE.get(precision)
    if limit is not None and relative > limit:
        raise AgegenderError(f"the {precision} IR does not match {name} "
                             f"(relative difference {relative:.3g} > {limit}); "
                             f"nothing written - please report this with the prototxt")
    return result



def _detections(array: np.ndarray) -> np.ndarray:
    """The rows [image, label, score, xmin, ymin, xmax, ymax] of a DetectionOutput top that hold a detection."""
    rows = np.asarray(array, np.float64).reshape(-1, 7)
    return rows[(rows[:, 0] >= 0) & (rows[:, 2] > 0)]


def detection_difference(ours: np.ndarray, theirs: np.ndarray, threshold: float = 0.0, keep: int = 0,
                         edge: float = 1e-3) -> float:
    """The largest difference between a detection of one engine and the nearest of the same image and label of
    the other, both ways (engines order equal scores and pad differently). A detection within ``edge`` of the
    cut-off may be missing from the other: the confidence ``threshold``, or the lowest score an engine kept when it
    returned ``keep`` (keep_top_k) rows."""
    a, b = _detections(ours), _detections(theirs)
    floor = max([threshold] + [d[:, 2].min() for d in (a, b) if keep and len(d) >= keep]) + edge
    worst = 0.0
    for one, other in ((a, b), (b, a)):
        for row in one[one[:, 2] > floor]:
            same = other[(other[:, 0] == row[0]) & (other[:, 1] == row[1])]
            worst = max(worst, float(np.abs(same - row).max(1).min()) if len(same) else float("inf"))
    return worst

# --- outputs ------------------------------------------------------------------------------------------------

def _write_sidecar(options: Options, xml: Path, net: Net, heads: list[dict], sources: tuple[Path, Path],
                   mean: np.ndarray | None, verification: dict, prior: dict | None = None) -> None:
    """The .json beside the IR: ``heads`` is [{task, classes, output_name}], ``sources`` (prototxt, caffemodel),
    ``prior`` the class prior folded into the IR ({} for none)."""
    from agegender.deploy.metadata import IRMetadata, sha256_file, write_metadata

    prototxt, weights = sources
    input_shape = list(net.blob_shapes[net.inputs[0]])
    mean_fields = {}
    if mean is not None:
        mean_path = write_mean(mean, xml.parent / MEAN_FILE)
        mean_fields = {"mean_file": MEAN_FILE, "mean_sha256": sha256_file(mean_path),
                       "mean_bgr": [round(float(v), 4) for v in mean.mean(axis=(1, 2))]}
    resize = list(mean.shape[1:]) if mean is not None and mean.shape[1:] != (1, 1) else input_shape[2:]
    source = {"prototxt": str(prototxt), "prototxt_sha256": sha256_file(prototxt),
              "caffemodel": str(weights), "caffemodel_sha256": sha256_file(weights)}
    if options.mean:
        source |= {"mean": str(options.mean), "mean_source_sha256": sha256_file(options.mean)}
    meta = IRMetadata(task=heads[0]["task"], classes=heads[0]["classes"], heads=heads,
                      input_name=net.inputs[0], output_name=heads[0]["output_name"], input_shape=input_shape,
                      resize=resize, crop=input_shape[-1], precision=options.precision, target=options.target,
                      source=source, verification=verification, prior=prior or {}, **mean_fields)
    write_metadata(xml, meta)


def random_caffemodel(net: Net, path: str | os.PathLike, seed: int = 0, gain: float = 0.5) -> Path:
    """A caffemodel of random weights in the net's blob shapes, for benchmarks and tests of a net nobody has
    trained yet. Weights have std gain/sqrt(fan-in), so activations shrink layer by layer and a softmax
    over mean-subtracted pixels does not saturate; 1-D blobs (biases, variances, slopes) are in [0.1, 1)."""
    rng = np.random.default_rng(seed)
    model = caffe_pb2.NetParameter(name=net.name)
    for node in net.nodes:
        if not node.blob_shapes:
            continue
        layer = model.layer.add(name=node.name, type=node.type)
        for shape in node.blob_shapes:
            if len(shape) >= 2:
                values = rng.standard_normal(shape) * gain / np.sqrt(np.prod(shape[1:]))
            else:
                values = rng.uniform(0.1, 1.0, shape)
            layer.blobs.append(array_to_blob(values))
    return write_caffemodel(model, path)
