"""Caffe's weight fillers, drawing from torch's global generator (seeded from the solver's random_seed)."""
from __future__ import annotations

import math

import torch

from agegender.caffe import caffe_pb2

FILLER_TYPES = ("constant", "uniform", "gaussian", "positive_unitball", "xavier", "msra", "bilinear")


def _fan(shape: torch.Size, norm: int) -> float:
    """Caffe's fan for xavier/msra: fan_in = count / num, fan_out = count / channels, or their average."""
    count = math.prod(shape)
    fan_in = count / shape[0] if shape else 1
    fan_out = count / shape[1] if len(shape) > 1 else count
    norms = caffe_pb2.FillerParameter
    if norm == norms.FAN_OUT:
        return fan_out
    if norm == norms.AVERAGE:
        return (fan_in + fan_out) / 2
    return fan_in


@torch.no_grad()
def fill(blob: torch.Tensor, filler: caffe_pb2.FillerParameter) -> None:
    """Fill ``blob`` in place as Caffe's filler of that type would; ValueError for an unknown type."""
    kind = filler.type
    if kind == "constant":
        blob.fill_(filler.value)
    elif kind == "uniform":
        blob.uniform_(filler.min, filler.max)
    elif kind == "gaussian":
        blob.normal_(filler.mean, filler.std)
        if filler.sparse >= 0:  # keep each weight with probability sparse / num_outputs
            keep = min(1.0, filler.sparse / blob.shape[0]) if blob.dim() else 1.0
            blob.mul_(torch.bernoulli(torch.full_like(blob, keep)))
    elif kind == "positive_unitball":
        blob.uniform_(0, 1)
        rows = blob.reshape(blob.shape[0] if blob.dim() else 1, -1)
        rows.div_(rows.sum(1, keepdim=True))
    elif kind == "xavier":
        scale = math.sqrt(3 / _fan(blob.shape, filler.variance_norm))
        blob.uniform_(-scale, scale)
    elif kind == "msra":
        blob.normal_(0, math.sqrt(2 / _fan(blob.shape, filler.variance_norm)))
    elif kind == "bilinear":
        _bilinear(blob)
    else:
        raise ValueError(f"unknown filler type '{kind}'; use one of {', '.join(FILLER_TYPES)}")


def _bilinear(blob: torch.Tensor) -> None:
    if blob.dim() != 4 or blob.shape[2] != blob.shape[3]:
        raise ValueError(f"the bilinear filler needs a square 4-D blob, got shape {tuple(blob.shape)}")
    f = math.ceil(blob.shape[3] / 2)
    c = (2 * f - 1 - f % 2) / (2 * f)
    ramp = 1 - (torch.arange(blob.shape[3], dtype=blob.dtype) / f - c).abs()
    blob.copy_((ramp[:, None] * ramp[None, :]).expand_as(blob))
