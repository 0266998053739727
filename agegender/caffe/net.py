"""Net and solver prototxts, caffemodels and solverstates; V1 (``layers { type: CONVOLUTION }``) nets upgraded."""
from __future__ import annotations

import os
import re
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import DecodeError, Message

from agegender.caffe import caffe_pb2
from agegender.errors import AgegenderError
from agegender.fileio import require_file, write_bytes_atomic, write_text_atomic

V1 = caffe_pb2.V1LayerParameter

# Caffe's UpgradeV1LayerType: V1 enum -> layer type string.
V1_TYPE_NAMES = {
    V1.ABSVAL: "AbsVal", V1.ACCURACY: "Accuracy", V1.ARGMAX: "ArgMax", V1.BNLL: "BNLL",
    V1.CONCAT: "Concat", V1.CONTRASTIVE_LOSS: "ContrastiveLoss", V1.CONVOLUTION: "Convolution",
    V1.DATA: "Data", V1.DECONVOLUTION: "Deconvolution", V1.DROPOUT: "Dropout",
    V1.DUMMY_DATA: "DummyData", V1.EUCLIDEAN_LOSS: "EuclideanLoss", V1.ELTWISE: "Eltwise",
    V1.EXP: "Exp", V1.FLATTEN: "Flatten", V1.HDF5_DATA: "HDF5Data", V1.HDF5_OUTPUT: "HDF5Output",
    V1.HINGE_LOSS: "HingeLoss", V1.IM2COL: "Im2col", V1.IMAGE_DATA: "ImageData",
    V1.INFOGAIN_LOSS: "InfogainLoss", V1.INNER_PRODUCT: "InnerProduct", V1.LRN: "LRN",
    V1.MEMORY_DATA: "MemoryData", V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss",
    V1.MVN: "MVN", V1.POOLING: "Pooling", V1.POWER: "Power", V1.RELU: "ReLU", V1.SIGMOID: "Sigmoid",
    V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss", V1.SILENCE: "Silence",
    V1.SOFTMAX: "Softmax", V1.SOFTMAX_LOSS: "SoftmaxWithLoss", V1.SPLIT: "Split", V1.SLICE: "Slice",
    V1.TANH: "TanH", V1.WINDOW_DATA: "WindowData", V1.THRESHOLD: "Threshold",
}
# Type-specific parameter messages that V1 and the new LayerParameter share by name.
_SHARED_PARAMS = [
    f.name for f in V1.DESCRIPTOR.fields
    if f.name.endswith("_param") and f.name in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
]


def _upgrade_v1_layer(v1: caffe_pb2.V1LayerParameter) -> caffe_pb2.LayerParameter:
    """Caffe's UpgradeV1LayerParameter: blobs_lr/weight_decay/param names become ParamSpecs."""
    layer = caffe_pb2.LayerParameter(name=v1.name, bottom=v1.bottom, top=v1.top,
                                     include=v1.include, exclude=v1.exclude,
                                     loss_weight=v1.loss_weight, blobs=v1.blobs)
    if v1.HasField("type"):
        layer.type = V1_TYPE_NAMES.get(v1.type, V1.LayerType.Name(v1.type))
    n_specs = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(n_specs):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    for name in _SHARED_PARAMS:
        if v1.HasField(name):
            getattr(layer, name).CopyFrom(getattr(v1, name))
    return layer


def _upgrade_data_transformation(layer: caffe_pb2.LayerParameter) -> None:
    """Caffe's UpgradeNetDataTransformation: data_param's scale/mean/crop/mirror move to transform_param."""
    if not layer.HasField("data_param"):
        return
    data = layer.data_param
    for field in ("scale", "mean_file", "crop_size", "mirror"):
        if data.HasField(field):
            setattr(layer.transform_param, field, getattr(data, field))
            data.ClearField(field)


def _upgrade_input(net: caffe_pb2.NetParameter) -> None:
    """Caffe's UpgradeNetInput: net-level ``input``/``input_dim``/``input_shape`` become an Input layer."""
    if not net.input:
        return
    layer = caffe_pb2.LayerParameter(name="input", type="Input", top=net.input)
    if net.input_shape:
        layer.input_param.shape.extend(net.input_shape)
    elif net.input_dim:
        if len(net.input_dim) != 4 * len(net.input):
            raise ValueError(f"{len(net.input)} input(s) need {4 * len(net.input)} input_dim values, "
                             f"got {len(net.input_dim)}")
        for i in range(len(net.input)):
            layer.input_param.shape.add().dim.extend(net.input_dim[4 * i:4 * i + 4])
    layers = [layer, *net.layer]
    net.ClearField("layer")
    net.layer.extend(layers)
    for field in ("input", "input_dim", "input_shape"):
        net.ClearField(field)


