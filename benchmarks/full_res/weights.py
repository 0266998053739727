"""Caffemodels through a narrow pipe: ``export`` writes a caffemodel's blobs as float16 .npz (the deployed IR
is FP16 anyway; a fine-tuning from it starts from weights rounded to 11 bits); ``import`` writes them back as
a float32 caffemodel that ``agegender train --weights`` copies by layer name.

    python benchmarks/full_res/weights.py export MODEL.caffemodel OUT.npz
    python benchmarks/full_res/weights.py import IN.npz OUT.caffemodel
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from agegender.caffe import caffe_pb2  # noqa: E402
from agegender.caffe.blob import blob_to_array  # noqa: E402
from agegender.caffe.net import read_caffemodel, write_caffemodel  # noqa: E402


def export(model: Path, out: Path) -> None:
    """The caffemodel itself with its blobs' values taken out (names, types, shapes, legacy dims stay) + each
    blob's values as float16."""
    net = read_caffemodel(model)
    arrays = {}
    for i, layer in enumerate(net.layer):
        for j, blob in enumerate(layer.blobs):
            arrays[f"{i}/{j}"] = blob_to_array(blob).astype(np.float16)
            for values in ("data", "diff", "double_data", "double_diff"):
                blob.ClearField(values)
    np.savez(out, __net__=np.frombuffer(net.SerializeToString(), np.uint8), **arrays)


def import_(npz: Path, out: Path) -> None:
    data = np.load(npz)
    net = caffe_pb2.NetParameter.FromString(data["__net__"].tobytes())
    for i, layer in enumerate(net.layer):
        for j, blob in enumerate(layer.blobs):
            blob.data.extend(data[f"{i}/{j}"].astype(np.float32).ravel())
    write_caffemodel(net, out)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("export", "import") or not Path(sys.argv[2]).is_file():
        sys.exit("usage: weights.py export MODEL.caffemodel OUT.npz | import IN.npz OUT.caffemodel (an existing input)")
    {"export": export, "import": import_}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
