"""PyTorch backend: one module per Caffe layer type, built from a Node, computing Caffe's exact forward.

Backward is autograd's, which equals Caffe's hand-written backward for every layer here (checked against
numerical gradients in tests/test_torch_layers.py). Each module holds its parameter blobs in Caffe's order
and shapes (``blobs``), takes its bottoms in prototxt order and returns its tops as a list.
Input and Data layers have no module: their tops are fed to the net from outside.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agegender.layers import spec as specs
from agegender.layers.net import Node

FED_TYPES = tuple(sorted(t for t, spec in specs.REGISTRY.items() if spec.fed))
FLT_MAX = float(torch.finfo(torch.float32).max)
LOG_FLT_MIN = math.log(float(torch.finfo(torch.float32).tiny))
BUILDERS: dict[str, type["CaffeLayer"]] = {}


def builds(*types: str):
    def wrap(cls):
        specs.register_once(BUILDERS, types, cls, "a PyTorch module")
        return cls
    return wrap


class CaffeLayer(nn.Module):
    """A layer with its parameter blobs (zeros until loaded or filled) and Caffe's forward."""

    def __init__(self, node: Node):
        super().__init__()
        self.spec = node.spec
        self.n_tops = len(node.tops)
        self.blobs = nn.ParameterList(nn.Parameter(torch.zeros(shape)) for shape in node.blob_shapes)

    def forward(self, *bottoms: Tensor) -> list[Tensor]:
        tops = self.compute(*bottoms)
        return [tops] * self.n_tops if isinstance(tops, Tensor) else list(tops)

    def compute(self, *bottoms: Tensor) -> Tensor | Sequence[Tensor]:
        raise NotImplementedError


def _axis(axis: int, x: Tensor) -> int:
    return axis % x.dim()


def _flat_scores(scores: Tensor, labels: Tensor, axis: int) -> tuple[Tensor, Tensor]:
    """Scores as (samples, classes) and labels as (samples,), Caffe's outer x inner layout for ``axis``."""
    classes = scores.shape[axis]
    flat = scores.movedim(axis, -1).reshape(-1, classes)
    labels = labels.reshape(-1)
    if labels.numel() != flat.shape[0]:
        raise ValueError(f"{labels.numel()} labels for {flat.shape[0]} predictions; the label blob must hold "
                         f"one label per sample (outer x inner dimensions of the scores)")
    return flat, labels.long()


@builds("Convolution", "ConvolutionDepthwise")
class Convolution(CaffeLayer):
    def compute(self, x):
        s = self.spec
        bias = self.blobs[1] if s.bias_term else None
        return F.conv2d(x, self.blobs[0], bias, s.stride, s.pad, s.dilation, s.groups(x.shape[1]))


@builds("Deconvolution")
class Deconvolution(CaffeLayer):
    """Caffe's weights C_in x (C_out / group) x kh x kw are torch's transposed-convolution weights."""

    def compute(self, x):
        s = self.spec
        bias = self.blobs[1] if s.bias_term else None
        return F.conv_transpose2d(x, self.blobs[0], bias, s.stride, s.pad, 0, s.group, s.dilation)


def _caffe_window_counts(size: int, out: int, kernel: int, stride: int, pad: int) -> list[int]:
    """Caffe's AVE divisor along one axis: the window clipped to the padded input, padding included."""
    return [min(o * stride - pad + kernel, size + pad) - (o * stride - pad) for o in range(out)]


