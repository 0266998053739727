"""Mean images: Caffe's mean.binaryproto (1xCxHxW BlobProto) and numpy ``.npy``, both ways."""
from __future__ import annotations

import io
import math
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
        mean = _load_npy(path)
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
    return _finite(mean.astype(np.float32), path)


def _finite(mean: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """A NaN or infinite mean would pass every shape check and make every prediction silently wrong."""
    bad = int(np.count_nonzero(~np.isfinite(mean)))
    if bad:
        raise AgegenderError(f"mean file {path} holds {bad} NaN or infinite value(s) of {mean.size}; rebuild it "
                             f"with create_mean.sh")
    return mean


def _load_npy(path: Path) -> np.ndarray:
    """np.load, after checking the header: numbers only (no strings or objects), and no more values than the
    file holds (a header claiming 112 GiB must not make numpy try to allocate them)."""
    try:
        with open(path, "rb") as stream:
            version = np.lib.format.read_magic(stream)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
            shape, _, dtype = read_header(stream)
            data_bytes = path.stat().st_size - stream.tell()
        if dtype.kind not in "fiub":
            raise ValueError(f"it holds {dtype} values, not numbers")
        if math.prod(shape) * dtype.itemsize > data_bytes:
            raise ValueError(f"its header declares shape {shape} ({math.prod(shape) * dtype.itemsize:,} bytes) "
                             f"but the file holds {data_bytes:,} bytes of data")
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise AgegenderError(f"mean file {path} is not a readable .npy array: {exc}") from None


def write_mean(mean: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a (C, H, W) mean as ``.npy`` or, for any other suffix, as Caffe's 1xCxHxW binaryproto."""
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim != 3:
        raise ValueError(f"mean image must be CxHxW, got shape {mean.shape}")
    _finite(mean, path)
    if Path(path).suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, mean)
        return write_bytes_atomic(path, buffer.getvalue())
    return write_bytes_atomic(path, array_to_blob(mean[None], legacy=True).SerializeToString())
