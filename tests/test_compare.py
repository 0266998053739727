"""agegender.deploy.compare: two run_inference.py --json outputs agree (classes, boxes, probabilities within a
tolerance) or the differences are named; scripts/check_arm64.sh and check_openvino2023.sh rely on it."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from agegender.deploy.compare import compare, main, read_records
from agegender.errors import AgegenderError
from agegender.labels import AGE_CLASSES, GENDER_CLASSES


def face(box, age: list[float], female: float) -> dict:
    def head(classes, probs):
        best = max(range(len(probs)), key=probs.__getitem__)
        return {"label": classes[best], "probability": probs[best], "probabilities": dict(zip(classes, probs))}
    return {"box": box, "age": head(AGE_CLASSES, age), "gender": head(GENDER_CLASSES, [1 - female, female])}


AGES = [0.05, 0.1, 0.4, 0.3, 0.05, 0.04, 0.03, 0.02, 0.01]
RUN = [{"image": "a.jpg", "device": "CPU", "faces_from": "crop", "faces": [face([0, 0, 200, 200], AGES, 0.7)]},
       {"image": "group.jpg", "device": "CPU", "faces_from": "detected",
        "faces": [face([10, 20, 50, 50], AGES[::-1], 0.2), face([90, 20, 48, 48], AGES, 0.55)]},
       {"image": "notes.txt", "error": "notes.txt is not a usable image"}]


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_identical_runs_agree_and_count_images_and_faces():
    result = compare({r["image"]: r for r in RUN}, {r["image"]: copy.deepcopy(r) for r in RUN}, 1e-5)
    assert (result.images, result.faces, result.max_diff, result.differences) == (3, 3, 0.0, [])


def test_small_probability_changes_pass_within_the_tolerance_and_fail_beyond_it():
    other = copy.deepcopy(RUN)
    other[1]["faces"][1]["gender"]["probabilities"]["Female"] += 3e-6
    result = compare({r["image"]: r for r in RUN}, {r["image"]: r for r in other}, 1e-5)
    assert result.differences == [] and result.max_diff == pytest.approx(3e-6)
    result = compare({r["image"]: r for r in RUN}, {r["image"]: r for r in other}, 1e-6)
    assert result.differences == ["group.jpg face 2: gender probabilities differ by 3e-06 > 1e-06"]


def test_a_flipped_class_a_moved_box_a_lost_face_and_a_missing_image_are_named():
    other = copy.deepcopy(RUN)
    other[0]["faces"][0] = face([0, 0, 200, 200], [0.05, 0.1, 0.3, 0.4, 0.05, 0.04, 0.03, 0.02, 0.01], 0.7)
    other[1]["faces"][0]["box"] = [11, 20, 50, 50]
    result = compare({r["image"]: r for r in RUN}, {r["image"]: r for r in other[:2]}, 1e-5)
    assert result.differences == ["a.jpg face 1: age 20-29 (0.4000) vs 30-39 (0.4000)",
                                  "group.jpg face 1: box [10, 20, 50, 50] vs [11, 20, 50, 50]",
                                  "notes.txt: only in the first run"]
    other[1]["faces"].pop()
    result = compare({r["image"]: r for r in RUN}, {r["image"]: r for r in other}, 1)
    assert "group.jpg: 2 faces vs 1" in result.differences


def test_command_exit_codes_and_one_line_errors(tmp_path, capsys):
    a = write(tmp_path / "x86.jsonl", RUN)
    other = copy.deepcopy(RUN)
    other[0]["faces"][0]["gender"]["probabilities"]["Male"] -= 0.02
    b = write(tmp_path / "pi5.jsonl", other)
    assert main([str(a), str(a), "--name", "same"]) == 0
    assert "same: 3 images, 3 faces, same classes, largest probability difference 0" in capsys.readouterr().out
    assert main([str(a), str(b)]) == 1
    assert "a.jpg face 1: gender probabilities differ by 0.02 > 1e-05" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text("Device: CPU\n")
    assert main([str(a), str(tmp_path / "bad.jsonl")]) == 2
    assert main([str(a), str(tmp_path / "absent.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "bad.jsonl:1 is not a line of run_inference.py --json output" in err[0]
    assert "inference output not found" in err[1]
    with pytest.raises(AgegenderError, match="holds no run_inference.py --json output"):
        read_records(write(tmp_path / "empty.jsonl", []))
