"""One ``--device`` vocabulary for every command: OpenVINO's device names, in any case.

``AUTO`` (the best present), ``CPU``, ``GPU``, ``NPU``, ``MYRIAD`` (the Neural Compute Stick 2), with an index
as OpenVINO writes one (``GPU.1``). ``train`` runs PyTorch on CPU or GPU (CUDA; ``cuda`` is still understood);
``compile`` builds for the device's family; ``test --ir`` and ``infer`` run the IR there.
"""
from __future__ import annotations

import argparse

DEVICES = ("AUTO", "CPU", "GPU", "NPU", "MYRIAD")
ALIASES = {"CUDA": "GPU"}  # train's name for the GPU before the vocabulary was one


def parse_device(text: str) -> str:
    """The canonical name of a --device value (``gpu.1`` -> ``GPU.1``, ``cuda`` -> ``GPU``); argparse's error
    naming the choices otherwise."""
    name, dot, index = text.strip().upper().partition(".")
    name = ALIASES.get(name, name)
    if name not in DEVICES or (dot and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; choose {'|'.join(DEVICES)} (any case; "
                                         f"an index as GPU.1)")
    return name + dot + index


def add_device_argument(parser: argparse.ArgumentParser, default: str | None, help_text: str,
                        *aliases: str) -> None:
    parser.add_argument("--device", *aliases, dest="device", type=parse_device, default=default,
                        metavar="|".join(DEVICES), help=help_text)
