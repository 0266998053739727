"""Caffe's file formats without Caffe: prototxt, caffemodel, solverstate, LMDB of Datum, mean.binaryproto.

Imports neither torch nor openvino, so every stage (and a Raspberry Pi) can use it.
"""
from agegender.caffe import caffe_pb2
from agegender.caffe.blob import array_to_blob, blob_shape, blob_to_array
from agegender.caffe.datum import array_to_datum, datum_to_array, lmdb_size, read_lmdb, write_lmdb
from agegender.caffe.mean import read_mean, write_mean
from agegender.caffe.net import (
    read_caffemodel,
    read_net,
    read_solver,
    read_solverstate,
    upgrade_net,
    write_caffemodel,
    write_prototxt,
    write_solverstate,
)

__all__ = [
    "caffe_pb2",
    "array_to_blob", "blob_shape", "blob_to_array",
    "array_to_datum", "datum_to_array", "read_lmdb", "write_lmdb", "lmdb_size",
    "read_mean", "write_mean",
    "read_caffemodel", "read_net", "read_solver", "read_solverstate", "upgrade_net",
    "write_caffemodel", "write_prototxt", "write_solverstate",
]
