"""OpenVINO backend: one builder per Caffe layer type, turning a parsed Node into opset1 operations.

Only opset1 is used: every OpenVINO runtime since 2020 reads it, including 2022.3, the last release whose
MYRIAD plugin drives the Neural Compute Stick 2. Reshapes copy the batch with ``special_zero`` so an IR
can still be reshaped to another batch size (the 10 crops of over-sampling). BatchNorm and Scale layers
that follow a Convolution are folded into its weights; Dropout and Split vanish.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import numpy as np
import openvino as ov
import openvino.opset1 as ops

from agegender.errors import AgegenderError
from agegender.layers.net import Net, Node

Outputs = list[ov.Output]
Builder = Callable[[Node, Outputs, Sequence[np.ndarray]], Outputs]
BUILDERS: dict[str, Builder] = {}

# Layers that have no place in a compiled deploy net, with what to do instead.
NOT_DEPLOYABLE = {
    "Data": "feeds from an LMDB; a deploy prototxt starts with an Input layer (or input/input_dim)",
    "SoftmaxWithLoss": "is a training loss; a deploy prototxt ends with a Softmax layer",
    "Accuracy": "is a training metric; remove it from the deploy prototxt",
}


def builder(*types: str):
    def register(fn: Builder) -> Builder:
        for layer_type in types:
            BUILDERS[layer_type] = fn
        return fn
    return register


def _const(array, dtype=np.float32) -> ov.Output:
    return ops.constant(np.asarray(array, dtype=dtype)).output(0)


def _channel_shape(values: np.ndarray, rank: int, axis: int = 1) -> np.ndarray:
    """``values`` laid out along ``axis`` (and the axes after it) of a ``rank``-D tensor, for broadcasting."""
    shape = (1,) * axis + values.shape + (1,) * (rank - axis - values.ndim)
    return values.reshape(shape)


def _reshape(x: ov.Output, target: Sequence[int]) -> ov.Output:
    """Reshape-1 with Caffe's 0 (copy the input's dimension at that index) and -1 (infer)."""
    return ops.reshape(x, _const(list(target), np.int64), special_zero=True).output(0)


@builder("Input")
def input_layer(node: Node, inputs: Outputs, blobs) -> Outputs:
    outputs = []
    for top, shape in zip(node.tops, node.top_shapes):
        parameter = ops.parameter(list(shape), np.float32, name=top)
        parameter.output(0).get_tensor().set_names({top})
        outputs.append(parameter.output(0))
    return outputs


@builder("Convolution")
def convolution(node, inputs, blobs):
    spec = node.spec
    weights, strides, pads, dilations = blobs[0], list(spec.stride), list(spec.pad), list(spec.dilation)
    if spec.group == 1:
        y = ops.convolution(inputs[0], _const(weights), strides, pads, pads, dilations)
    else:
        o, i, kh, kw = weights.shape
        grouped = weights.reshape(spec.group, o // spec.group, i, kh, kw)
        y = ops.group_convolution(inputs[0], _const(grouped), strides, pads, pads, dilations)
    if len(blobs) > 1:  # Caffe's bias, or the one a folded BatchNorm/Scale left
        y = ops.add(y, _const(_channel_shape(blobs[1], 4)))
    return [y.output(0)]


@builder("Pooling")
def pooling(node, inputs, blobs):
    """Caffe's pooling: ceil-mode output size (extra bottom/right padding), windows clipped at the
    padded border, and AVE dividing by the window's overlap with the input plus its symmetric padding."""
    bottom = node.bottom_shapes[0]
    spec = node.spec.resolved(bottom)
    extra = node.spec.output_padding(bottom)
    kernel, strides, pads = list(spec.kernel), list(spec.stride), list(spec.pad)
    pads_end = [p + e for p, e in zip(pads, extra)]
    x = inputs[0]
    if spec.method == "MAX":
        return [ops.max_pool(x, strides, pads, pads_end, kernel, "floor", "explicit").output(0)]
    if not any(pads):  # Caffe divides by the part of the window inside the input
        return [ops.avg_pool(x, strides, [0, 0], list(extra), kernel, True, "floor", "explicit").output(0)]
    if not any(extra):  # every window lies inside input + padding: Caffe divides by the full kernel
        return [ops.avg_pool(x, strides, pads, pads, kernel, False, "floor", "explicit").output(0)]
    # Padding counts, the ceil-mode overhang does not: pad with zeros explicitly, exclude only the overhang.
    padded = ops.pad(x, _const([0, 0, *pads], np.int64), _const([0, 0, *pads], np.int64), "constant", _const(0.0))
    return [ops.avg_pool(padded, strides, [0, 0], list(extra), kernel, True, "floor", "explicit").output(0)]


@builder("LRN")
def lrn(node, inputs, blobs):
    """OpenVINO's LRN divides alpha by size^len(axes) as Caffe does; Caffe's WITHIN_CHANNEL ignores k (uses 1)."""
    spec = node.spec
    axes, bias = ([1], spec.k) if spec.across_channels else ([2, 3], 1.0)
    return [ops.lrn(inputs[0], _const(axes, np.int64), spec.alpha, spec.beta, bias, spec.local_size).output(0)]


