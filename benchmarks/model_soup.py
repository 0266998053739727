"""A uniform "model soup" (Wortsman et al., ICML 2022): the element-wise mean of the weights of several
caffemodels fine-tuned from the same pre-training (a benchmark tool, not a test: docs/training.md reports what
the soups of the seed-42 and seed-7 fine-tunings gave, and why they are not the default).

    .venv/bin/python benchmarks/model_soup.py OUT.caffemodel models/seeds/42/AgeNet models/seeds/7/AgeNet
    .venv/bin/python -m agegender compile --model prototxt/AgeNet_deploy.prototxt --weights OUT.caffemodel ...

Each input is a caffemodel or a folder (its newest *_iter_N.caffemodel). The nets must have the same layers,
in the same order, with blobs of the same shapes; otherwise one line says which layer differs. The output is
written atomically, in the first input's form (layer names, types and blob shapes kept).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender.caffe import caffe_pb2  # noqa: E402
from agegender.caffe.blob import array_to_blob, blob_to_array  # noqa: E402
from agegender.caffe.net import read_caffemodel, write_caffemodel  # noqa: E402
from agegender.errors import AgegenderError  # noqa: E402
from agegender.fileio import newest_snapshot  # noqa: E402


def soup(nets: list[caffe_pb2.NetParameter], names: list[str]) -> caffe_pb2.NetParameter:
    """The first net with each learnable blob replaced by the mean of that blob over all nets."""
    layout = [(layer.name, len(layer.blobs)) for layer in nets[0].layer]
    for net, name in zip(nets[1:], names[1:]):
        if [(layer.name, len(layer.blobs)) for layer in net.layer] != layout:
            raise ValueError(f"{name}: its layers or their blobs differ from {names[0]}'s "
                             f"({[n for n, _ in layout][:4]}...); soup only fine-tunings of one net")
    out = caffe_pb2.NetParameter()
    out.CopyFrom(nets[0])
    for i, layer in enumerate(out.layer):
        for j, blob in enumerate(layer.blobs):
            arrays = [blob_to_array(net.layer[i].blobs[j]) for net in nets]
            if len({a.shape for a in arrays}) != 1:
                raise ValueError(f"layer {layer.name!r} blob {j}: shapes {[a.shape for a in arrays]} differ")
            mean = np.mean(np.stack(arrays), axis=0, dtype=np.float64).astype(np.float32)
            blob.CopyFrom(array_to_blob(mean, legacy=not blob.HasField("shape")))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="the soup's caffemodel")
    parser.add_argument("inputs", nargs="+", help="caffemodels or snapshot folders (at least 2)")
    args = parser.parse_args(argv)
    if len(args.inputs) < 2:
        parser.error("give at least 2 caffemodels to average")
    try:
        paths = [str(newest_snapshot(p)) for p in args.inputs]
        nets = [read_caffemodel(p) for p in paths]
        write_caffemodel(soup(nets, paths), args.output)
    except (OSError, ValueError, AgegenderError) as error:
        print(f"model_soup.py: {error}", file=sys.stderr)
        return 1
    print(f"model_soup.py: mean of {len(paths)} nets -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
