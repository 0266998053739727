"""LMDB of Caffe Datum records, as written by ``convert_imageset``: uint8 CHW BGR + label, or encoded JPEG/PNG."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from google.protobuf.message import DecodeError

from agegender.caffe import caffe_pb2
from agegender.errors import AgegenderError
from agegender.fileio import atomic_directory

_COMMIT_EVERY = 1000  # convert_imageset commits in batches of 1000 too
_MAP_START = 64 << 20  # the map starts small (fits under ulimit -v) and doubles whenever it is full


def array_to_datum(image: np.ndarray, label: int) -> caffe_pb2.Datum:
    """A raw Datum from a uint8 (C, H, W) array."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3:
        raise ValueError(f"Datum image must be CxHxW, got shape {image.shape}")
    c, h, w = image.shape
    return caffe_pb2.Datum(channels=c, height=h, width=w, data=image.tobytes(), label=int(label))


def datum_to_array(datum: caffe_pb2.Datum) -> np.ndarray:
    """The Datum's image as uint8 (C, H, W) BGR; encoded JPEG/PNG Datums are decoded; float_data as float32."""
    if datum.encoded:
        import cv2

        image = cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError("encoded Datum does not decode as an image")
        return image.transpose(2, 0, 1)
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        values = np.frombuffer(datum.data, dtype=np.uint8)
    else:
        values = np.asarray(datum.float_data, dtype=np.float32)
    if values.size != shape[0] * shape[1] * shape[2]:
        raise ValueError(f"Datum holds {values.size} values but declares {shape}")
    return values.reshape(shape)


def record_image(lmdb: str | os.PathLike, key: bytes, datum: caffe_pb2.Datum) -> np.ndarray:
    """datum_to_array, with a one-line error naming the LMDB and the record when the Datum is damaged."""
    try:
        return datum_to_array(datum)
    except ValueError as exc:
        raise AgegenderError(f"LMDB {lmdb}: record {key.decode(errors='replace')}: {exc}; rebuild it with "
                             f"create_lmdb.sh") from None


def _lmdb():
    """lmdb is imported on use: the edge runtime imports this package (mean files) without lmdb installed."""
    import lmdb
    return lmdb


def open_lmdb(path: str | os.PathLike):
    """A read-only lmdb.Environment of ``path``; one-line errors when it is missing or unreadable."""
    lmdb = _lmdb()
    path = Path(path)
    if not (path / "data.mdb").is_file():
        raise AgegenderError(f"LMDB not found: {path} (no data.mdb); build it with `agegender lmdb`")
    try:
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, max_readers=256)
    except lmdb.Error as exc:
        raise AgegenderError(f"cannot open LMDB {path}: {exc}") from None


def lmdb_size(path: str | os.PathLike) -> int:
    """Number of records."""
    with open_lmdb(path) as env:
        return env.stat()["entries"]


def read_lmdb(path: str | os.PathLike) -> Iterator[tuple[bytes, caffe_pb2.Datum]]:
    """(key, Datum) in key order, as Caffe's Data layer reads them."""
    with open_lmdb(path) as env, env.begin() as txn:
        for key, value in txn.cursor():
            datum = caffe_pb2.Datum()
            try:
                datum.ParseFromString(value)
            except DecodeError:
                raise AgegenderError(f"LMDB {path}: record {key.decode(errors='replace')} is not a Datum") from None
            yield bytes(key), datum


def write_lmdb(path: str | os.PathLike, records: Iterable[tuple[bytes, caffe_pb2.Datum]]) -> int:
    """Write (key, Datum) records to a new LMDB at ``path``, replacing it atomically; returns the count."""
    with atomic_directory(path) as tmp:
        return fill_lmdb(tmp, records)


def fill_lmdb(folder: str | os.PathLike, records: Iterable[tuple[bytes, caffe_pb2.Datum]]) -> int:
    """Write (key, Datum) records into a new LMDB in the empty ``folder``, committing every 1000 records as
    convert_imageset does. Unlike convert_imageset's fixed 1 TiB map (which no process under ``ulimit -v``
    can reserve), the map starts at 64 MiB and doubles whenever a transaction finds it full (lmdb's
    MapFullError), the failed batch being written again."""
    lmdb = _lmdb()
    env = lmdb.open(str(folder), map_size=_MAP_START, subdir=True, lock=False)
    count, batch = 0, []
    try:
        for key, datum in records:
            batch.append((key, datum.SerializeToString()))
            if len(batch) == _COMMIT_EVERY:
                _commit(env, batch, lmdb.MapFullError)
                count, batch = count + len(batch), []
        _commit(env, batch, lmdb.MapFullError)
        return count + len(batch)
    finally:
        env.close()


def _commit(env, batch: list[tuple[bytes, bytes]], map_full: type[Exception]) -> None:
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in batch:
                    txn.put(key, value)
            return
        except map_full:  # the transaction was aborted; grow the map and write the batch again
            env.set_mapsize(2 * env.info()["map_size"])
