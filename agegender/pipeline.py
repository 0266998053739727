"""The whole pipeline through its stage doors, timed: ``./run_pipeline.sh [--quick] [SOURCE]``.

Each stage is the shell script a user would run by hand, so the pipeline proves those doors work and any
stage can be re-run alone (``--from STAGE`` resumes from there).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from agegender.errors import AgegenderError, OneLineParser, run_guarded
from agegender.tasks import TASKS, Task, training_order

ROOT = Path(__file__).resolve().parents[1]
REPORTS = Path("data/reports")
QUICK_ITERATIONS = 200
FIRST_TEST_IMAGE = "<first test image>"  # resolved when the infer stage starts (the lists exist by then)


@dataclass
class Stage:
    name: str
    command: list[str] | Callable[[], list[str] | None]  # a callable decides when the stage starts; None: skip


def door(kind: str, task: Task) -> list[str]:
    """``./train_AgeNet.sh`` / ``./test_AgeNet.sh`` where the net has its door, else the shared body behind them."""
    if (ROOT / f"{kind}_{task.net}.sh").is_file():
        return [f"./{kind}_{task.net}.sh"]
    return [f"scripts/{kind}_net.sh", task.net] + ([task.name] if kind == "test" else [])


SHARED_NET = "AgeGenderNet"  # one trunk with a head per task below: pre-trained once for all of them
SHARED_TASKS = ("age", "gender")


def shared(task: Task) -> bool:
    """Whether ``task`` pre-trains in the shared trunk (its solver is in the checkout)."""
    return task.name in SHARED_TASKS and (ROOT / f"prototxt/{SHARED_NET}_pretrain_solver.prototxt").is_file()


def pretrained(task: Task) -> Path:
    """Where ``task``'s fine-tuning starts: the shared trunk's snapshots, else its own pre-trained net's."""
    return ROOT / "models" / (f"{SHARED_NET}_pretrain" if shared(task) else f"{task.net}_pretrain")


def has_pretrain_data(tasks: Sequence[Task]) -> bool:
    return all((ROOT / "data/lmdb" / task.lmdb_name("pretrain")).is_dir() for task in tasks)


def shared_pretrain_stage(schedule: list[str]) -> Stage:
    """Pre-training of the shared trunk on every source's training faces, both labels of each face at once,
    when build_dataset.py had --extra-images (data/lmdb/{age,gender}_pretrain_lmdb, read in lockstep)."""
    def command() -> list[str] | None:
        tasks = [TASKS[name] for name in SHARED_TASKS if name in TASKS]
        if not tasks or not shared(tasks[0]) or not has_pretrain_data(tasks):
            return None
        return [sys.executable, "-m", "agegender", "train", "--solver",
                f"prototxt/{SHARED_NET}_pretrain_solver.prototxt", *schedule]
    return Stage("pretrain", command)


def pretrain_stage(task: Task, schedule: list[str]) -> Stage:
    """Pre-training of a task outside the shared trunk on every source's training faces, when build_dataset.py
    had --extra-images (a task that fine-tunes from another starts from that task's pre-trained net)."""
    def command() -> list[str] | None:
        if not has_pretrain_data([task]):
            return None
        source = TASKS[task.fine_tune_from] if task.fine_tune_from else None
        start = ["--weights", str(pretrained(source))] if source else []
        return [*door("train", task), "--solver", f"prototxt/{task.net}_pretrain_solver.prototxt", *start, *schedule]
    return Stage(f"pretrain-{task.name}", command)


def train_stage(task: Task, schedule: list[str]) -> Stage:
    """Fine-tuning from the pre-trained net when there is one; else the recipe on the main source alone."""
    def command() -> list[str]:
        if has_pretrain_data([task]) and pretrained(task).is_dir():
            return [*door("train", task), "--solver", f"prototxt/{task.net}_finetune_solver.prototxt",
                    "--weights", str(pretrained(task)), *schedule]
        return [*door("train", task), *schedule]
    return Stage(f"train-{task.name}", command)


