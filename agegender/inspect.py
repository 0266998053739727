"""Print one row per layer of a net prototxt (name, type, top shape, parameters, multiply-accumulates) and
totals; with --weights, check that the caffemodel's blobs fit the prototxt layer by layer."""
from __future__ import annotations

import argparse

from agegender.layers.net import Net


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prototxt", help="net prototxt (new `layer {}` or V1 `layers {}` form)")
    parser.add_argument("--weights", help="caffemodel to check against the prototxt")
    parser.add_argument("--phase", choices=("TEST", "TRAIN"), default="TEST",
                        help="which phase's layers (default TEST)")


def format_table(net: Net) -> str:
    rows = [("layer", "type", "top shape", "params", "MACs")]
    for node in net.nodes:
        tops = " ".join("x".join(map(str, s)) or "scalar" for s in node.top_shapes)
        rows.append((node.name, node.type, tops, f"{node.param_count:,}", f"{node.macs:,}"))
    total_params = sum(n.param_count for n in net.nodes)
    total_macs = sum(n.macs for n in net.nodes)
    rows.append(("total", f"{len(net.nodes)} layers", "", f"{total_params:,}", f"{total_macs:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    net = Net.from_file(args.prototxt, args.phase)
    print(f"{net.name or args.prototxt} ({args.phase}): inputs {', '.join(net.inputs) or '-'}; "
          f"outputs {', '.join(net.outputs)}")
    print(format_table(net))
    if args.weights:
        weights = net.weights_from(args.weights)
        print(f"weights OK: {args.weights} fits all {len(weights)} layers with parameters")
    return 0