@builds("Pooling")
class Pooling(CaffeLayer):
    """Caffe's pooling: the output size rounds up, a last window starting in the padding is dropped, MAX
    ignores padding and AVE divides by the window clipped to the padded input (not the extra ceil padding).

    torch's ceil-mode pooling follows the same rules, so it is used whenever it gives Caffe's output size;
    otherwise (rare pad/stride combinations) the input is padded explicitly to Caffe's geometry.
    """

    def compute(self, x):
        shape = tuple(x.shape)
        s = self.spec.resolved(shape)
        expected = self.spec.top_shapes([shape], 1)[0]
        if all(2 * p <= k for p, k in zip(s.pad, s.kernel)):
            if s.method == "MAX":
                y = F.max_pool2d(x, s.kernel, s.stride, s.pad, ceil_mode=s.ceil_mode)
            else:
                y = F.avg_pool2d(x, s.kernel, s.stride, s.pad, ceil_mode=s.ceil_mode, count_include_pad=True)
            if tuple(y.shape) == expected:
                return y
        return self._explicit(x, s, expected)

    def _explicit(self, x: Tensor, s: specs.PoolingSpec, expected: tuple[int, ...]) -> Tensor:
        extra_h, extra_w = self.spec.output_padding(tuple(x.shape))
        (pad_h, pad_w) = s.pad
        padding = (pad_w, pad_w + extra_w, pad_h, pad_h + extra_h)
        if s.method == "MAX":  # an all-padding window gives -FLT_MAX, as Caffe's initial value
            return F.max_pool2d(F.pad(x, padding, value=-FLT_MAX), s.kernel, s.stride)
        sums = F.avg_pool2d(F.pad(x, padding), s.kernel, s.stride, divisor_override=1)
        counts = [torch.tensor(_caffe_window_counts(size, out, k, st, p), dtype=x.dtype, device=x.device)
                  for size, out, k, st, p in zip(x.shape[2:], expected[2:], s.kernel, s.stride, s.pad)]
        return sums / (counts[0][:, None] * counts[1][None, :])


