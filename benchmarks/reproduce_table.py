"""Reproduce the accuracy table: the whole pipeline from a UTKFace source to both reports.

    .venv/bin/python benchmarks/reproduce_table.py [--quick] [--from STAGE] [SOURCE]

Runs every stage (dataset, LMDBs, mean, GenderNet then AgeNet training, caffemodel reports, compile to FP16 IR,
IR reports, one inference), then prints ours next to the original's table (687 Asian UTKFace test images)
with the wall time of each stage. Reports land in data/reports/ (text on stdout, JSON + PNG files).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender import pipeline  # noqa: E402

ORIGINAL = {"age": (0.665, 457, 687), "gender": (0.852, 585, 687)}


def table(reports: Path) -> str:
    lines = ["| net | original (Caffe, NCS) | ours: caffemodel (PyTorch) | ours: FP16 IR (OpenVINO) | age 1-off |",
             "|---|---|---|---|---|"]
    for task, net in (("age", "AgeNet"), ("gender", "GenderNet")):
        acc, correct, total = ORIGINAL[task]
        cells = []
        for kind in ("caffemodel", "ir"):
            path = reports / f"{task}_{kind}.json"
            data = json.loads(path.read_text()) if path.exists() else None
            cells.append(f"{100 * data['accuracy']:.1f}% ({data['correct']}/{data['total']})" if data else "-")
        one_off = json.loads((reports / "age_caffemodel.json").read_text()).get("one_off") \
            if task == "age" and (reports / "age_caffemodel.json").exists() else None
        lines.append(f"| {net} | {100 * acc:.1f}% ({correct}/{total}) | {cells[0]} | {cells[1]} | "
                     f"{f'{100 * one_off:.1f}%' if one_off is not None else ''} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default=str(ROOT.parent / "shared/datasets/utkface-asian"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--from", dest="start")
    args = parser.parse_args()
    seconds = pipeline.run(args.source, args.quick, args.start)
    print(f"\nmachine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"{__import__('os').cpu_count()} cores; total {sum(seconds.values()) / 60:.1f} min")
    print(table(ROOT / pipeline.REPORTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
