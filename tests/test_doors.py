"""The shell doors pass their arguments through untouched (``--flag=value`` and ``--flag value`` alike) and
choose the interpreter in one place (scripts/python.sh). A stub interpreter records what each door runs;
the real parser then proves that command line is accepted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agegender.cli import build_parser

from conftest import ROOT

STUB = f"""#!{sys.executable}
import json, os, sys
if sys.argv[1:3] not in (["-m", "agegender"], ["-m", "agegender.pipeline"]):  # the doors' helpers run for real
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
with open(os.environ["STUB_LOG"], "a") as log:
    call = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "path": os.environ.get("PYTHONPATH", "")}}
    log.write(json.dumps(call) + "\\n")
"""


@pytest.fixture
def door(tmp_path):
    """door(name, *args, env=...) -> the calls the door made to the interpreter, as dicts (argv, cwd, path)."""
    stub = tmp_path / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "calls.jsonl"

    def run(name: str, *args: str, cwd: Path = tmp_path, **env: str) -> list[dict]:
        log.unlink(missing_ok=True)
        environment = dict(os.environ, AGEGENDER_PYTHON=str(stub), STUB_LOG=str(log), **env)
        proc = subprocess.run([str(ROOT / name), *args], cwd=cwd, env=environment, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return run


def agegender_args(call: dict):
    """The parsed command line of a ``python -m agegender ...`` call (argparse refuses a bad one)."""
    assert call["argv"][:2] == ["-m", "agegender"], call
    return build_parser().parse_args(call["argv"][2:])


@pytest.mark.parametrize("form", [["--ir=graph/AgeNet.xml"], ["--ir", "graph/AgeNet.xml"]])
def test_test_door_takes_ir_in_both_forms(door, form):
    (call,) = door("test_AgeNet.sh", *form, "--json")
    args = agegender_args(call)
    assert (args.command, args.ir) == ("test", "graph/AgeNet.xml")
    assert (args.model, args.weights, args.mean) == (None, None, None)
    assert (args.lmdb, args.labels, args.json) == ("data/lmdb/age_test_lmdb", "age", "-")
    assert call["cwd"] == str(ROOT)


def test_test_door_defaults_to_the_newest_snapshot_and_a_given_flag_wins(door):
    (call,) = door("test_GenderNet.sh", "--lmdb=other_lmdb", "--oversample")
    args = agegender_args(call)
    assert (args.model, args.weights, args.mean) == ("prototxt/GenderNet_deploy.prototxt", "models/GenderNet",
                                                     "data/mean/mean.binaryproto")
    assert (args.lmdb, args.labels, args.oversample) == ("other_lmdb", "gender", True)
    (call,) = door("test_AgeNet.sh", "--model=m.prototxt", "--weights", "w.caffemodel", "--mean", "m.npy")
    args = agegender_args(call)
    assert (args.model, args.weights, args.mean) == ("m.prototxt", "w.caffemodel", "m.npy")


@pytest.mark.parametrize("form", [["--snapshot=models/AgeNet/a_iter_5.solverstate"],
                                  ["--snapshot", "models/AgeNet/a_iter_5.solverstate"],
                                  ["--weights=w.caffemodel"], ["--weights", "w.caffemodel"]])
def test_train_age_door_adds_no_weights_when_resuming_or_given(door, form, tmp_path):
    (call,) = door("train_AgeNet.sh", *form, "--max-iter=3")
    argv = call["argv"]
    assert argv.count("--weights") + sum(a.startswith("--weights=") for a in argv) <= 1
    args = agegender_args(call)
    assert args.solver == "prototxt/AgeNet_solver.prototxt" and args.max_iter == 3
    assert args.snapshot == (form[-1].split("=")[-1] if "snapshot" in form[0] else None)
    assert args.weights == (form[-1].split("=")[-1] if "weights" in form[0] else None)


def test_train_gender_door_passes_arguments_untouched(door):
    (call,) = door("train_GenderNet.sh", "--device=cpu", "--workers", "0")
    assert call["argv"][3:] == ["--solver", "prototxt/GenderNet_solver.prototxt", "--device=cpu", "--workers", "0"]
    agegender_args(call)


@pytest.mark.parametrize("form, calibrated", [(["--precision", "INT8"], True), (["--precision=INT8"], True),
                                              (["--precision=INT8", "--calibration=c_lmdb"], False),
                                              (["--precision", "FP32"], False)])
def test_compile_door_calibrates_int8_on_each_task_unless_told(door, tmp_path, form, calibrated):
    for net in ("AgeNet", "GenderNet"):
        (tmp_path / "models" / net).mkdir(parents=True, exist_ok=True)
        (tmp_path / "models" / net / f"{net}_iter_1.caffemodel").write_bytes(b"")
    calls = door("compile2Movidius.sh", *form, MODELS_DIR=str(tmp_path / "models"))
    assert [agegender_args(c).output for c in calls] == ["graph/AgeNet", "graph/GenderNet"]
    for call, task in zip(calls, ("age", "gender")):
        args = agegender_args(call)
        assert call["argv"][-len(form):] == form and args.labels == task
        expected = f"data/lmdb/{task}_train_lmdb" if calibrated else ("c_lmdb" if "--calibration" in form[-1] else None)
        assert args.calibration == expected


@pytest.mark.parametrize("name, command", [("create_lmdb.sh", ["lmdb"]), ("create_mean.sh", ["mean"]),
                                           ("download.sh", ["dataset", "fetch"]),
                                           ("build_dataset.py", ["dataset", "build"])])
def test_stage_doors_pass_arguments_untouched_from_any_folder(door, tmp_path, name, command):
    args = ["--out=a b", "--workers", "2"] if name != "build_dataset.py" else ["--lists=a b", "--seed", "3"]
    (call,) = door(name, *args, cwd=tmp_path)
    assert call["argv"] == ["-m", "agegender", *command, *args]
    assert call["cwd"] == str(tmp_path)  # their paths are relative to where they are run
    assert call["path"].split(os.pathsep)[0] == str(ROOT)  # the checkout is importable without pip install -e


@pytest.mark.parametrize("script, expected", [
    ('given --ir --json --ir=x', "yes"), ('given --ir --irx y', "no"), ('given --ir -- --ir x', "no"),
    ('given --weights --snapshot s', "no"), ('value --precision --precision FP16 --precision=INT8', "INT8"),
    ('value --precision --precision=FP32 --precision INT8', "INT8"), ('value --precision --batch 2', ""),
])
def test_flag_helpers_read_both_forms(script, expected):
    name, *args = script.split()
    body = f'source scripts/python.sh; {name} {" ".join(args)} && echo yes || echo no' if name == "given" else \
        f'source scripts/python.sh; {name} {" ".join(args)}'
    out = subprocess.run(["bash", "-c", body], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected


def test_interpreter_is_chosen_in_one_place():
    doors = [p for p in ROOT.iterdir() if p.suffix == ".sh"] + [ROOT / "scripts" / "test_net.sh"]
    for path in doors:
        text = path.read_text()
        assert ".venv/bin/python\"; [ -x" not in text and "PYTHONPATH=" not in text, path.name
    for path in (ROOT / "build_dataset.py", ROOT / "run_inference.py"):
        assert "sys.path.insert" not in path.read_text(), path.name


def test_commands_refuse_abbreviated_flags():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--solver", "s", "--snap", "x"])