@builds("LRN")
class LRN(CaffeLayer):
    """ACROSS_CHANNELS: x / (k + alpha/n * sum of x^2 over n channels)^beta (torch uses Caffe's alpha/n).
    WITHIN_CHANNEL: x / (1 + alpha * mean of x^2 over an n x n zero-padded window)^beta (Caffe ignores k)."""

    def compute(self, x):
        s = self.spec
        if s.across_channels:
            return F.local_response_norm(x, s.local_size, s.alpha, s.beta, s.k)
        squares = F.avg_pool2d(x * x, s.local_size, 1, (s.local_size - 1) // 2, count_include_pad=True)
        return x * (1 + s.alpha * squares).pow(-s.beta)


@builds("ReLU")
class ReLU(CaffeLayer):
    def compute(self, x):
        slope = self.spec.negative_slope
        return F.leaky_relu(x, slope) if slope else F.relu(x)


@builds("PReLU")
class PReLU(CaffeLayer):
    def compute(self, x):
        return F.prelu(x, self.blobs[0].reshape(-1))


@builds("Sigmoid")
class Sigmoid(CaffeLayer):
    def compute(self, x):
        return torch.sigmoid(x)


@builds("TanH")
class TanH(CaffeLayer):
    def compute(self, x):
        return torch.tanh(x)


@builds("Dropout")
class Dropout(CaffeLayer):
    def compute(self, x):
        return F.dropout(x, self.spec.ratio, training=self.training)


@builds("InnerProduct")
class InnerProduct(CaffeLayer):
    def compute(self, x):
        s = self.spec
        axis = _axis(s.axis, x)
        x = x.reshape(*x.shape[:axis], -1)
        weight = self.blobs[0].t() if s.transpose else self.blobs[0]
        return F.linear(x, weight, self.blobs[1] if s.bias_term else None)


@builds("Softmax")
class Softmax(CaffeLayer):
    def compute(self, x):
        return F.softmax(x, dim=_axis(self.spec.axis, x))


@builds("SoftmaxWithLoss")
class SoftmaxWithLoss(CaffeLayer):
    """Caffe's -log(max(p_label, FLT_MIN)) summed and divided by the normalisation; a second top is the
    softmax, through which nothing back-propagates (as in Caffe)."""

    def compute(self, scores, labels):
        s = self.spec
        axis = _axis(s.axis, scores)
        log_prob = F.log_softmax(scores, dim=axis)
        # Caffe clamps the probability at FLT_MIN in the forward pass only; its gradient stays p - 1.
        log_prob = log_prob + (log_prob.clamp(min=LOG_FLT_MIN) - log_prob).detach()
        flat, labels = _flat_scores(log_prob, labels, axis)
        if s.ignore_label is not None:
            valid = labels != s.ignore_label
            picked = flat.gather(1, torch.where(valid, labels, 0)[:, None])[:, 0] * valid
            valid_count = valid.sum()
        else:
            picked = flat.gather(1, labels[:, None])[:, 0]
            valid_count = None
        loss = (0.0 - picked.sum()) / self._normaliser(scores, axis, labels.numel(), valid_count)
        return [loss, F.softmax(scores.detach(), dim=axis)][: self.n_tops]

    def _normaliser(self, scores: Tensor, axis: int, count: int, valid_count: Tensor | None):
        mode = self.spec.normalization
        if mode == "FULL" or (mode == "VALID" and valid_count is None):
            return max(count, 1)
        if mode == "VALID":
            return valid_count.clamp(min=1)
        if mode == "BATCH_SIZE":
            return max(math.prod(scores.shape[:axis]), 1)
        return 1


@builds("Accuracy")
class Accuracy(CaffeLayer):
    """A sample is right when at most top_k classes score >= its true class (ties count against it);
    the optional second top is the accuracy per class."""

    def compute(self, scores, labels):
        s = self.spec
        flat, labels = _flat_scores(scores.detach(), labels.detach(), _axis(s.axis, scores))
        valid = labels != s.ignore_label if s.ignore_label is not None else torch.ones_like(labels, dtype=torch.bool)
        safe_labels = torch.where(valid, labels, 0)
        true_score = flat.gather(1, safe_labels[:, None])
        correct = ((flat >= true_score).sum(1) <= s.top_k) & valid
        accuracy = correct.sum() / valid.sum().clamp(min=1)
        if self.n_tops == 1:
            return [accuracy.to(scores.dtype)]
        classes = flat.shape[1]
        per_class_count = torch.bincount(safe_labels[valid], minlength=classes)
        per_class_correct = torch.bincount(safe_labels[correct], minlength=classes)
        per_class = per_class_correct / per_class_count.clamp(min=1)
        return [accuracy.to(scores.dtype), per_class.to(scores.dtype)]


@builds("Concat")
class Concat(CaffeLayer):
    def compute(self, *bottoms):
        return torch.cat(bottoms, dim=_axis(self.spec.axis, bottoms[0]))


@builds("Slice")
class Slice(CaffeLayer):
    def compute(self, x):
        sizes = self.spec.sizes(tuple(x.shape), self.n_tops)
        return torch.split(x, sizes, dim=_axis(self.spec.axis, x))


@builds("Split")
class Split(CaffeLayer):
    def compute(self, x):
        return x  # every top is the same tensor; autograd sums their gradients as Caffe's Split does


@builds("Eltwise")
class Eltwise(CaffeLayer):
    def compute(self, *bottoms):
        s = self.spec
        if s.operation == "PROD":
            return math.prod(bottoms[1:], start=bottoms[0])
        if s.operation == "SUM":
            coeffs = s.coeffs or (1.0,) * len(bottoms)
            terms = [b if c == 1.0 else c * b for c, b in zip(coeffs, bottoms)]
            return sum(terms[1:], start=terms[0])
        # MAX, with Caffe's tie-breaking: the second bottom wins ties with the first, later ones never do
        top = torch.where(bottoms[0] > bottoms[1], bottoms[0], bottoms[1])
        for b in bottoms[2:]:
            top = torch.where(b > top, b, top)
        return top


@builds("Flatten")
class Flatten(CaffeLayer):
    def compute(self, x):
        return x.flatten(_axis(self.spec.axis, x), _axis(self.spec.end_axis, x))


@builds("Reshape")
class Reshape(CaffeLayer):
    def compute(self, x):
        return x.reshape(self.spec.top_shapes([tuple(x.shape)], 1)[0])


@builds("BatchNorm")
class BatchNorm(CaffeLayer):
    """Caffe's BatchNorm: blobs are the running sums of mean and variance and their scale factor; they are
    statistics, never learned (Caffe forces their lr_mult to 0), so they take no gradient."""

    def __init__(self, node: Node):
        super().__init__(node)
        for blob in self.blobs:
            blob.requires_grad_(False)

    def compute(self, x):
        s = self.spec
        view = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        mean_sum, var_sum, factor = self.blobs
        use_global = s.use_global_stats if s.use_global_stats is not None else not self.training
        if use_global:
            scale = torch.where(factor == 0, torch.zeros_like(factor), 1 / factor)
            mean, var = mean_sum * scale, var_sum * scale
        else:
            dims = [0, *range(2, x.dim())]
            mean = x.mean(dims)
            var = (x - mean.reshape(view)).square().mean(dims)
            self._update_statistics(mean.detach(), var.detach(), x.numel() // x.shape[1])
        return (x - mean.reshape(view)) / (var.reshape(view) + s.eps).sqrt()

    @torch.no_grad()
    def _update_statistics(self, mean: Tensor, var: Tensor, samples: int) -> None:
        mean_sum, var_sum, factor = self.blobs
        fraction = self.spec.moving_average_fraction
        unbiased = samples / (samples - 1) if samples > 1 else 1.0
        factor.mul_(fraction).add_(1)
        mean_sum.mul_(fraction).add_(mean)
        var_sum.mul_(fraction).add_(var * unbiased)


@builds("Scale")
class Scale(CaffeLayer):
    def compute(self, x, scale=None):
        s = self.spec
        bias = None
        if scale is None:
            scale = self.blobs[0]
            bias = self.blobs[1] if s.bias_term else None
        elif s.bias_term:
            bias = self.blobs[0]
        axis = _axis(s.axis, x) if x.dim() else 0
        view = (1,) * axis + tuple(scale.shape) + (1,) * (x.dim() - axis - scale.dim())
        y = x * scale.reshape(view)
        return y + bias.reshape(view) if bias is not None else y


@builds("Silence")
class Silence(CaffeLayer):
    def compute(self, *bottoms):
        return []



@builds("Permute")
class Permute(CaffeLayer):
    def compute(self, x):
        return x.permute(self.spec.full_order(x.dim()))


@builds("Normalize")
class Normalize(CaffeLayer):
    """SSD's Normalize: x / sqrt(sum of x^2 + eps) over C x H x W or over C, times the learned scale."""

    def compute(self, x):
        s = self.spec
        dims = (1, 2, 3) if s.across_spatial else (1,)
        norm = (x.square().sum(dims, keepdim=True) + s.eps).sqrt()
        return x / norm * self.blobs[0].reshape(1, -1, 1, 1)


@builds("PriorBox")
class PriorBox(CaffeLayer):
    """Constant boxes of the feature map's geometry; like Caffe's, its backward passes nothing."""

    def compute(self, feature, image):
        priors = self.spec.priors([tuple(feature.shape), tuple(image.shape)])
        return torch.from_numpy(priors).to(feature.dtype)


@builds("Power")
class Power(CaffeLayer):
    def compute(self, x):
        s = self.spec
        return (s.shift + s.scale * x) ** s.power


@builds("Exp")
class Exp(CaffeLayer):
    def compute(self, x):
        s = self.spec
        return torch.exp(s.log_base * (s.shift + s.scale * x))


@builds("Log")
class Log(CaffeLayer):
    def compute(self, x):
        s = self.spec
        return torch.log(s.shift + s.scale * x) / s.log_base


@builds("AbsVal")
class AbsVal(CaffeLayer):
    def compute(self, x):
        return x.abs()


@builds("BNLL")
class BNLL(CaffeLayer):
    def compute(self, x):
        return x.clamp(min=0) + torch.log1p(torch.exp(-x.abs()))


@builds("ELU")
class ELU(CaffeLayer):
    def compute(self, x):
        return F.elu(x, self.spec.alpha)


@builds("ReLU6")
class ReLU6(CaffeLayer):
    def compute(self, x):
        return x.clamp(0.0, 6.0)


@builds("Bias")
class Bias(CaffeLayer):
    def compute(self, x, bias=None):
        bias = self.blobs[0] if bias is None else bias
        axis = _axis(self.spec.axis, x) if x.dim() else 0
        return x + bias.reshape((1,) * axis + tuple(bias.shape) + (1,) * (x.dim() - axis - bias.dim()))


@builds("Crop")
class Crop(CaffeLayer):
    def compute(self, x, reference):
        starts = self.spec.starts([tuple(x.shape), tuple(reference.shape)])
        axis = _axis(self.spec.axis, x)
        sizes = (*x.shape[:axis], *reference.shape[axis:])
        index = tuple(slice(start, start + size) for start, size in zip(starts, sizes))
        return x[index]


@builds("ShuffleChannel")
class ShuffleChannel(CaffeLayer):
    def compute(self, x):
        n, c, h, w = x.shape
        g = self.spec.group
        return x.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)


@builds("MVN")
class MVN(CaffeLayer):
    def compute(self, x):
        s = self.spec
        dims = s.axes(x.dim())
        centred = x - x.mean(dims, keepdim=True)
        if not s.normalize_variance:
            return centred
        return centred / (centred.square().mean(dims, keepdim=True).sqrt() + s.eps)

def build_layer(node: Node) -> CaffeLayer:
    """The module for ``node``; KeyError when the torch backend lacks its type."""
    return BUILDERS[node.type](node)
