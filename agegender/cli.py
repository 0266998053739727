"""``python -m agegender <command>``: one entry point, a subcommand per stage.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules import their heavy dependencies (torch, openvino) inside ``run`` so ``--help`` stays fast
and the edge runtime never pulls in torch.
"""
from __future__ import annotations

import argparse
import importlib

from agegender.errors import OneLineParser, run_guarded

COMMANDS = {
    "inspect": ("agegender.inspect", "layer table of a prototxt: shapes, parameters, MACs; checks a caffemodel"),
    "test": ("agegender.evaluate",
             "accuracy, confusion matrix and per-class scores of a caffemodel or IR on a test LMDB"),
    "infer": ("agegender.infer",
              "age and gender of the faces in an image, folder, video or camera, on any OpenVINO device"),
    "detector": ("agegender.deploy.detectors.command",
                 "face detectors: list what is installed, fetch one's Caffe files (download.sh --detector NAME)"),
    "compile": ("agegender.deploy.compile",
                "Caffe deploy prototxt + caffemodel -> verified OpenVINO IR (FP16, FP32, INT8) + sidecar"),
    "dataset": ("agegender.dataset.cli",
                "UTKFace: fetch a race's faces (download.sh), split + oversample into lists (build_dataset.py)"),
    "lmdb": ("agegender.dataset.lmdb_stage",
             "lists -> LMDBs of Caffe Datum, shuffled and resized, like convert_imageset"),
    "mean": ("agegender.dataset.mean_stage", "mean.binaryproto + mean.npy of a training LMDB, like compute_image_mean"),
    "train": ("agegender.train.command",
              "train a prototxt net like `caffe train`: solvers, snapshots, resume, fine-tune, multi-GPU"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="agegender", description=(
        "Age and gender CNNs from Caffe prototxts to OpenVINO edge devices: dataset, train, test, compile, infer."))
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = importlib.import_module(module)
        # no abbreviations: the shell doors look for the flags they default (--ir, --weights, ...) by their full name
        command.add_arguments(sub.add_parser(name, help=help_text, description=command.__doc__, allow_abbrev=False))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = importlib.import_module(COMMANDS[args.command][0])
    return run_guarded(f"agegender {args.command}", command.run, args)
