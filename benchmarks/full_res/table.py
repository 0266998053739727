"""The comparison table of the 227-px probe: for each probe folder under data/probe/ (finetune_probe.sh's
val.json, ir_val.json when there, wild.json), validation and FairFace dev figures, one markdown row each.

    python benchmarks/full_res/table.py a_frozen42 fr_a_full_42 ... g_default42 fr_g_full_42 ...
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PROBES = Path(__file__).resolve().parents[2] / "data" / "probe"


def percent(block: dict, key: str) -> str:
    return f"{100 * block[key]['accuracy']:.1f}"


def row(name: str) -> str:
    folder = PROBES / name
    val = json.loads((folder / "val.json").read_text())
    ir = folder / "ir_val.json"
    ir_text = ""
    if ir.exists():
        ir_val = json.loads(ir.read_text())
        ir_text = f"; IR {100 * ir_val['accuracy']:.1f}%"
        if "one_off" in ir_val:
            ir_text += f" / 1-off {100 * ir_val['one_off']:.1f}%"
    wild = json.loads((folder / "wild.json").read_text())["fairface"]["agegender"]
    asian, every = wild["east_southeast_asian"], wild["all"]
    recall = wild.get("gender_recall", {}).get("Female", {}).get("accuracy")
    female = f"{100 * recall:.1f}%" if recall is not None else "?"
    return (f"| {name} | {100 * val['accuracy']:.1f}%{ir_text} | {percent(asian, 'age_exact')} / "
            f"{percent(asian, 'age_one_off')} / {percent(asian, 'gender')} | {percent(every, 'age_exact')} / "
            f"{percent(every, 'age_one_off')} / {percent(every, 'gender')} | {female} |")


def main() -> int:
    print("| probe | validation (caffemodel; deployed IR) | FairFace Asian: age / 1-off / gender | "
          "FairFace all: age / 1-off / gender | female recall |")
    print("|---|---|---|---|---|")
    for name in sys.argv[1:]:
        print(row(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