def stages(source: str, quick: bool, extra: Sequence[str] = ()) -> list[Stage]:
    """Every stage; training, test and IR test stages once per task (agegender.tasks), in training order."""
    python = sys.executable
    schedule = ["--max-iter", str(QUICK_ITERATIONS)] if quick else []
    trains = [shared_pretrain_stage(schedule)] + [
        stage for task in training_order()
        for stage in ([] if shared(task) else [pretrain_stage(task, schedule)]) + [train_stage(task, schedule)]]
    tests = [Stage(f"test-{task.name}", [*door("test", task), "--json", str(REPORTS / f"{task.name}_caffemodel.json"),
                                         "--plot", str(REPORTS / f"{task.name}_caffemodel.png")])
             for task in TASKS.values()]
    ir_tests = [Stage(f"test-{task.name}-ir", [*door("test", task), "--ir", f"graph/{task.net}.xml",
                                               "--json", str(REPORTS / f"{task.name}_ir.json")])
                for task in TASKS.values()]
    return [
        Stage("download", ["./download.sh", source]),
        Stage("dataset", [python, "build_dataset.py", *(["--extra-images", *extra] if extra else [])]),
        Stage("lmdb", ["./create_lmdb.sh"]),
        Stage("mean", ["./create_mean.sh"]),
        *trains,
        *tests,
        Stage("compile", ["./compile2Movidius.sh"]),
        *ir_tests,
        Stage("infer", [python, "run_inference.py", "--mean_file", "graph/age_gender_mean.npy",
                        "--image_path", FIRST_TEST_IMAGE]),
    ]


def first_test_image() -> str:
    """The first image of the test list: one the nets never trained on."""
    lists = ROOT / "data/DEF" / next(iter(TASKS.values())).list_name("test")
    if not lists.is_file():
        raise AgegenderError(f"{lists} not found; run the dataset stage first (--from dataset)")
    with open(lists) as lines:
        return lines.readline().rsplit(" ", 1)[0]


def run(source: str, quick: bool, start: str | None = None, extra: Sequence[str] = ()) -> dict[str, float]:
    """Run the stages from ``start`` on; returns seconds per stage; stops at the first failing stage."""
    plan = stages(source, quick, extra)
    names = [s.name for s in plan]
    if start is not None and start not in names:
        raise AgegenderError(f"unknown stage {start!r}; stages: {', '.join(names)}")
    plan = plan[names.index(start):] if start else plan
    (ROOT / REPORTS).mkdir(parents=True, exist_ok=True)
    seconds = {}
    for stage in plan:
        command = stage.command() if callable(stage.command) else stage.command
        if command is None:
            print(f"\n=== {stage.name}: skipped (no data/lmdb/*_pretrain_lmdb: build_dataset.py had no "
                  f"--extra-images)")
            continue
        command = [first_test_image() if part == FIRST_TEST_IMAGE else part for part in command]
        print(f"\n=== {stage.name}: {' '.join(command)}", flush=True)
        began = time.perf_counter()
        code = subprocess.call(command, cwd=ROOT)
        seconds[stage.name] = time.perf_counter() - began
        if code:  # a stage killed by signal N returns -N; exit as a shell would, 128 + N
            raise AgegenderError(f"stage {stage.name} failed (exit {code}); fix it and resume with "
                                 f"--from {stage.name}", exit_code=code if code > 0 else 128 - code)
    (ROOT / REPORTS / "timings.json").write_text(json.dumps(seconds, indent=2) + "\n")
    print("\n" + "\n".join(f"{name:>14}: {s:8.1f} s" for name, s in seconds.items()))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="run_pipeline.sh", description=__doc__)
    parser.add_argument("source", nargs="?", default="../shared/datasets/utkface-asian",
                        help="UTKFace .tar.gz, folder or URL (default ../shared/datasets/utkface-asian)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a first look: {QUICK_ITERATIONS} training iterations per net")
    parser.add_argument("--extra", nargs="+", default=[], metavar="DIR",
                        help="more UTKFace folders to pre-train on (e.g. ../shared/datasets/utkface-other); the "
                             "nets are then pre-trained on every source and fine-tuned on the Asian faces")
    parser.add_argument("--from", dest="start", help="resume from this stage")
    return run_guarded("run_pipeline.sh", _run, parser.parse_args(argv))


def _run(args: argparse.Namespace) -> None:
    run(args.source, args.quick, args.start, args.extra)


if __name__ == "__main__":
    sys.exit(main())
