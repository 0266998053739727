"""Train a prototxt net with `caffe train`'s meaning for every flag and solver field, executed by PyTorch.

Logs Caffe's own lines (glog format, stderr) plus a progress line with images/s and the time left.
Ctrl-C or SIGTERM: snapshot and stop, exit code 130 or 143; SIGHUP: snapshot and go on. Several GPUs or hosts:
launch with
`torchrun --nproc_per_node N -m agegender train ...` (DistributedDataParallel; each rank reads its shard).
"""
from __future__ import annotations

import argparse

from agegender.devices import add_device_argument
from agegender.errors import AgegenderError

TORCH_DEVICES = {"AUTO": "auto", "CPU": "cpu", "GPU": "cuda"}  # --device -> where PyTorch trains


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--solver", required=True, help="solver prototxt (net, lr policy, snapshots, ...)")
    parser.add_argument("--weights", help="caffemodel(s) to fine-tune from, comma-separated (a folder: its newest "
                                          "snapshot): layers are copied by name, the others start from their fillers")
    parser.add_argument("--snapshot", help=".solverstate to resume training from")
    add_device_argument(parser, "AUTO", "where PyTorch trains: CPU, GPU (CUDA; cuda is the same) or AUTO, the "
                        "default: the GPU when there is one")
    parser.add_argument("--max-iter", type=int, help="stop at this iteration instead of the solver's max_iter")
    parser.add_argument("--workers", type=int,
                        help="data worker processes (default: 1 on CPU, up to 8 per GPU; 0 reads in this process)")


def run(args: argparse.Namespace) -> int:
    from agegender.train.session import Options, build_trainer

    device = TORCH_DEVICES.get(args.device)
    if device is None:
        raise AgegenderError(f"--device {args.device}: PyTorch trains on {', '.join(TORCH_DEVICES)} only "
                             f"(one GPU per process: launch several GPUs with torchrun, see docs/training.md)")
    trainer = build_trainer(Options(args.solver, args.weights, args.snapshot, device, args.max_iter, args.workers))
    trainer.solve()
    if trainer.stopped:  # by a signal: snapshot written, but the training is not finished
        return trainer.signals.exit_code()
    return 0
