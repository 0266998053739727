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
from agegender.layers.spec import register_once

Outputs = list[ov.Output]
Builder = Callable[[Node, Outputs, Sequence[np.ndarray]], Outputs]
BUILDERS: dict[str, Builder] = {}

def builder(*types: str):
    def register(fn: Builder) -> Builder:
        register_once(BUILDERS, types, fn, "an OpenVINO builder")
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


@builder("Convolution", "ConvolutionDepthwise")
def convolution(node, inputs, blobs):
    spec = node.spec
    weights, strides, pads, dilations = blobs[0], list(spec.stride), list(spec.pad), list(spec.dilation)
    group = spec.groups(node.bottom_shapes[0][1])
    if group == 1:
        y = ops.convolution(inputs[0], _const(weights), strides, pads, pads, dilations)
    else:
        o, i, kh, kw = weights.shape
        grouped = weights.reshape(group, o // group, i, kh, kw)
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


@builder("Deconvolution")
def deconvolution(node, inputs, blobs):
    """Caffe's weights C_in x (C_out / group) x kh x kw are OpenVINO's backprop-data filters as they are."""
    spec = node.spec
    weights, strides, pads, dilations = blobs[0], list(spec.stride), list(spec.pad), list(spec.dilation)
    if spec.group == 1:
        y = ops.convolution_backprop_data(inputs[0], _const(weights), strides, pads_begin=pads, pads_end=pads,
                                          dilations=dilations)
    else:
        i, o, kh, kw = weights.shape
        grouped = weights.reshape(spec.group, i // spec.group, o, kh, kw)
        y = ops.group_convolution_backprop_data(inputs[0], _const(grouped), strides, pads_begin=pads,
                                                pads_end=pads, dilations=dilations)
    if len(blobs) > 1:
        y = ops.add(y, _const(_channel_shape(blobs[1], 4)))
    return [y.output(0)]


def _affine_input(node: Node, x: ov.Output, scale: float, shift: float) -> ov.Output:
    """shift + scale * x, skipping a multiplication by 1 and an addition of 0."""
    if scale != 1:
        x = ops.multiply(x, _const(scale)).output(0)
    return ops.add(x, _const(shift)).output(0) if shift != 0 else x


@builder("Power")
def power(node, inputs, blobs):
    spec = node.spec
    y = _affine_input(node, inputs[0], spec.scale, spec.shift)
    return [y if spec.power == 1 else ops.power(y, _const(spec.power)).output(0)]


@builder("Exp")
def exp(node, inputs, blobs):
    spec = node.spec
    return [ops.exp(_affine_input(node, inputs[0], spec.log_base * spec.scale, spec.log_base * spec.shift)).output(0)]


@builder("Log")
def log(node, inputs, blobs):
    spec = node.spec
    y = ops.log(_affine_input(node, inputs[0], spec.scale, spec.shift)).output(0)
    return [y if spec.log_base == 1 else ops.multiply(y, _const(1.0 / spec.log_base)).output(0)]


@builder("AbsVal")
def abs_value(node, inputs, blobs):
    return [ops.abs(inputs[0]).output(0)]


@builder("BNLL")
def bnll(node, inputs, blobs):
    """log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)): no overflow, opset1 only (SoftPlus is opset4)."""
    x = inputs[0]
    tail = ops.log(ops.add(ops.exp(ops.multiply(ops.abs(x), _const(-1.0))), _const(1.0)))
    return [ops.add(ops.maximum(x, _const(0.0)), tail).output(0)]


@builder("ELU")
def elu(node, inputs, blobs):
    return [ops.elu(inputs[0], node.spec.alpha).output(0)]


@builder("ReLU6")
def relu6(node, inputs, blobs):
    return [ops.clamp(inputs[0], 0.0, 6.0).output(0)]


@builder("Bias")
def bias(node, inputs, blobs):
    bottom = node.bottom_shapes[0]
    axis = node.spec.axis % len(bottom) if bottom else 0
    shape = node.spec.bias_shape(node.bottom_shapes)
    layout = (1,) * axis + tuple(shape) + (1,) * (len(bottom) - axis - len(shape))
    b = _const(blobs[0].reshape(layout)) if node.spec.learned else _reshape(inputs[1], layout)
    return [ops.add(inputs[0], b).output(0)]


@builder("Crop")
def crop(node, inputs, blobs):
    starts = node.spec.starts(node.bottom_shapes)
    ends = [s + size for s, size in zip(starts, node.top_shapes[0])]
    ones = [1] * len(starts)
    return [ops.strided_slice(inputs[0], _const(starts, np.int64), _const(ends, np.int64), _const(ones, np.int64),
                              [0] * len(starts), [0] * len(starts)).output(0)]


@builder("ArgMax")
def argmax(node, inputs, blobs):
    """TopK by value; indices as floats, as Caffe writes them. Without an axis each sample is flattened and
    ``out_max_val`` gives indices, then values, along axis 1."""
    spec, bottom, top = node.spec, node.bottom_shapes[0], node.top_shapes[0]
    x, axis = (inputs[0], spec.axis % len(bottom)) if spec.axis is not None else (_reshape(inputs[0], [0, -1]), 1)
    best = ops.topk(x, _const(spec.top_k, np.int64), axis, "max", "value")
    values, indices = best.output(0), ops.convert(best.output(1), np.float32).output(0)
    if spec.axis is not None:
        return [values if spec.out_max_val else indices]
    y = ops.concat([indices, values], 1).output(0) if spec.out_max_val else indices
    return [_reshape(y, [0, *top[1:]])]


@builder("ShuffleChannel")
def shuffle_channel(node, inputs, blobs):
    n, c, h, w = node.bottom_shapes[0]
    g = node.spec.group
    grouped = _reshape(inputs[0], [0, g, c // g, h * w])
    return [_reshape(ops.transpose(grouped, _const([0, 2, 1, 3], np.int64)).output(0), [0, c, h, w])]


@builder("MVN")
def mvn(node, inputs, blobs):
    """(x - mean) / (sqrt(mean of (x - mean)^2) + eps) from opset1 reductions (MVN itself is opset2)."""
    spec, x = node.spec, inputs[0]
    axes = _const(spec.axes(len(node.bottom_shapes[0])), np.int64)
    centred = ops.subtract(x, ops.reduce_mean(x, axes, True)).output(0)
    if not spec.normalize_variance:
        return [centred]
    deviation = ops.power(ops.reduce_mean(ops.multiply(centred, centred), axes, True), _const(0.5))
    return [ops.divide(centred, ops.add(deviation, _const(spec.eps))).output(0)]


@builder("Permute")
def permute(node, inputs, blobs):
    order = node.spec.full_order(len(node.bottom_shapes[0]))
    return [ops.transpose(inputs[0], _const(order, np.int64)).output(0)]


@builder("Normalize")
def normalize(node, inputs, blobs):
    """NormalizeL2 with eps added inside the square root (SSD's sqrt(sum x^2 + eps)), then the learned scale."""
    spec = node.spec
    axes = [1, 2, 3] if spec.across_spatial else [1]
    y = ops.normalize_l2(inputs[0], _const(axes, np.int64), spec.eps, "add")
    return [ops.multiply(y, _const(_channel_shape(blobs[0].reshape(-1), 4))).output(0)]


@builder("PriorBox")
def prior_box(node, inputs, blobs):
    """OpenVINO's PriorBox (Caffe's order with scale_all_sizes), for the feature and image sizes the net has;
    its 2 x N output becomes Caffe's 1 x 2 x N. Steps must be square (OpenVINO has one step)."""
    spec = node.spec
    (img_h, img_w), (step_h, step_w) = spec.geometry(node.bottom_shapes)
    if spec.step_hw[0] != spec.step_hw[1]:
        raise AgegenderError(f"{node.describe()}: step_h {step_h} differs from step_w {step_w}; OpenVINO's PriorBox "
                             f"takes one step")
    attrs = {"min_size": list(spec.min_sizes), "max_size": list(spec.max_sizes),
             "aspect_ratio": list(spec.aspect_ratios[1:]), "flip": False,  # already expanded, in Caffe's order
             "clip": spec.clip, "step": float(spec.step_hw[0]), "offset": spec.offset,
             "variance": list(spec.variances), "scale_all_sizes": True}
    boxes = ops.prior_box(_const(node.bottom_shapes[0][2:], np.int64), _const([img_h, img_w], np.int64), attrs)
    return [ops.unsqueeze(boxes, _const([0], np.int64)).output(0)]


@builder("DetectionOutput")
def detection_output(node, inputs, blobs):
    """OpenVINO's DetectionOutput: Caffe's decoding, per-class NMS and keep_top_k; rows after the last
    detection have image id -1."""
    spec = node.spec
    if spec.code_type == "CORNER_SIZE" or spec.eta != 1.0:
        raise AgegenderError(f"{node.describe()}: OpenVINO's DetectionOutput has no code_type CORNER_SIZE nor "
                             f"adaptive NMS (eta {spec.eta}); use CORNER or CENTER_SIZE and eta 1")
    attrs = {"num_classes": spec.num_classes, "background_label_id": spec.background_label_id,
             "top_k": spec.top_k, "variance_encoded_in_target": spec.variance_encoded_in_target,
             "keep_top_k": [spec.keep_top_k], "code_type": f"caffe.PriorBoxParameter.{spec.code_type}",
             "share_location": spec.share_location, "nms_threshold": spec.nms_threshold,
             "confidence_threshold": max(spec.confidence_threshold, -3.0e38), "normalized": True}
    loc, conf = (_reshape(x, [0, -1]) for x in inputs[:2])
    return [ops.detection_output(loc, conf, inputs[2], attrs).output(0)]


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


def build_model(net: Net, weights: dict[str, list[np.ndarray]], fold: bool = True,
                expose: Sequence[str] | None = None) -> ov.Model:
    """The net as an ov.Model whose inputs and outputs carry the Caffe blob names; ``expose`` (default: the
    net's outputs) may name any blob, e.g. an intermediate one to compare."""
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
    for name in expose or net.outputs:
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
    if node.spec.not_deployable:
        raise AgegenderError(f"{node.describe()} {node.spec.not_deployable}")
    build = BUILDERS.get(node.type)
    if build is None:
        raise AgegenderError(f"{node.describe()}: layer type '{node.type}' cannot be compiled to OpenVINO; "
                             f"supported: {', '.join(sorted(BUILDERS))}")
    return build(node, inputs, blobs)
