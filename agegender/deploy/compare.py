"""Compare two runs of ``run_inference.py --json`` on the same input: the same images, the same face boxes,
the same age and gender classes, and every class probability within a tolerance. scripts/check_arm64.sh
compares an emulated Raspberry Pi with x86 this way, scripts/check_openvino2023.sh two OpenVINO releases.

    python -m agegender.deploy.compare x86.jsonl pi5.jsonl --tolerance 1e-5 [--name "Cortex-A76 vs x86"]

Prints one line (images, faces, largest probability difference); exit 0 when they agree, 1 with the first
differences listed when they do not, 2 when a file is missing or is not such JSON lines.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agegender.errors import AgegenderError, OneLineParser, run_guarded
from agegender.fileio import require_file

TASKS = ("age", "gender")


@dataclass
class Comparison:
    images: int = 0
    faces: int = 0
    max_diff: float = 0.0
    differences: list[str] = field(default_factory=list)


def read_records(path: str | Path) -> dict[str, dict]:
    """image name -> its JSON object, from one ``--json`` run (one object per line)."""
    records = {}
    for number, line in enumerate(require_file(path, "inference output").read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[record["image"]] = record
        except (ValueError, KeyError, TypeError):
            raise AgegenderError(f"{path}:{number} is not a line of run_inference.py --json output") from None
    if not records:
        raise AgegenderError(f"{path} holds no run_inference.py --json output (did the run fail?)")
    return records


def compare(reference: dict[str, dict], other: dict[str, dict], tolerance: float) -> Comparison:
    """Every image of both runs: same error or same faces (boxes, classes, probabilities within tolerance)."""
    result = Comparison()
    for name in sorted(set(reference) | set(other)):
        result.images += 1
        a, b = reference.get(name), other.get(name)
        if a is None or b is None:
            result.differences.append(f"{name}: only in the {'second' if a is None else 'first'} run")
        elif a.get("error") or b.get("error"):
            if a.get("error") != b.get("error"):
                result.differences.append(f"{name}: error {a.get('error')!r} vs {b.get('error')!r}")
        elif len(a["faces"]) != len(b["faces"]):
            result.differences.append(f"{name}: {len(a['faces'])} faces vs {len(b['faces'])}")
        else:
            for number, (fa, fb) in enumerate(zip(a["faces"], b["faces"]), 1):
                result.faces += 1
                _compare_face(f"{name} face {number}", fa, fb, tolerance, result)
    return result


def _compare_face(where: str, a: dict, b: dict, tolerance: float, result: Comparison) -> None:
    if a["box"] != b["box"]:
        result.differences.append(f"{where}: box {a['box']} vs {b['box']}")
        return
    for task in TASKS:
        pa, pb = a[task]["probabilities"], b[task]["probabilities"]
        diff = max(abs(pa[c] - pb.get(c, float("inf"))) for c in pa)
        result.max_diff = max(result.max_diff, diff)
        if a[task]["label"] != b[task]["label"]:
            result.differences.append(f"{where}: {task} {a[task]['label']} ({a[task]['probability']:.4f}) vs "
                                      f"{b[task]['label']} ({b[task]['probability']:.4f})")
        elif diff > tolerance:
            result.differences.append(f"{where}: {task} probabilities differ by {diff:.2g} > {tolerance:g}")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m agegender.deploy.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", help="JSON lines of the reference run (e.g. x86)")
    parser.add_argument("other", help="JSON lines of the run to check")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest probability difference allowed")
    parser.add_argument("--name", default="", help="what is compared, for the printed line")
    return run_guarded(parser.prog, run, parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    result = compare(read_records(args.reference), read_records(args.other), args.tolerance)
    verdict = "same classes" if not result.differences else f"{len(result.differences)} differences"
    print(f"{args.name or args.other}: {result.images} images, {result.faces} faces, {verdict}, largest "
          f"probability difference {result.max_diff:.2g} (tolerance {args.tolerance:g})")
    for line in result.differences[:10]:
        print(f"  {line}", file=sys.stderr)
    return 1 if result.differences else 0


if __name__ == "__main__":
    sys.exit(main())
