"""BlobProto <-> numpy, for blobs with a ``shape`` and for legacy num/channels/height/width blobs."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from agegender.caffe import caffe_pb2


def blob_shape(blob: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """The blob's shape as written: ``shape.dim``, or the legacy 4-D num/channels/height/width."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def legacy_4d(shape: Sequence[int]) -> tuple[int, ...]:
    """Caffe's LegacyShape view of ``shape``: padded with leading 1s to 4 axes."""
    return (1,) * (4 - len(shape)) + tuple(shape) if len(shape) <= 4 else tuple(shape)


def blob_fits(blob: caffe_pb2.BlobProto, expected: Sequence[int]) -> bool:
    """Caffe's Blob::ShapeEquals: a legacy blob matches the expected shape padded to 4-D."""
    if blob.HasField("shape"):
        return blob_shape(blob) == tuple(expected)
    return len(expected) <= 4 and blob_shape(blob) == legacy_4d(expected)


def blob_to_array(blob: caffe_pb2.BlobProto, shape: Sequence[int] | None = None) -> np.ndarray:
    """The blob's values (float32, or float64 for double_data) shaped as ``shape`` or as written."""
    values = np.asarray(blob.double_data, dtype=np.float64) if len(blob.double_data) else \
        np.asarray(blob.data, dtype=np.float32)
    target = tuple(shape) if shape is not None else blob_shape(blob)
    expected = math.prod(int(d) for d in target)  # Python ints: an absurd shape must not overflow to a negative
    if values.size != expected:
        raise ValueError(f"blob holds {values.size} values but its shape {target} needs {expected}")
    return values.reshape(target)


def array_to_blob(array: np.ndarray, legacy: bool = False) -> caffe_pb2.BlobProto:
    """A float32 BlobProto of ``array``; ``legacy`` writes num/channels/height/width (e.g. mean files)."""
    array = np.asarray(array, dtype=np.float32)
    blob = caffe_pb2.BlobProto()
    if legacy:
        blob.num, blob.channels, blob.height, blob.width = legacy_4d(array.shape)
    else:
        blob.shape.dim.extend(int(d) for d in array.shape)
    blob.data.extend(array.ravel().tolist())
    return blob
