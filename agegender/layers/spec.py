"""Layer specs: one frozen dataclass per Caffe layer type, parsed from a LayerParameter.

Each spec knows its top shapes for given bottom shapes (Caffe's Reshape), the shapes of its parameter
blobs in Caffe's order (what a caffemodel must hold), and its multiply-accumulates. Backends read the
spec's fields and never the protobuf.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from agegender.augmentation import Augmentation
from agegender.caffe import caffe_pb2

Shape = tuple[int, ...]
REGISTRY: dict[str, type["LayerSpec"]] = {}


def _count(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape)  # Python ints: no int64 overflow on absurd shapes


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a {ndim}-D blob")
    return axis % ndim


def _filler(param: caffe_pb2.FillerParameter, default_type: str = "constant",
            value: float = 0.0) -> caffe_pb2.FillerParameter:
    """The filler as written, or Caffe's default for that blob."""
    if param.ByteSize():
        return param
    return caffe_pb2.FillerParameter(type=default_type, value=value)


def register_once(registry: dict, types: Sequence[str], value, what: str) -> None:
    """Add ``value`` under each type name, refusing a name already taken (as Caffe's LayerRegistry::AddCreator)."""
    for name in types:
        if name in registry:
            raise ValueError(f"{what} for layer type '{name}' is already registered")
        registry[name] = value


def register(*types: str):
    def wrap(cls):
        register_once(REGISTRY, types, cls, "a layer spec")
        cls.types = types
        return cls
    return wrap


@dataclass(frozen=True)
class LayerSpec:
    """Base: a layer with no parameters whose single top has its first bottom's shape.

    Per-type traits are class attributes, read by the net builder and the backends:
    ``in_place`` (Caffe computes it correctly with top == bottom), ``fed`` (its tops are fed from outside the
    net), ``is_loss`` (its first top has loss_weight 1 by default), ``learns`` (its blobs take gradients; False
    for statistics Caffe forces to lr_mult 0), ``trainable`` (the PyTorch engine runs it) and ``not_deployable``
    (why a compiled deploy net cannot hold it, or "").
    """

    types: ClassVar[tuple[str, ...]] = ()
    n_bottoms: ClassVar[tuple[int, int]] = (1, 1)  # (min, max); max -1 for any
    needs_top: ClassVar[bool] = True
    in_place: ClassVar[bool] = False
    fed: ClassVar[bool] = False
    is_loss: ClassVar[bool] = False
    learns: ClassVar[bool] = True
    trainable: ClassVar[bool] = True
    not_deployable: ClassVar[str] = ""

    @classmethod
    def parse(cls, layer: caffe_pb2.LayerParameter) -> "LayerSpec":
        return cls()

    def top_shapes(self, bottoms: Sequence[Shape], n_tops: int) -> list[Shape]:
        return [bottoms[0]] * n_tops

    def blob_shapes(self, bottoms: Sequence[Shape]) -> list[Shape]:
        return []

    def fillers(self) -> list[caffe_pb2.FillerParameter]:
        """How each parameter blob is initialised for training (same order as blob_shapes)."""
        return []

    def macs(self, bottoms: Sequence[Shape], tops: Sequence[Shape]) -> int:
        return 0


@register("Input")
@dataclass(frozen=True)
class InputSpec(LayerSpec):
    fed: ClassVar = True
    shapes: tuple[Shape, ...]
    n_bottoms: ClassVar = (0, 0)

    @classmethod
    def parse(cls, layer):
        return cls(tuple(tuple(int(d) for d in s.dim) for s in layer.input_param.shape))

    def top_shapes(self, bottoms, n_tops):
        if len(self.shapes) not in (1, n_tops):
            raise ValueError(f"input_param has {len(self.shapes)} shapes for {n_tops} tops; give 1 or {n_tops}")
        return [self.shapes[0]] * n_tops if len(self.shapes) == 1 else list(self.shapes)


@register("Data")
@dataclass(frozen=True)
class DataSpec(LayerSpec):
    """LMDB input. Top shapes need the first record, so the net builder supplies ``datum_shape``."""
    fed: ClassVar = True
    not_deployable: ClassVar = "feeds from an LMDB; a deploy prototxt starts with an Input layer (or input/input_dim)"

    source: str
    batch_size: int
    crop_size: int
    mirror: bool
    scale: float
    mean_file: str
    mean_value: tuple[float, ...]
    augment: Augmentation | None = None
    n_bottoms: ClassVar = (0, 0)

    @classmethod
    def parse(cls, layer):
        t, d = layer.transform_param, layer.data_param
        if d.backend != caffe_pb2.DataParameter.LMDB and d.HasField("backend"):
            raise ValueError("only backend: LMDB is supported (LevelDB is not)")
        if t.mean_file and t.mean_value:
            raise ValueError("transform_param gives both mean_file and mean_value; give one")
        if not d.batch_size:
            raise ValueError("data_param needs batch_size > 0")  # Caffe: "Positive batch size required"
        augment = Augmentation.from_proto(t.augment_param if t.HasField("augment_param") else None)
        return cls(d.source, d.batch_size, t.crop_size, t.mirror, t.scale, t.mean_file, tuple(t.mean_value), augment)

    def shapes_for(self, datum_shape: Shape, n_tops: int) -> list[Shape]:
        c, h, w = datum_shape
        if self.crop_size:
            if self.crop_size > min(h, w):
                raise ValueError(f"crop_size {self.crop_size} is larger than the {h}x{w} images in {self.source}")
            h = w = self.crop_size
        return [(self.batch_size, c, h, w), (self.batch_size,)][:n_tops]

    def top_shapes(self, bottoms, n_tops):
        raise ValueError("a Data layer's shape comes from its LMDB; use Net with the LMDB present")


