"""``python -m agegender <command>``: one entry point, a subcommand per stage.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules import their heavy dependencies (torch, openvino) inside ``run`` so ``--help`` stays fast
and the edge runtime never pulls in torch.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import Callable

from agegender.errors import AgegenderError

COMMANDS = {
    "inspect": ("agegender.inspect", "layer table of a prototxt: shapes, parameters, MACs; checks a caffemodel"),
    "test": ("agegender.evaluate", "accuracy, confusion matrix and per-class scores of a caffemodel or IR on a test LMDB"),
    "infer": ("agegender.infer", "age and gender of the faces in an image, folder, video or camera, on any OpenVINO device"),
    "detector": ("agegender.deploy.detectors.command", "face detectors: list what is installed, fetch one's Caffe files (download.sh --detector NAME)"),
    "compile": ("agegender.deploy.compile", "Caffe deploy prototxt + caffemodel -> verified OpenVINO IR (FP16, FP32, INT8) + sidecar"),
    "dataset": ("agegender.dataset.cli", "UTKFace: fetch a race's faces (download.sh), split + oversample into lists (build_dataset.py)"),
    "lmdb": ("agegender.dataset.lmdb_stage", "lists -> LMDBs of Caffe Datum, shuffled and resized, like convert_imageset"),
    "mean": ("agegender.dataset.mean_stage", "mean.binaryproto + mean.npy of a training LMDB, like compute_image_mean"),
    "train": ("agegender.train.command", "train a prototxt net like `caffe train`: solvers, snapshots, resume, fine-tune, multi-GPU"),
}


def non_negative_int(text: str) -> int:
    """argparse type of seeds and counts: an integer >= 0 (argparse turns the ValueError into its usage line)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agegender", description=(
        "Age and gender CNNs from Caffe prototxts to OpenVINO edge devices: dataset, train, test, compile, infer."))
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = importlib.import_module(module)
        command.add_arguments(sub.add_parser(name, help=help_text, description=command.__doc__))
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is, so that every stage cleans up the same way."""


def _terminate(_signum, _frame) -> None:
    raise Terminated


def run_guarded(prog: str, run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; bad input becomes one line on stderr and its exit code, never a traceback. SIGTERM
    (systemd, Slurm, kill) is handled as Ctrl-C: temporaries removed, exit code 143 (130 for Ctrl-C)."""
    try:
        previous, installed = signal.signal(signal.SIGTERM, _terminate), True
    except ValueError:  # not the main thread (an embedding application): its own handlers stay
        previous, installed = None, False
    try:
        return run(args) or 0
    except AgegenderError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"{prog}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as exc:  # a bug, not bad input: one line unless the user asks for the traceback
        if os.environ.get("AGEGENDER_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {exc} "
              f"(set AGEGENDER_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = importlib.import_module(COMMANDS[args.command][0])
    return run_guarded(f"agegender {args.command}", command.run, args)
