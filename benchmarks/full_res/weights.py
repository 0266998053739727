"""Caffemodels through a narrow pipe: ``export`` writes a caffemodel's blobs as float16 .npz (the deployed IR
is FP16 anyway; a fine-tuning from it starts from weights rounded to 11 bits); ``import`` writes them back as
a float32 caffemodel that ``agegender train --weights`` copies by layer name.

    python benchmarks/full_res/weights.py export MODEL.caffemodel OUT.npz
    python benchmarks/full_res/weights.py import IN.npz OUT.caffemodel
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from agegender.caffe import caffe_pb2  # noqa: E402
from agegender.caffe.blob import array_to_blob, blob_to_array  # noqa: E402
from agegender.caffe.net import read_caffemodel, write_caffemodel  # noqa: E402


def export(model: Path, out: Path) -> None:
    net = read_caffemodel(model)
    arrays, layers = {}, []
    for layer in net.layer:
        if layer.blobs:
            layers.append([layer.name, layer.type, len(layer.blobs), [not b.HasField("shape") for b in layer.blobs]])
            for i, blob in enumerate(layer.blobs):
                arrays[f"{layer.name}/{i}"] = blob_to_array(blob).astype(np.float16)
    np.savez(out, __layers__=np.frombuffer(json.dumps([net.name, layers]).encode(), np.uint8), **arrays)


def import_(npz: Path, out: Path) -> None:
    data = np.load(npz)
    name, layers = json.loads(data["__layers__"].tobytes())
    net = caffe_pb2.NetParameter(name=name)
    for layer_name, layer_type, count, legacy in layers:
        layer = net.layer.add(name=layer_name, type=layer_type)
        for i in range(count):
            layer.blobs.append(array_to_blob(data[f"{layer_name}/{i}"].astype(np.float32), legacy=legacy[i]))
    write_caffemodel(net, out)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("export", "import") or not Path(sys.argv[2]).is_file():
        sys.exit("usage: weights.py export MODEL.caffemodel OUT.npz | import IN.npz OUT.caffemodel (an existing input)")
    {"export": export, "import": import_}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