@builder("ReLU")
def relu(node, inputs, blobs):
    if node.spec.negative_slope == 0:
        return [ops.relu(inputs[0]).output(0)]
    return [ops.prelu(inputs[0], _const([node.spec.negative_slope])).output(0)]


@builder("PReLU")
def prelu(node, inputs, blobs):
    return [ops.prelu(inputs[0], _const(blobs[0].reshape(-1))).output(0)]  # 1 value, or 1 per channel (axis 1)


@builder("Sigmoid")
def sigmoid(node, inputs, blobs):
    return [ops.sigmoid(inputs[0]).output(0)]


@builder("TanH")
def tanh(node, inputs, blobs):
    return [ops.tanh(inputs[0]).output(0)]


@builder("Dropout", "Split")
def identity(node, inputs, blobs):
    return [inputs[0]] * len(node.tops)


@builder("Silence")
def silence(node, inputs, blobs):
    return []


@builder("InnerProduct")
def inner_product(node, inputs, blobs):
    axis = node.spec.axis % len(node.bottom_shapes[0])
    x = _reshape(inputs[0], [0] * axis + [-1])
    y = ops.matmul(x, _const(blobs[0]), False, not node.spec.transpose)
    if len(blobs) > 1:
        y = ops.add(y, _const(blobs[1]))
    return [y.output(0)]


@builder("Softmax")
def softmax(node, inputs, blobs):
    return [ops.softmax(inputs[0], node.spec.axis % len(node.bottom_shapes[0])).output(0)]


@builder("Concat")
def concat(node, inputs, blobs):
    return [ops.concat(inputs, node.spec.axis % len(node.bottom_shapes[0])).output(0)]


@builder("Slice")
def slice_layer(node, inputs, blobs):
    bottom = node.bottom_shapes[0]
    sizes = node.spec.sizes(bottom, len(node.tops))
    split = ops.variadic_split(inputs[0], _const(node.spec.axis % len(bottom), np.int64), _const(sizes, np.int64))
    return list(split.outputs())


@builder("Eltwise")
def eltwise(node, inputs, blobs):
    spec = node.spec
    if spec.operation == "PROD":
        combine = ops.multiply
    elif spec.operation == "MAX":
        combine = ops.maximum
    else:
        combine = ops.add
        if spec.coeffs:
            inputs = [x if c == 1 else ops.multiply(x, _const(c)).output(0) for x, c in zip(inputs, spec.coeffs)]
    y = inputs[0]
    for x in inputs[1:]:
        y = combine(y, x).output(0)
    return [y]


@builder("Flatten")
def flatten(node, inputs, blobs):
    bottom = node.bottom_shapes[0]
    start, end = node.spec.axis % len(bottom), node.spec.end_axis % len(bottom)
    return [_reshape(inputs[0], [0] * start + [-1] + list(bottom[end + 1:]))]


@builder("Reshape")
def reshape(node, inputs, blobs):
    """Leading axes keep Caffe's 0 (copy at the same index); the rest are Caffe's own resolved shape."""
    spec, top = node.spec, node.top_shapes[0]
    start = spec.axis % (len(node.bottom_shapes[0]) + 1) if spec.axis < 0 else spec.axis
    return [_reshape(inputs[0], [0] * start + list(top[start:]))]


@builder("BatchNorm")
def batch_norm(node, inputs, blobs):
    scale, shift = batch_norm_affine(node, blobs)
    rank = len(node.bottom_shapes[0])
    y = ops.multiply(inputs[0], _const(_channel_shape(scale, rank)))
    return [ops.add(y, _const(_channel_shape(shift, rank))).output(0)]


@builder("Scale")
def scale(node, inputs, blobs):
    spec, bottom = node.spec, node.bottom_shapes[0]
    axis = spec.axis % len(bottom)
    if len(inputs) == 2:  # the scale is the second bottom, laid out from `axis` on
        factor_shape = node.bottom_shapes[1]
        layout = (1,) * axis + tuple(factor_shape) + (1,) * (len(bottom) - axis - len(factor_shape))
        factor, bias = _reshape(inputs[1], layout), blobs[0] if blobs else None
    else:
        factor, bias = _const(_channel_shape(blobs[0], len(bottom), axis)), blobs[1] if len(blobs) > 1 else None
    y = ops.multiply(inputs[0], factor)
    if bias is not None:
        y = ops.add(y, _const(_channel_shape(bias, len(bottom), axis)))
    return [y.output(0)]