def upgrade_net(net: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """Bring ``net`` to the current form in place, as Caffe's UpgradeNetAsNeeded does; returns it."""
    if net.layers:
        if net.layer:
            raise ValueError("net mixes V1 'layers' and new 'layer' fields; use one form")
        net.layer.extend(_upgrade_v1_layer(v1) for v1 in net.layers)
        net.ClearField("layers")
    for layer in net.layer:
        _upgrade_data_transformation(layer)
    _upgrade_input(net)
    return net


def _parse_text(path: Path, message: Message, what: str) -> Message:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AgegenderError(f"{what} {path} is not a text prototxt (is it a binary caffemodel?)") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        # ParseError's message starts with "line:column : ".
        position = f"{exc.GetLine()}:{exc.GetColumn()}" if exc.GetLine() else ""
        where = _enclosing_layer(text, exc.GetLine()) if exc.GetLine() else ""
        unknown = _UNKNOWN_FIELD.search(str(exc))
        if where and unknown:
            raise AgegenderError(f"{what} {path}:{position}: {where}unknown field '{unknown.group(1)}' (neither BVLC "
                                 f"Caffe's schema nor the SSD fork's has it): a layer type agegender does not "
                                 f"support, or a misspelt field; remove or fix the layer") from None
        raise AgegenderError(f"{what} {path}:{exc}".replace(" : ", f": {where}", 1)) from None
    return message


_LAYER_START = re.compile(r"^\s*layers?\s*\{", re.MULTILINE)
_UNKNOWN_FIELD = re.compile(r'has no field named "(\w+)"')
_LAYER_FIELD = re.compile(r"(?:^|[\s{])(name|type)\s*:\s*\"?([\w./-]+)\"?", re.MULTILINE)


def _enclosing_layer(text: str, line: int) -> str:
    """"layer 'NAME' (TYPE): " of the layer block that holds ``line`` (1-based), "" outside any layer.
    The block runs from its ``layer {`` to the next one; its name and type may come before or after the error."""
    offset = sum(len(row) + 1 for row in text.split("\n")[:line - 1])
    starts = [m.start() for m in _LAYER_START.finditer(text)]
    before = [s for s in starts if s <= offset]
    if not before:
        return ""
    end = next((s for s in starts if s > offset), len(text))
    fields = {}
    for m in _LAYER_FIELD.finditer(text, before[-1], end):
        fields.setdefault(m.group(1), m.group(2))
    return f"layer '{fields.get('name', '?')}' ({fields.get('type', '?')}): "


def read_net(path: str | os.PathLike) -> caffe_pb2.NetParameter:
    """A net prototxt (new or V1 form), upgraded to the new form."""
    path = require_file(path, "net prototxt")
    net = _parse_text(path, caffe_pb2.NetParameter(), "net prototxt")
    try:
        return upgrade_net(net)
    except ValueError as exc:
        raise AgegenderError(f"net prototxt {path}: {exc}") from None


def read_solver(path: str | os.PathLike) -> caffe_pb2.SolverParameter:
    path = require_file(path, "solver prototxt")
    return _parse_text(path, caffe_pb2.SolverParameter(), "solver prototxt")


def _parse_binary(path: str | os.PathLike, message: Message, what: str, hint: str) -> Message:
    path = require_file(path, what)
    data = path.read_bytes()
    if not data:
        raise AgegenderError(f"{what} {path} is empty; {hint}")
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise AgegenderError(f"{what} {path} is truncated or not a {what} ({len(data)} bytes); {hint}") from None
    return message


def read_caffemodel(path: str | os.PathLike) -> caffe_pb2.NetParameter:
    """A binary caffemodel (new or V1 layers), upgraded to the new form."""
    net = _parse_binary(path, caffe_pb2.NetParameter(), "caffemodel", "re-download or re-train it")
    try:
        return upgrade_net(net)
    except ValueError as exc:
        raise AgegenderError(f"caffemodel {path}: {exc}") from None


def read_solverstate(path: str | os.PathLike) -> caffe_pb2.SolverState:
    return _parse_binary(path, caffe_pb2.SolverState(), "solverstate", "resume from an earlier snapshot")


def write_prototxt(message: Message, path: str | os.PathLike) -> Path:
    return write_text_atomic(path, text_format.MessageToString(message))


def write_caffemodel(net: caffe_pb2.NetParameter, path: str | os.PathLike) -> Path:
    return write_bytes_atomic(path, net.SerializeToString())


def write_solverstate(state: caffe_pb2.SolverState, path: str | os.PathLike) -> Path:
    return write_bytes_atomic(path, state.SerializeToString())
