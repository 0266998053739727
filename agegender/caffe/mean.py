"""Mean images: Caffe's mean.binaryproto (1xCxHxW BlobProto) and numpy ``.npy``, both ways."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from agegender.caffe import caffe_pb2
from agegender.caffe.blob import array_to_blob, blob_to_array
from agegender.errors import AgegenderError
from agegender.fileio import require_file, write_bytes_atomic


def read_mean(path: str | os.PathLike) -> np.ndarray:
    """The mean image as float32 (C, H, W), from a ``.binaryproto`` or a ``.npy`` file."""
    path = require_file(path, "mean file")
    if path.suffix == ".npy":
        try:
            mean = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise AgegenderError(f"mean file {path} is not a readable .npy array: {exc}") from None
    else:
        blob = caffe_pb2.BlobProto()
        try:
            blob.ParseFromString(path.read_bytes())
            mean = blob_to_array(blob)
        except (DecodeError, ValueError) as exc:
            raise AgegenderError(f"mean file {path} is not a valid mean.binaryproto: {exc or 'truncated'}") from None
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.ndim == 1:  # per-channel means, e.g. an .npy of 3 values
        mean = mean[:, None, None]
    if mean.ndim != 3 or mean.size == 0:
        raise AgegenderError(f"mean file {path} has shape {mean.shape}; expected CxHxW or 1xCxHxW")
    return mean.astype(np.float32)


def write_mean(mean: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a (C, H, W) mean as ``.npy`` or, for any other suffix, as Caffe's 1xCxHxW binaryproto."""
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim != 3:
        raise ValueError(f"mean image must be CxHxW, got shape {mean.shape}")
    if Path(path).suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, mean)
        return write_bytes_atomic(path, buffer.getvalue())
    return write_bytes_atomic(path, array_to_blob(mean[None], legacy=True).SerializeToString())
