"""Layer specs: one frozen dataclass per Caffe layer type, parsed from a LayerParameter.

Each spec knows its top shapes for given bottom shapes (Caffe's Reshape), the shapes of its parameter
blobs in Caffe's order (what a caffemodel must hold), and its multiply-accumulates. Backends read the
spec's fields and never the protobuf.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Sequence

from agegender.caffe import caffe_pb2

Shape = tuple[int, ...]
REGISTRY: dict[str, type["LayerSpec"]] = {}


def _count(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape)  # Python ints: no int64 overflow on absurd shapes


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a {ndim}-D blob")
    return axis % ndim


def _filler(param: caffe_pb2.FillerParameter, default_type: str = "constant", value: float = 0.0) -> caffe_pb2.FillerParameter:
    """The filler as written, or Caffe's default for that blob."""
    if param.ByteSize():
        return param
    return caffe_pb2.FillerParameter(type=default_type, value=value)


def register(*types: str):
    def wrap(cls):
        for name in types:
            REGISTRY[name] = cls
        cls.types = types
        return cls
    return wrap


@dataclass(frozen=True)
class LayerSpec:
    """Base: a layer with no parameters whose single top has its first bottom's shape."""

    types: ClassVar[tuple[str, ...]] = ()
    n_bottoms: ClassVar[tuple[int, int]] = (1, 1)  # (min, max); max -1 for any

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

    source: str
    batch_size: int
    crop_size: int
    mirror: bool
    scale: float
    mean_file: str
    mean_value: tuple[float, ...]
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
        return cls(d.source, d.batch_size, t.crop_size, t.mirror, t.scale, t.mean_file, tuple(t.mean_value))

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

    def top_shapes(self, bottoms, n_tops):
        n, c, h, w = _four_d(bottoms[0], "Convolution")
        if c % self.group:
            raise ValueError(f"{c} input channels are not divisible by group {self.group}")
        out = [(size + 2 * p - (d * (k - 1) + 1)) // s + 1 for size, k, s, p, d in
               zip((h, w), self.kernel, self.stride, self.pad, self.dilation)]
        if min(out) <= 0:
            raise ValueError(f"kernel {self.kernel} does not fit the {h}x{w} input")
        return [(n, self.num_output, *out)] * n_tops

    def blob_shapes(self, bottoms):
        c = bottoms[0][1]
        shapes = [(self.num_output, c // self.group, *self.kernel)]
        return shapes + [(self.num_output,)] if self.bias_term else shapes

    def fillers(self):
        return [self.weight_filler, self.bias_filler][: 2 if self.bias_term else 1]

    def macs(self, bottoms, tops):
        return _count(tops[0]) * (bottoms[0][1] // self.group) * self.kernel[0] * self.kernel[1]


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
        stride = _spatial([p.stride] if p.HasField("stride") else [], _opt(p, "stride_h"), _opt(p, "stride_w"), 1, "stride")
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
    negative_slope: float

    @classmethod
    def parse(cls, layer):
        return cls(layer.relu_param.negative_slope)


@register("PReLU")
@dataclass(frozen=True)
class PReLUSpec(LayerSpec):
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
    pass


@register("TanH")
@dataclass(frozen=True)
class TanHSpec(LayerSpec):
    pass


@register("Dropout")
@dataclass(frozen=True)
class DropoutSpec(LayerSpec):
    """Inverted dropout: Caffe scales kept values by 1/(1-ratio) at train time, identity at test time."""

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
            if len(shape) != len(bottoms[0]) or any(a != b for i, (a, b) in enumerate(zip(shape, bottoms[0])) if i != axis):
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

    def top_shapes(self, bottoms, n_tops):
        return []


LOSS_TYPES = {"SoftmaxWithLoss"}
SUPPORTED_TYPES = tuple(sorted(REGISTRY))


def parse_layer(layer: caffe_pb2.LayerParameter) -> LayerSpec:
    """The spec of ``layer``; ValueError names what is wrong, KeyError means an unknown type."""
    cls = REGISTRY.get(layer.type)
    if cls is None:
        raise KeyError(layer.type)
    return cls.parse(layer)