def batch_norm_affine(node: Node, blobs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Caffe's inference BatchNorm as y = x * scale + shift: stored mean and variance are divided by
    the third blob (the moving-average normaliser; 0 means no statistics yet)."""
    if node.spec.use_global_stats is False:
        raise AgegenderError(f"{node.describe()}: use_global_stats: false normalises with each batch's statistics; "
                             f"a deploy net needs the stored ones (remove the line)")
    mean, variance, normaliser = blobs
    factor = 0.0 if normaliser.reshape(-1)[0] == 0 else 1.0 / float(normaliser.reshape(-1)[0])
    inv_std = 1.0 / np.sqrt(variance * factor + node.spec.eps)
    return inv_std.astype(np.float32), (-mean * factor * inv_std).astype(np.float32)


def _scale_affine(node: Node, blobs: Sequence[np.ndarray], channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A one-bottom Scale along the channel axis as (scale, shift) per channel, else None."""
    bottom = node.bottom_shapes[0]
    if len(node.bottoms) != 1 or len(bottom) != 4 or node.spec.axis % 4 != 1:
        return None
    if node.spec.scale_shape(bottom) not in ((channels,), ()):
        return None
    factor = np.broadcast_to(blobs[0].reshape(-1), (channels,))
    shift = np.broadcast_to(blobs[1].reshape(-1), (channels,)) if len(blobs) > 1 else np.zeros(channels, np.float32)
    return factor.astype(np.float32), shift.astype(np.float32)


def fold_into_convolutions(net: Net, weights: dict[str, list[np.ndarray]]
                           ) -> tuple[dict[str, list[np.ndarray]], set[str]]:
    """Fold each BatchNorm/Scale whose input is a Convolution's output that nothing else reads into that
    convolution's weights and bias. Returns the new weights and the names of the folded layers."""
    producer: dict[str, str] = {}
    readers: Counter = Counter()
    for node in net.nodes:
        readers.update((b, producer[b]) for b in node.bottoms)
        producer.update((t, node.name) for t in node.tops)
    weights = {name: list(blobs) for name, blobs in weights.items()}
    folds_into: dict[str, str] = {}  # layer -> convolution whose output it now is
    folded: set[str] = set()
    producer = {}
    for node in net.nodes:
        if node.type == "Convolution":
            folds_into[node.name] = node.name
        elif node.type in ("BatchNorm", "Scale") and len(node.bottoms) == 1:
            source = producer[node.bottoms[0]]
            conv = folds_into.get(source)
            if conv is not None and readers[(node.bottoms[0], source)] == 1:
                if _fold(node, weights[node.name], weights[conv]):
                    folds_into[node.name] = conv
                    folded.add(node.name)
        producer.update((t, node.name) for t in node.tops)
    return weights, folded


def _fold(node: Node, blobs: list[np.ndarray], conv_blobs: list[np.ndarray]) -> bool:
    """Apply y = x * scale + shift to the convolution's blobs in place; False when the layer cannot fold."""
    channels = conv_blobs[0].shape[0]
    affine = batch_norm_affine(node, blobs) if node.type == "BatchNorm" else _scale_affine(node, blobs, channels)
    if affine is None:
        return False
    scale, shift = affine
    bias = conv_blobs[1] if len(conv_blobs) > 1 else np.zeros(channels, np.float32)
    conv_blobs[:] = [conv_blobs[0] * scale[:, None, None, None], bias * scale + shift]
    return True


def build_model(net: Net, weights: dict[str, list[np.ndarray]], fold: bool = True) -> ov.Model:
    """The net as an ov.Model whose inputs and outputs carry the Caffe blob names."""
    if fold:
        weights, folded = fold_into_convolutions(net, weights)
    else:
        folded = set()
    blobs: dict[str, ov.Output] = {}
    parameters, named = [], set()
    for node in net.nodes:
        inputs = [blobs[b] for b in node.bottoms]
        if node.name in folded:
            outputs = inputs[:1]
        else:
            outputs = _build_node(node, inputs, weights.get(node.name, []))
            _name_ops(node.name, outputs, named)
        if node.type == "Input":
            parameters += [o.get_node() for o in outputs]
        blobs.update(zip(node.tops, outputs))
    results = []
    for name in net.outputs:
        output = blobs[name]
        output.get_tensor().add_names({name})
        results.append(ops.result(output))
    return ov.Model(results, parameters, net.name or "caffe_net")


def _name_ops(layer: str, outputs: Outputs, named: set[str]) -> None:
    """Name the operations a layer added after it (``conv1``, ``conv1/Convolution``), for profiles and NNCF
    reports; ``named`` holds the operations of earlier layers, where the walk stops."""
    last = {o.get_node().get_name() for o in outputs}
    stack = [o.get_node() for o in outputs]
    while stack:
        op = stack.pop()
        if op.get_name() in named or op.get_type_name() in ("Constant", "Parameter"):
            continue
        named.add(op.get_name())
        op.set_friendly_name(layer if op.get_name() in last else f"{layer}/{op.get_type_name()}")
        stack += [source.get_source_output().get_node() for source in op.inputs()]


def _build_node(node: Node, inputs: Outputs, blobs: Sequence[np.ndarray]) -> Outputs:
    if node.type in NOT_DEPLOYABLE:
        raise AgegenderError(f"{node.describe()} {NOT_DEPLOYABLE[node.type]}")
    build = BUILDERS.get(node.type)
    if build is None:
        raise AgegenderError(f"{node.describe()}: layer type '{node.type}' cannot be compiled to OpenVINO; "
                             f"supported: {', '.join(sorted(BUILDERS))}")
    return build(node, inputs, blobs)
