"""One flag vocabulary across ``python -m agegender``: kebab-case (the original's snake_case names only as
run_inference.py's aliases), one --mean, one --device vocabulary, --json [FILE] the same everywhere."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from test_run_inference import build_graph, model_cache  # noqa: F401

from agegender.cli import COMMANDS, build_parser
from agegender.devices import DEVICES, parse_device

from conftest import ROOT

SNAKE_ALIASES = {"--image_path", "--mean_file", "--graph_dir", "--max_frames", "--cache_dir"}  # the original's


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser, e.g. "infer", "dataset build"."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parsers = {}
    for name, parser in sub.choices.items():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for step, child in (nested[0].choices.items() if nested else [("", parser)]):
            parsers[f"{name} {step}".strip()] = child
    return parsers


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings if flag.startswith("--")}


def test_every_flag_is_kebab_case_but_the_originals_aliases():
    parsers = command_parsers()
    assert {name.split()[0] for name in parsers} == set(COMMANDS)
    for name, parser in parsers.items():
        for flag, action in options(parser).items():
            if "_" in flag:
                assert name.split()[0] in ("infer", "detector"), (name, flag)  # run_inference.py's family
                assert flag.replace("_", "-") in action.option_strings or flag == "--mean_file", (name, flag)
    infer = options(parsers["infer"])
    assert SNAKE_ALIASES <= set(infer)  # the original's names keep working


def test_one_mean_one_device_one_json():
    parsers = command_parsers()
    for name in ("test", "compile", "infer"):
        assert "--mean" in options(parsers[name]), name
    assert options(parsers["infer"])["--mean"] is options(parsers["infer"])["--mean_file"]
    devices = {name: options(p)["--device"] for name, p in parsers.items() if "--device" in options(p)}
    assert set(devices) == {"test", "compile", "infer", "train"}
    assert all(action.type is parse_device and action.metavar == "|".join(DEVICES) for action in devices.values())
    jsons = {name: options(p)["--json"] for name, p in parsers.items() if "--json" in options(p)}
    assert set(jsons) == {"test", "infer"}
    assert all((a.nargs, a.const, a.metavar) == ("?", "-", "FILE") for a in jsons.values())


@pytest.mark.parametrize("text, name", [("auto", "AUTO"), ("cpu", "CPU"), ("GPU.1", "GPU.1"), ("cuda", "GPU"),
                                        ("myriad", "MYRIAD"), ("Npu", "NPU")])
def test_device_names_are_openvinos_in_any_case(text, name):
    assert parse_device(text) == name


@pytest.mark.parametrize("text", ["tpu", "GPU.x", "", "cuda:0"])
def test_unknown_device_is_refused_naming_the_choices(text):
    with pytest.raises(argparse.ArgumentTypeError, match="choose AUTO|CPU|GPU|NPU|MYRIAD"):
        parse_device(text)


def test_old_spellings_still_parse_to_the_same_options():
    parser = build_parser()
    old = parser.parse_args(["compile", "--model", "m", "--weights", "w", "--output", "o", "--target", "myriad"])
    new = parser.parse_args(["compile", "--model", "m", "--weights", "w", "--output", "o", "--device", "MYRIAD"])
    assert old == new
    assert parser.parse_args(["train", "--solver", "s", "--device", "cuda"]).device == "GPU"


def test_train_refuses_a_device_pytorch_cannot_train_on(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agegender", "train", "--solver", str(tmp_path / "s.prototxt"),
                           "--device", "NPU"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "--device NPU: PyTorch trains on AUTO, CPU, GPU only" in proc.stderr


def run_inference(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_inference.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_run_inference_takes_the_originals_names_and_the_new_ones(tmp_path):
    graph = build_graph(tmp_path / "graph")
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.random.default_rng(0).integers(0, 256, (256, 256, 3), np.uint8))
    original = run_inference("--mean_file", graph / "age_gender_mean.npy", "--image_path", face,
                             "--graph_dir", graph, "--faces", "none")
    assert original.returncode == 0, original.stderr
    assert "Age predicted: " in original.stdout and "Gender predicted: " in original.stdout
    out = tmp_path / "reports" / "face.jsonl"
    new = run_inference("--mean", graph / "age_gender_mean.npy", "--image-path", face, "--graph-dir", graph,
                        "--faces", "none", "--json", out)
    assert new.returncode == 0, new.stderr
    assert new.stdout == ""  # the JSON went to the file, whole
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    age = record["faces"][0]["age"]
    assert f"Age predicted: {age['label']}, {100 * age['probability']:.2f}%" in original.stdout
    printed = run_inference("--image-path", face, "--graph-dir", graph, "--faces", "none", "--json")
    assert json.loads(printed.stdout)["faces"][0]["age"] == age