def _spatial(values: Sequence[int], h, w, default: int, name: str, lone_ok: bool = False) -> tuple[int, int]:
    """Caffe's kernel/pad/stride rule: one value for both axes, or *_h and *_w (both, unless ``lone_ok``:
    Caffe's convolution takes a lone pad_h or pad_w, the other being 0)."""
    if h is not None or w is not None:
        if values:
            raise ValueError(f"give either {name} or {name}_h/{name}_w, not both")
        if (h is None or w is None) and not lone_ok:
            raise ValueError(f"give both {name}_h and {name}_w (or one {name} for both)")
        pair = int(h if h is not None else default), int(w if w is not None else default)
    else:
        values = list(values)
        if len(values) > 2:
            raise ValueError(f"{name} has {len(values)} values; 2-D layers take 1 or 2")
        pair = (int(values[0]), int(values[-1])) if values else (default, default)
    if default == 1 and min(pair) < 1:  # stride, dilation: Caffe CHECKs them > 0
        raise ValueError(f"{name} must be at least 1, got {pair[0] if pair[0] < 1 else pair[1]}")
    return pair


def _opt(msg, field):
    return getattr(msg, field) if msg.HasField(field) else None


@register("Convolution")
@dataclass(frozen=True)
class ConvolutionSpec(LayerSpec):
    num_output: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    dilation: tuple[int, int]
    group: int
    bias_term: bool
    weight_filler: caffe_pb2.FillerParameter
    bias_filler: caffe_pb2.FillerParameter

    @classmethod
    def parse(cls, layer):
        p = layer.convolution_param
        if p.axis != 1:
            raise ValueError("only axis: 1 convolution is supported")
        kernel = _spatial(p.kernel_size, _opt(p, "kernel_h"), _opt(p, "kernel_w"), 0, "kernel")
        if min(kernel) <= 0:
            raise ValueError("convolution_param needs kernel_size (or kernel_h and kernel_w)")
        if not p.num_output:
            raise ValueError("convolution_param needs num_output")
        stride = _spatial(p.stride, _opt(p, "stride_h"), _opt(p, "stride_w"), 1, "stride")
        pad = _spatial(p.pad, _opt(p, "pad_h"), _opt(p, "pad_w"), 0, "pad", lone_ok=True)
        dilation = _spatial(p.dilation, None, None, 1, "dilation")
        if p.num_output % p.group:
            raise ValueError(f"num_output {p.num_output} is not divisible by group {p.group}")
        return cls(p.num_output, kernel, stride, pad, dilation, p.group, p.bias_term,
                   _filler(p.weight_filler), _filler(p.bias_filler))

    def groups(self, channels: int) -> int:
        """The group count for ``channels`` input channels (ConvolutionDepthwise: one group per channel)."""
        return self.group

    def top_shapes(self, bottoms, n_tops):
        n, c, h, w = _four_d(bottoms[0], "Convolution")
        group = self.groups(c)
        if c % group or self.num_output % group:
            raise ValueError(f"{c} input channels and num_output {self.num_output} are not divisible by group {group}")
        out = [(size + 2 * p - (d * (k - 1) + 1)) // s + 1 for size, k, s, p, d in
               zip((h, w), self.kernel, self.stride, self.pad, self.dilation)]
        if min(out) <= 0:
            raise ValueError(f"kernel {self.kernel} does not fit the {h}x{w} input")
        return [(n, self.num_output, *out)] * n_tops

    def blob_shapes(self, bottoms):
        c = bottoms[0][1]
        shapes = [(self.num_output, c // self.groups(c), *self.kernel)]
        return shapes + [(self.num_output,)] if self.bias_term else shapes

    def fillers(self):
        return [self.weight_filler, self.bias_filler][: 2 if self.bias_term else 1]

    def macs(self, bottoms, tops):
        return _count(tops[0]) * (bottoms[0][1] // self.groups(bottoms[0][1])) * self.kernel[0] * self.kernel[1]


@register("Deconvolution")
@dataclass(frozen=True)
class DeconvolutionSpec(ConvolutionSpec):
    """Caffe's DeconvolutionLayer: convolution's backward pass; weights C_in x (num_output / group) x kh x kw."""

    def top_shapes(self, bottoms, n_tops):
        n, c, h, w = _four_d(bottoms[0], "Deconvolution")
        if c % self.group:
            raise ValueError(f"{c} input channels are not divisible by group {self.group}")
        out = [s * (size - 1) + d * (k - 1) + 1 - 2 * p for size, k, s, p, d in
               zip((h, w), self.kernel, self.stride, self.pad, self.dilation)]
        if min(out) <= 0:
            raise ValueError(f"pad {self.pad} leaves no output of the {h}x{w} input")
        return [(n, self.num_output, *out)] * n_tops

    def blob_shapes(self, bottoms):
        shapes = [(bottoms[0][1], self.num_output // self.group, *self.kernel)]
        return shapes + [(self.num_output,)] if self.bias_term else shapes

    def macs(self, bottoms, tops):
        return _count(bottoms[0]) * (self.num_output // self.group) * self.kernel[0] * self.kernel[1]


@register("ConvolutionDepthwise")
@dataclass(frozen=True)
class ConvolutionDepthwiseSpec(ConvolutionSpec):
    """Forks' ConvolutionDepthwise (MobileNet): a Convolution with group = input channels."""

    @classmethod
    def parse(cls, layer):
        layer = caffe_pb2.LayerParameter(convolution_param=layer.convolution_param)
        layer.convolution_param.group = 1  # resolved to the channels once they are known
        return super().parse(layer)

    def groups(self, channels: int) -> int:
        return channels


def _four_d(shape: Shape, layer_type: str) -> Shape:
    if len(shape) != 4:
        raise ValueError(f"{layer_type} needs a 4-D NxCxHxW input, got shape {shape}")
    return shape


@register("Pooling")
@dataclass(frozen=True)
class PoolingSpec(LayerSpec):
    method: str  # "MAX" or "AVE"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    global_pooling: bool
    ceil_mode: bool

    @classmethod
    def parse(cls, layer):
        p = layer.pooling_param
        method = caffe_pb2.PoolingParameter.PoolMethod.Name(p.pool)
        if method == "STOCHASTIC":
            raise ValueError("STOCHASTIC pooling is not supported; use MAX or AVE")
        kernel = _spatial([p.kernel_size] if p.HasField("kernel_size") else [],
                          _opt(p, "kernel_h"), _opt(p, "kernel_w"), 0, "kernel")
        if not p.global_pooling and min(kernel) <= 0:
            raise ValueError("pooling_param needs kernel_size (or kernel_h and kernel_w, or global_pooling)")
        stride = _spatial([p.stride] if p.HasField("stride") else [], _opt(p, "stride_h"), _opt(p, "stride_w"), 1,
                          "stride")
        pad = _spatial([p.pad] if p.HasField("pad") else [], _opt(p, "pad_h"), _opt(p, "pad_w"), 0, "pad")
        if p.global_pooling and (max(kernel) or max(pad) or max(stride) != 1):
            raise ValueError("global_pooling takes no kernel size, no pad and stride 1")
        return cls(method, kernel, stride, pad, p.global_pooling, p.round_mode == caffe_pb2.PoolingParameter.CEIL)

    def resolved(self, bottom: Shape) -> "PoolingSpec":
        """Global pooling becomes an ordinary pooling over the whole input."""
        if not self.global_pooling:
            return self
        return PoolingSpec(self.method, tuple(bottom[2:]), (1, 1), (0, 0), False, self.ceil_mode)

    def top_shapes(self, bottoms, n_tops):
        n, c, h, w = _four_d(bottoms[0], "Pooling")
        spec = self.resolved(bottoms[0])
        out = []
        for size, k, s, p in zip((h, w), spec.kernel, spec.stride, spec.pad):
            if p >= k:
                raise ValueError(f"pad {p} must be smaller than kernel {k}")
            span = size + 2 * p - k
            o = (math.ceil(span / s) if spec.ceil_mode else span // s) + 1
            if p and (o - 1) * s >= size + p:  # Caffe clips a last window that starts in the padding
                o -= 1
            out.append(o)
        return [(n, c, *out)] * n_tops

    def output_padding(self, bottom: Shape) -> tuple[int, int]:
        """Extra bottom/right padding that makes floor-mode pooling give Caffe's output size."""
        spec = self.resolved(bottom)
        top = self.top_shapes([bottom], 1)[0]
        return tuple(max(0, (o - 1) * s + k - (size + 2 * p))
                     for o, size, k, s, p in zip(top[2:], bottom[2:], spec.kernel, spec.stride, spec.pad))

    def macs(self, bottoms, tops):
        spec = self.resolved(bottoms[0])
        return _count(tops[0]) * spec.kernel[0] * spec.kernel[1]


@register("LRN")
@dataclass(frozen=True)
class LRNSpec(LayerSpec):
    """y = x / (k + alpha/size * sum over the window of x^2) ^ beta (Caffe divides alpha by the window size)."""

    local_size: int
    alpha: float
    beta: float
    k: float
    across_channels: bool

    @classmethod
    def parse(cls, layer):
        p = layer.lrn_param
        if p.local_size % 2 == 0:
            raise ValueError(f"local_size {p.local_size} must be odd")
        return cls(p.local_size, p.alpha, p.beta, p.k, p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS)

    def top_shapes(self, bottoms, n_tops):
        return [_four_d(bottoms[0], "LRN")] * n_tops


@register("ReLU")
@dataclass(frozen=True)
class ReLUSpec(LayerSpec):
    in_place: ClassVar = True
    negative_slope: float

    @classmethod
    def parse(cls, layer):
        return cls(layer.relu_param.negative_slope)


@register("PReLU")
@dataclass(frozen=True)
class PReLUSpec(LayerSpec):
    in_place: ClassVar = True
    channel_shared: bool
    filler: caffe_pb2.FillerParameter

    @classmethod
    def parse(cls, layer):
        p = layer.prelu_param
        return cls(p.channel_shared, _filler(p.filler, "constant", 0.25))

    def blob_shapes(self, bottoms):
        return [()] if self.channel_shared else [(bottoms[0][1],)]

    def fillers(self):
        return [self.filler]


@register("Sigmoid")
@dataclass(frozen=True)
class SigmoidSpec(LayerSpec):
    in_place: ClassVar = True


@register("TanH")
@dataclass(frozen=True)
class TanHSpec(LayerSpec):
    in_place: ClassVar = True


@register("Dropout")
@dataclass(frozen=True)
class DropoutSpec(LayerSpec):
    """Inverted dropout: Caffe scales kept values by 1/(1-ratio) at train time, identity at test time."""
    in_place: ClassVar = True

    ratio: float

    @classmethod
    def parse(cls, layer):
        ratio = layer.dropout_param.dropout_ratio
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"dropout_ratio {ratio} must be in [0, 1)")
        return cls(ratio)


@register("InnerProduct")
@dataclass(frozen=True)
class InnerProductSpec(LayerSpec):
    num_output: int
    bias_term: bool
    axis: int
    transpose: bool
    weight_filler: caffe_pb2.FillerParameter
    bias_filler: caffe_pb2.FillerParameter

    @classmethod
    def parse(cls, layer):
        p = layer.inner_product_param
        if not p.num_output:
            raise ValueError("inner_product_param needs num_output")
        return cls(p.num_output, p.bias_term, p.axis, p.transpose, _filler(p.weight_filler), _filler(p.bias_filler))

    def _split(self, bottom: Shape) -> tuple[Shape, int]:
        axis = _axis(self.axis, len(bottom))
        return bottom[:axis], _count(bottom[axis:])

    def top_shapes(self, bottoms, n_tops):
        outer, _ = self._split(bottoms[0])
        return [(*outer, self.num_output)] * n_tops

    def blob_shapes(self, bottoms):
        _, k = self._split(bottoms[0])
        shapes = [(k, self.num_output) if self.transpose else (self.num_output, k)]
        return shapes + [(self.num_output,)] if self.bias_term else shapes

    def fillers(self):
        return [self.weight_filler, self.bias_filler][: 2 if self.bias_term else 1]

    def macs(self, bottoms, tops):
        outer, k = self._split(bottoms[0])
        return _count(outer) * k * self.num_output


@register("Softmax")
@dataclass(frozen=True)
class SoftmaxSpec(LayerSpec):
    axis: int

    @classmethod
    def parse(cls, layer):
        return cls(layer.softmax_param.axis)


@register("SoftmaxWithLoss")
@dataclass(frozen=True)
class SoftmaxWithLossSpec(LayerSpec):
    is_loss: ClassVar = True
    not_deployable: ClassVar = "is a training loss; a deploy prototxt ends with a Softmax layer"
    axis: int
    ignore_label: int | None
    normalization: str  # FULL, VALID, BATCH_SIZE or NONE
    n_bottoms: ClassVar = (2, 2)

    @classmethod
    def parse(cls, layer):
        lp = layer.loss_param
        if lp.HasField("normalization"):
            norm = caffe_pb2.LossParameter.NormalizationMode.Name(lp.normalization)
        elif lp.HasField("normalize"):
            norm = "VALID" if lp.normalize else "BATCH_SIZE"
        else:
            norm = "VALID"
        return cls(layer.softmax_param.axis, lp.ignore_label if lp.HasField("ignore_label") else None, norm)

    def top_shapes(self, bottoms, n_tops):
        return [(), bottoms[0]][:n_tops]


@register("Accuracy")
@dataclass(frozen=True)
class AccuracySpec(LayerSpec):
    not_deployable: ClassVar = "is a training metric; remove it from the deploy prototxt"
    top_k: int
    axis: int
    ignore_label: int | None
    n_bottoms: ClassVar = (2, 2)

    @classmethod
    def parse(cls, layer):
        p = layer.accuracy_param
        return cls(p.top_k, p.axis, p.ignore_label if p.HasField("ignore_label") else None)

    def top_shapes(self, bottoms, n_tops):
        classes = bottoms[0][_axis(self.axis, len(bottoms[0]))]
        if self.top_k > classes:
            raise ValueError(f"top_k {self.top_k} exceeds the {classes} classes")
        return [(), (classes,)][:n_tops]


@register("Concat")
@dataclass(frozen=True)
class ConcatSpec(LayerSpec):
    axis: int
    n_bottoms: ClassVar = (1, -1)

    @classmethod
    def parse(cls, layer):
        p = layer.concat_param
        return cls(p.concat_dim if p.HasField("concat_dim") else p.axis)

    def top_shapes(self, bottoms, n_tops):
        axis = _axis(self.axis, len(bottoms[0]))
        for shape in bottoms[1:]:
            if len(shape) != len(bottoms[0]) or any(a != b for i, (a, b) in enumerate(zip(shape, bottoms[0]))
                                                    if i != axis):
                raise ValueError(f"cannot concatenate {bottoms[0]} and {shape} along axis {axis}")
        return [(*bottoms[0][:axis], sum(s[axis] for s in bottoms), *bottoms[0][axis + 1:])]


@register("Slice")
@dataclass(frozen=True)
class SliceSpec(LayerSpec):
    axis: int
    slice_points: tuple[int, ...]

    @classmethod
    def parse(cls, layer):
        p = layer.slice_param
        return cls(p.slice_dim if p.HasField("slice_dim") else p.axis, tuple(p.slice_point))

    def sizes(self, bottom: Shape, n_tops: int) -> list[int]:
        total = bottom[_axis(self.axis, len(bottom))]
        if self.slice_points:
            if len(self.slice_points) != n_tops - 1:
                raise ValueError(f"{len(self.slice_points)} slice_point(s) for {n_tops} tops; need {n_tops - 1}")
            edges = [0, *self.slice_points, total]
            sizes = [b - a for a, b in zip(edges, edges[1:])]
            if min(sizes) <= 0:
                raise ValueError(f"slice points {self.slice_points} do not increase within {total}")
            return sizes
        if total % n_tops:
            raise ValueError(f"cannot slice {total} evenly into {n_tops} tops")
        return [total // n_tops] * n_tops

    def top_shapes(self, bottoms, n_tops):
        axis = _axis(self.axis, len(bottoms[0]))
        b = bottoms[0]
        return [(*b[:axis], size, *b[axis + 1:]) for size in self.sizes(b, n_tops)]


@register("Split")
@dataclass(frozen=True)
class SplitSpec(LayerSpec):
    pass


@register("Eltwise")
@dataclass(frozen=True)
class EltwiseSpec(LayerSpec):
    operation: str  # PROD, SUM or MAX
    coeffs: tuple[float, ...]
    n_bottoms: ClassVar = (2, -1)

    @classmethod
    def parse(cls, layer):
        p = layer.eltwise_param
        op = caffe_pb2.EltwiseParameter.EltwiseOp.Name(p.operation)
        if p.coeff and op != "SUM":
            raise ValueError("eltwise coeff is only for operation: SUM")
        return cls(op, tuple(p.coeff))

    def top_shapes(self, bottoms, n_tops):
        if any(s != bottoms[0] for s in bottoms):
            raise ValueError(f"Eltwise inputs differ in shape: {list(bottoms)}")
        if self.coeffs and len(self.coeffs) != len(bottoms):
            raise ValueError(f"{len(self.coeffs)} coeff(s) for {len(bottoms)} inputs")
        return [bottoms[0]]


@register("Flatten")
@dataclass(frozen=True)
class FlattenSpec(LayerSpec):
    axis: int
    end_axis: int

    @classmethod
    def parse(cls, layer):
        return cls(layer.flatten_param.axis, layer.flatten_param.end_axis)

    def top_shapes(self, bottoms, n_tops):
        b = bottoms[0]
        start, end = _axis(self.axis, len(b)), _axis(self.end_axis, len(b))
        return [(*b[:start], _count(b[start:end + 1]), *b[end + 1:])]


@register("Reshape")
@dataclass(frozen=True)
class ReshapeSpec(LayerSpec):
    dims: tuple[int, ...]
    axis: int
    num_axes: int

    @classmethod
    def parse(cls, layer):
        p = layer.reshape_param
        dims = tuple(int(d) for d in p.shape.dim)
        if dims.count(-1) > 1:
            raise ValueError("reshape_param.shape may infer (-1) at most one dimension")
        return cls(dims, p.axis, p.num_axes)

    def top_shapes(self, bottoms, n_tops):
        b = bottoms[0]
        start = self.axis % (len(b) + 1) if self.axis < 0 else self.axis
        end = len(b) if self.num_axes == -1 else start + self.num_axes
        if not 0 <= start <= end <= len(b):
            raise ValueError(f"axis {self.axis} / num_axes {self.num_axes} do not fit a {len(b)}-D input")
        middle = [b[start + i] if d == 0 else d for i, d in enumerate(self.dims)]
        top = [*b[:start], *middle, *b[end:]]
        if -1 in top:
            known = _count([d for d in top if d != -1])
            if known == 0 or _count(b) % known:
                raise ValueError(f"cannot reshape {b} to {tuple(top)}")
            top[top.index(-1)] = _count(b) // known
        if _count(top) != _count(b):
            raise ValueError(f"cannot reshape {b} ({_count(b)} values) to {tuple(top)}")
        return [tuple(top)]


@register("BatchNorm")
@dataclass(frozen=True)
class BatchNormSpec(LayerSpec):
    """Caffe's BatchNorm: blobs are mean, variance (both unnormalised) and a scale factor to divide them by."""
    in_place: ClassVar = True
    learns: ClassVar = False  # Caffe forces lr_mult 0 on the statistics

    use_global_stats: bool | None
    moving_average_fraction: float
    eps: float

    @classmethod
    def parse(cls, layer):
        p = layer.batch_norm_param
        return cls(p.use_global_stats if p.HasField("use_global_stats") else None, p.moving_average_fraction, p.eps)

    def blob_shapes(self, bottoms):
        c = bottoms[0][1]
        return [(c,), (c,), (1,)]

    def fillers(self):
        return [caffe_pb2.FillerParameter(type="constant", value=0.0)] * 3


@register("Scale")
@dataclass(frozen=True)
class ScaleSpec(LayerSpec):
    in_place: ClassVar = True
    axis: int
    num_axes: int
    bias_term: bool
    filler: caffe_pb2.FillerParameter
    bias_filler: caffe_pb2.FillerParameter
    learned_scale: bool = True  # False when the scale is a second bottom
    n_bottoms: ClassVar = (1, 2)

    @classmethod
    def parse(cls, layer):
        p = layer.scale_param
        return cls(p.axis, p.num_axes, p.bias_term, _filler(p.filler, "constant", 1.0), _filler(p.bias_filler),
                   learned_scale=len(layer.bottom) == 1)

    def scale_shape(self, bottom: Shape) -> Shape:
        axis = _axis(self.axis, len(bottom)) if bottom else 0
        end = len(bottom) if self.num_axes == -1 else axis + self.num_axes
        if end > len(bottom):
            raise ValueError(f"num_axes {self.num_axes} from axis {axis} exceeds the {len(bottom)}-D input")
        return tuple(bottom[axis:end])

    def top_shapes(self, bottoms, n_tops):
        return [bottoms[0]]

    def blob_shapes(self, bottoms):
        if not self.learned_scale:  # only a bias is learned, shaped like the scale bottom
            return [tuple(bottoms[1])] if self.bias_term else []
        shape = self.scale_shape(bottoms[0])
        return [shape, shape] if self.bias_term else [shape]

    def fillers(self):
        learned = [self.filler] if self.learned_scale else []
        return learned + [self.bias_filler] if self.bias_term else learned


@register("Silence")
@dataclass(frozen=True)
class SilenceSpec(LayerSpec):
    n_bottoms: ClassVar = (1, -1)
    needs_top: ClassVar = False

    def top_shapes(self, bottoms, n_tops):
        return []


# --- the SSD fork's layers (weiliu89/caffe) ------------------------------------------------------------------

@register("Permute")
@dataclass(frozen=True)
class PermuteSpec(LayerSpec):
    """SSD's PermuteLayer: axes reordered; ``order`` may name only the leading axes, the rest follow in order."""

    order: tuple[int, ...]

    @classmethod
    def parse(cls, layer):
        order = tuple(int(o) for o in layer.permute_param.order)
        if len(set(order)) != len(order):
            raise ValueError(f"permute_param order {list(order)} repeats an axis")
        return cls(order)

    def full_order(self, ndim: int) -> tuple[int, ...]:
        if any(o >= ndim for o in self.order):
            raise ValueError(f"permute_param order {list(self.order)} names an axis beyond the {ndim}-D input")
        return self.order + tuple(a for a in range(ndim) if a not in self.order)

    def top_shapes(self, bottoms, n_tops):
        return [tuple(bottoms[0][a] for a in self.full_order(len(bottoms[0])))]


@register("Normalize")
@dataclass(frozen=True)
class NormalizeSpec(LayerSpec):
    """SSD's NormalizeLayer: x / sqrt(sum of x^2 + eps), the sum over C x H x W (across_spatial) or over C at each
    position, then times a learned scale (one value, or one per channel)."""

    across_spatial: bool
    channel_shared: bool
    eps: float
    scale_filler: caffe_pb2.FillerParameter

    @classmethod
    def parse(cls, layer):
        p = layer.norm_param
        return cls(p.across_spatial, p.channel_shared, p.eps, _filler(p.scale_filler, "constant", 1.0))

    def top_shapes(self, bottoms, n_tops):
        return [_four_d(bottoms[0], "Normalize")]

    def blob_shapes(self, bottoms):
        return [(1,)] if self.channel_shared else [(bottoms[0][1],)]

    def fillers(self):
        return [self.scale_filler]


@register("PriorBox")
@dataclass(frozen=True)
class PriorBoxSpec(LayerSpec):
    """SSD's PriorBoxLayer: for every feature-map cell, boxes of each min_size (square), sqrt(min * max), and each
    aspect ratio (1 and duplicates dropped, 1/r added with flip), normalised by the image size; top 1 x 2 x
    (H * W * priors * 4): the boxes, then their variances."""

    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]
    aspect_ratios: tuple[float, ...]  # as Caffe expands them: 1 first, then each new ratio (and 1/ratio with flip)
    flip: bool
    clip: bool
    variances: tuple[float, ...]
    img_hw: tuple[int, int]  # (0, 0): take bottom 1's
    step_hw: tuple[float, float]  # (0, 0): image size / feature size
    offset: float
    n_bottoms: ClassVar = (2, 2)

    @classmethod
    def parse(cls, layer):
        p = layer.prior_box_param
        if not p.min_size:
            raise ValueError("prior_box_param needs min_size")
        if p.max_size and len(p.max_size) != len(p.min_size):
            raise ValueError(f"{len(p.max_size)} max_size for {len(p.min_size)} min_size; give one per min_size")
        if any(mx <= mn for mn, mx in zip(p.min_size, p.max_size)) or min(p.min_size) <= 0:
            raise ValueError("each max_size must exceed its min_size, and min_size must be positive")
        ratios = [1.0]
        for r in p.aspect_ratio:
            for value in (r, 1.0 / r) if p.flip else (r,):
                if all(abs(value - known) >= 1e-6 for known in ratios):
                    ratios.append(value)
        variances = tuple(p.variance) or (0.1,)
        if len(variances) not in (1, 4):
            raise ValueError(f"prior_box_param has {len(variances)} variances; give 1 or 4")
        img = (p.img_size, p.img_size) if p.HasField("img_size") else (p.img_h, p.img_w)
        step = (p.step, p.step) if p.HasField("step") else (p.step_h, p.step_w)
        return cls(tuple(p.min_size), tuple(p.max_size), tuple(ratios), p.flip, p.clip, variances,
                   img, step, p.offset)

    @property
    def priors_per_cell(self) -> int:
        return len(self.min_sizes) * len(self.aspect_ratios) + len(self.max_sizes)

    def top_shapes(self, bottoms, n_tops):
        _, _, h, w = _four_d(bottoms[0], "PriorBox")
        return [(1, 2, h * w * self.priors_per_cell * 4)]

    def geometry(self, bottoms: Sequence[Shape]) -> tuple[tuple[int, int], tuple[float, float]]:
        """(image height, width) and (step y, step x) as Caffe resolves them from the parameters and bottoms."""
        feature, image = bottoms[0][2:], bottoms[1][2:]
        img = self.img_hw if all(self.img_hw) else tuple(image)
        step = self.step_hw if all(self.step_hw) else (img[0] / feature[0], img[1] / feature[1])
        return img, step

    def priors(self, bottoms: Sequence[Shape]) -> np.ndarray:
        """prior_box_layer.cpp's Forward_cpu: the 1 x 2 x N top as float32."""
        (img_h, img_w), (step_h, step_w) = self.geometry(bottoms)
        h, w = bottoms[0][2:]
        sizes = []  # (width, height) of each prior of a cell, in Caffe's order
        for i, min_size in enumerate(self.min_sizes):
            sizes.append((min_size, min_size))
            if self.max_sizes:
                side = math.sqrt(min_size * self.max_sizes[i])
                sizes.append((side, side))
            sizes += [(min_size * math.sqrt(r), min_size / math.sqrt(r)) for r in self.aspect_ratios[1:]]
        sizes = np.asarray(sizes, np.float32)
        cy, cx = np.meshgrid((np.arange(h, dtype=np.float32) + self.offset) * step_h,
                             (np.arange(w, dtype=np.float32) + self.offset) * step_w, indexing="ij")
        centre = np.stack([cx, cy], -1).reshape(h * w, 1, 2)
        boxes = np.concatenate([(centre - sizes / 2) / [img_w, img_h], (centre + sizes / 2) / [img_w, img_h]], -1)
        boxes = boxes.reshape(-1).astype(np.float32)
        if self.clip:
            boxes = boxes.clip(0.0, 1.0)
        variances = np.broadcast_to(np.asarray(self.variances, np.float32), (boxes.size // 4, 4)).reshape(-1)
        return np.stack([boxes, variances])[None]


@register("DetectionOutput")
@dataclass(frozen=True)
class DetectionOutputSpec(LayerSpec):
    """SSD's DetectionOutputLayer: decode each prior's box, per-class NMS, keep the best keep_top_k per image.
    Caffe's top is 1 x 1 x (number kept) x 7 [image, label, score, xmin, ymin, xmax, ymax]; a compiled net has a
    fixed shape, so its top holds keep_top_k rows per image, the rows after the last detection marked image -1."""

    num_classes: int
    share_location: bool
    background_label_id: int
    nms_threshold: float
    top_k: int  # -1: all
    eta: float
    code_type: str  # CORNER, CENTER_SIZE or CORNER_SIZE
    variance_encoded_in_target: bool
    keep_top_k: int  # -1: all
    confidence_threshold: float
    n_bottoms: ClassVar = (3, 3)
    trainable: ClassVar = False

    @classmethod
    def parse(cls, layer):
        p = layer.detection_output_param
        if not p.num_classes:
            raise ValueError("detection_output_param needs num_classes")
        nms = p.nms_param
        return cls(p.num_classes, p.share_location, p.background_label_id, nms.nms_threshold,
                   nms.top_k if nms.HasField("top_k") else -1, nms.eta,
                   caffe_pb2.PriorBoxParameter.CodeType.Name(p.code_type), p.variance_encoded_in_target,
                   p.keep_top_k, p.confidence_threshold if p.HasField("confidence_threshold") else -float("inf"))

    def num_priors(self, bottoms: Sequence[Shape]) -> int:
        loc, conf, prior = (_count(b[1:]) if i < 2 else b[2] for i, b in enumerate(bottoms))
        priors = prior // 4
        classes_per_loc = 1 if self.share_location else self.num_classes
        if loc != priors * 4 * classes_per_loc or conf != priors * self.num_classes:
            raise ValueError(f"{priors} priors need {priors * 4 * classes_per_loc} locations and "
                             f"{priors * self.num_classes} confidences per image")
        return priors

    def rows_per_image(self, bottoms: Sequence[Shape]) -> int:
        """keep_top_k, else (-1) NMS's top_k per class, else every prior of every class (OpenVINO's rule)."""
        priors = self.num_priors(bottoms)
        if self.keep_top_k > 0:
            return self.keep_top_k
        return self.num_classes * (self.top_k if self.top_k > 0 else priors)

    def top_shapes(self, bottoms, n_tops):
        return [(1, 1, bottoms[0][0] * self.rows_per_image(bottoms), 7)]


# --- element-wise layers of BVLC Caffe and forks -------------------------------------------------------------

@register("Power")
@dataclass(frozen=True)
class PowerSpec(LayerSpec):
    """y = (shift + scale * x) ^ power."""

    power: float
    scale: float
    shift: float
    in_place: ClassVar = True

    @classmethod
    def parse(cls, layer):
        p = layer.power_param
        return cls(p.power, p.scale, p.shift)


@dataclass(frozen=True)
class _BaseScaleShiftSpec(LayerSpec):
    """An Exp or Log layer: ln(base) of its ``base`` (-1: e), its ``scale`` and ``shift``."""

    log_base: float
    scale: float
    shift: float
    in_place: ClassVar = True
    param_field: ClassVar[str] = ""

    @classmethod
    def parse(cls, layer):
        param = getattr(layer, cls.param_field)
        return cls(*_log_base(param, cls.param_field), param.scale, param.shift)


@register("Exp")
@dataclass(frozen=True)
class ExpSpec(_BaseScaleShiftSpec):
    """y = base ^ (shift + scale * x), base e when -1; kept as y = exp(log_base * (shift + scale * x))."""

    param_field: ClassVar[str] = "exp_param"


@register("Log")
@dataclass(frozen=True)
class LogSpec(_BaseScaleShiftSpec):
    """y = log_base(shift + scale * x), base e when -1: ln(shift + scale * x) / log_base."""

    param_field: ClassVar[str] = "log_param"


def _log_base(param, name: str) -> tuple[float]:
    """ln(base) of an Exp/Log parameter; Caffe's base -1 means e."""
    if param.base == -1:
        return (1.0,)
    if param.base <= 0:
        raise ValueError(f"{name} base {param.base} must be positive (or -1 for e)")
    return (math.log(param.base),)


@register("AbsVal")
@dataclass(frozen=True)
class AbsValSpec(LayerSpec):
    pass  # Caffe refuses AbsVal in place


@register("BNLL")
@dataclass(frozen=True)
class BNLLSpec(LayerSpec):
    """y = log(1 + exp(x)), computed as Caffe does without overflow: x + log(1 + exp(-x)) for x > 0."""

    in_place: ClassVar = True


@register("ELU")
@dataclass(frozen=True)
class ELUSpec(LayerSpec):
    alpha: float
    in_place: ClassVar = True

    @classmethod
    def parse(cls, layer):
        return cls(layer.elu_param.alpha)


@register("ReLU6")
@dataclass(frozen=True)
class ReLU6Spec(LayerSpec):
    """Forks' ReLU6 (MobileNet v2): y = min(max(x, 0), 6)."""

    in_place: ClassVar = True


@register("Bias")
@dataclass(frozen=True)
class BiasSpec(LayerSpec):
    """y = x + b, b laid out from ``axis`` (a learned blob, or a second bottom), as Caffe's BiasLayer."""

    axis: int
    num_axes: int
    filler: caffe_pb2.FillerParameter
    learned: bool
    n_bottoms: ClassVar = (1, 2)
    in_place: ClassVar = True

    @classmethod
    def parse(cls, layer):
        p = layer.bias_param
        return cls(p.axis, p.num_axes, _filler(p.filler), len(layer.bottom) == 1)

    def bias_shape(self, bottoms: Sequence[Shape]) -> Shape:
        if not self.learned:
            return tuple(bottoms[1])
        return ScaleSpec(self.axis, self.num_axes, False, self.filler, self.filler).scale_shape(bottoms[0])

    def top_shapes(self, bottoms, n_tops):
        shape, axis = self.bias_shape(bottoms), _axis(self.axis, len(bottoms[0])) if bottoms[0] else 0
        if tuple(bottoms[0][axis:axis + len(shape)]) != shape:
            raise ValueError(f"bias of shape {shape} does not fit the input from axis {axis}")
        return [bottoms[0]]

    def blob_shapes(self, bottoms):
        return [self.bias_shape(bottoms)] if self.learned else []

    def fillers(self):
        return [self.filler] if self.learned else []


# --- shape and structure layers --------------------------------------------------------------------------------

@register("Crop")
@dataclass(frozen=True)
class CropSpec(LayerSpec):
    """Caffe's CropLayer: bottom 0 cut to bottom 1's shape from ``axis`` on, starting at the offsets."""

    axis: int
    offsets: tuple[int, ...]
    n_bottoms: ClassVar = (2, 2)

    @classmethod
    def parse(cls, layer):
        return cls(layer.crop_param.axis, tuple(layer.crop_param.offset))

    def starts(self, bottoms: Sequence[Shape]) -> list[int]:
        """The first index kept along every axis of bottom 0."""
        data, reference = bottoms
        axis = _axis(self.axis, len(data))
        cropped = len(data) - axis
        if len(self.offsets) not in (0, 1, cropped):
            raise ValueError(f"{len(self.offsets)} crop offsets for {cropped} cropped axes; give 0, 1 or {cropped}")
        offsets = list(self.offsets) * cropped if len(self.offsets) == 1 else list(self.offsets) or [0] * cropped
        starts = [0] * axis + offsets
        for i in range(axis, len(data)):
            if starts[i] + reference[i] > data[i]:
                raise ValueError(f"crop of {reference[i]} from offset {starts[i]} exceeds the input's {data[i]} "
                                 f"on axis {i}")
        return starts

    def top_shapes(self, bottoms, n_tops):
        if len(bottoms[0]) != len(bottoms[1]):
            raise ValueError(f"Crop bottoms have {len(bottoms[0])} and {len(bottoms[1])} axes; they must match")
        self.starts(bottoms)
        axis = _axis(self.axis, len(bottoms[0]))
        return [tuple(bottoms[0][:axis]) + tuple(bottoms[1][axis:])]


@register("ArgMax")
@dataclass(frozen=True)
class ArgMaxSpec(LayerSpec):
    """Caffe's ArgMaxLayer: the top_k indices (or with ``out_max_val`` and no axis, indices then values) of each
    sample's flattened values, or along ``axis`` (then ``out_max_val`` gives the values only)."""

    out_max_val: bool
    top_k: int
    axis: int | None
    trainable: ClassVar = False

    @classmethod
    def parse(cls, layer):
        p = layer.argmax_param
        if p.top_k < 1:
            raise ValueError("argmax_param top_k must be at least 1")
        return cls(p.out_max_val, p.top_k, p.axis if p.HasField("axis") else None)

    def top_shapes(self, bottoms, n_tops):
        b = bottoms[0]
        if self.axis is not None:
            axis = _axis(self.axis, len(b))
            if self.top_k > b[axis]:
                raise ValueError(f"top_k {self.top_k} exceeds the {b[axis]} values along axis {axis}")
            return [(*b[:axis], self.top_k, *b[axis + 1:])]
        if self.top_k > _count(b[1:]):
            raise ValueError(f"top_k {self.top_k} exceeds the {_count(b[1:])} values of a sample")
        shape = [1] * max(3, len(b))
        shape[0], shape[1], shape[2] = b[0], 2 if self.out_max_val else 1, self.top_k
        return [tuple(shape)]


@register("ShuffleChannel")
@dataclass(frozen=True)
class ShuffleChannelSpec(LayerSpec):
    """ShuffleNet forks' channel shuffle: C = group x (C / group) channels transposed to (C / group) x group."""

    group: int

    @classmethod
    def parse(cls, layer):
        return cls(layer.shuffle_channel_param.group)

    def top_shapes(self, bottoms, n_tops):
        if self.group < 1 or _four_d(bottoms[0], "ShuffleChannel")[1] % self.group:
            raise ValueError(f"{bottoms[0][1]} channels do not split into {self.group} groups")
        return [bottoms[0]]


@register("MVN")
@dataclass(frozen=True)
class MVNSpec(LayerSpec):
    """Caffe's MVNLayer: minus the mean over H x W (or C x H x W across_channels), then divided by the standard
    deviation plus eps (Caffe adds eps to the deviation, not to the variance)."""

    normalize_variance: bool
    across_channels: bool
    eps: float

    @classmethod
    def parse(cls, layer):
        p = layer.mvn_param
        return cls(p.normalize_variance, p.across_channels, p.eps)

    def axes(self, ndim: int) -> tuple[int, ...]:
        return tuple(range(1 if self.across_channels else 2, ndim))

    def top_shapes(self, bottoms, n_tops):
        if len(bottoms[0]) < 2 or not self.axes(len(bottoms[0])):
            raise ValueError(f"MVN needs an N x C x ... input with axes to normalise over, got {bottoms[0]}")
        return [bottoms[0]]


SUPPORTED_TYPES = tuple(sorted(REGISTRY))


def parse_layer(layer: caffe_pb2.LayerParameter) -> LayerSpec:
    """The spec of ``layer``; ValueError names what is wrong, KeyError means an unknown type."""
    cls = REGISTRY.get(layer.type)
    if cls is None:
        raise KeyError(layer.type)
    return cls.parse(layer)
