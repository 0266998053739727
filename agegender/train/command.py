"""Train a prototxt net with `caffe train`'s meaning for every flag and solver field, executed by PyTorch.

Logs Caffe's own lines (glog format, stderr) plus a progress line with images/s and the time left.
Ctrl-C or SIGTERM: snapshot and stop, exit code 130 or 143; SIGHUP: snapshot and go on. Several GPUs or hosts: launch with
`torchrun --nproc_per_node N -m agegender train ...` (DistributedDataParallel; each rank reads its shard).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--solver", required=True, help="solver prototxt (net, lr policy, snapshots, ...)")
    parser.add_argument("--weights", help="caffemodel(s) to fine-tune from, comma-separated (a folder: its newest "
                                          "snapshot): layers are copied by name, the others start from their fillers")
    parser.add_argument("--snapshot", help=".solverstate to resume training from")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to train (default: cuda when available)")
    parser.add_argument("--max-iter", type=int, help="stop at this iteration instead of the solver's max_iter")
    parser.add_argument("--workers", type=int,
                        help="data worker processes (default: 1 on CPU, up to 8 per GPU; 0 reads in this process)")


def run(args: argparse.Namespace) -> int:
    from agegender.train.session import Options, build_trainer

    trainer = build_trainer(Options(args.solver, args.weights, args.snapshot, args.device, args.max_iter, args.workers))
    trainer.solve()
    if trainer.stopped:  # by a signal: snapshot written, but the training is not finished
        return trainer.signals.exit_code()
    return 0
