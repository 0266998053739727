"""The pipeline's plan: every stage is a door that exists, in the order the data flows."""
from __future__ import annotations

import os
import sys

import pytest

from agegender import pipeline
from agegender.errors import AgegenderError

from conftest import ROOT


def command(stage: pipeline.Stage) -> list[str] | None:
    return stage.command() if callable(stage.command) else stage.command


def fake_root(root, monkeypatch) -> None:
    """The pipeline looking at ``root``, which holds the nets' shell doors as the checkout does."""
    monkeypatch.setattr(pipeline, "ROOT", root)
    for door in ROOT.glob("*_*Net.sh"):
        (root / door.name).touch()


def test_every_stage_door_exists_and_is_executable(tmp_path, monkeypatch):
    fake_root(tmp_path, monkeypatch)  # with pre-training LMDBs and snapshots: every stage runs
    (tmp_path / "prototxt").mkdir()
    (tmp_path / "prototxt/AgeGenderNet_pretrain_solver.prototxt").touch()
    for task in ("age", "gender"):
        (tmp_path / f"data/lmdb/{task}_pretrain_lmdb").mkdir(parents=True)
    (tmp_path / "models/AgeGenderNet_pretrain").mkdir(parents=True)
    for stage in pipeline.stages("../shared/datasets/utkface-asian", quick=False):
        parts = command(stage)
        assert parts, stage.name
        door = parts[0]
        if door == sys.executable and parts[1] == "-m":
            assert parts[2:4] == ["agegender", "train"], stage.name
        elif door.startswith("./"):
            assert os.access(ROOT / door, os.X_OK), f"{stage.name}: {door} is missing or not executable"
        else:
            assert (ROOT / parts[1]).is_file(), stage.name
        solver = parts[parts.index("--solver") + 1] if "--solver" in parts else None
        assert solver is None or (ROOT / solver).is_file(), f"{stage.name}: {solver} is missing"


def test_pretraining_runs_only_with_extra_sources_and_fine_tuning_starts_from_it(tmp_path, monkeypatch):
    fake_root(tmp_path, monkeypatch)
    (tmp_path / "prototxt").mkdir()
    (tmp_path / "prototxt/AgeGenderNet_pretrain_solver.prototxt").touch()
    plan = {s.name: s for s in pipeline.stages("src", quick=False, extra=["other"])}
    assert command(plan["dataset"])[-2:] == ["--extra-images", "other"]
    assert command(plan["pretrain"]) is None  # no pre-training LMDB: skipped
    assert command(plan["train-gender"]) == ["./train_GenderNet.sh"]  # the recipe on the Asian lists alone
    (tmp_path / "data/lmdb/age_pretrain_lmdb").mkdir(parents=True)
    assert command(plan["pretrain"]) is None  # the shared trunk needs both labels of each face
    (tmp_path / "data/lmdb/gender_pretrain_lmdb").mkdir(parents=True)
    shared = command(plan["pretrain"])
    assert shared[shared.index("--solver") + 1] == "prototxt/AgeGenderNet_pretrain_solver.prototxt"
    assert "--weights" not in shared  # from the fillers, not from an earlier GenderNet
    (tmp_path / "models/AgeGenderNet_pretrain").mkdir(parents=True)
    for task, net in (("age", "AgeNet"), ("gender", "GenderNet")):
        tune = command(plan[f"train-{task}"])
        assert tune[tune.index("--solver") + 1] == f"prototxt/{net}_finetune_solver.prototxt"
        assert tune[tune.index("--weights") + 1] == str(tmp_path / "models/AgeGenderNet_pretrain")


def test_without_the_shared_solver_each_task_pretrains_alone(tmp_path, monkeypatch):
    fake_root(tmp_path, monkeypatch)  # no shared solver in this checkout: each task pre-trains alone
    plan = {s.name: s for s in pipeline.stages("src", quick=False)}
    assert command(plan["pretrain"]) is None and command(plan["pretrain-age"]) is None
    (tmp_path / "data/lmdb/age_pretrain_lmdb").mkdir(parents=True)
    age = command(plan["pretrain-age"])
    assert age[age.index("--solver") + 1] == "prototxt/AgeNet_pretrain_solver.prototxt"
    assert age[age.index("--weights") + 1] == str(tmp_path / "models/GenderNet_pretrain")
    (tmp_path / "models/AgeNet_pretrain").mkdir(parents=True)
    tune = command(plan["train-age"])
    assert tune[tune.index("--weights") + 1] == str(tmp_path / "models/AgeNet_pretrain")


def test_order_quick_schedule_and_gender_before_age():
    plan = pipeline.stages("src", quick=True)
    names = [s.name for s in plan]
    assert names.index("dataset") < names.index("lmdb") < names.index("mean") < names.index("train-gender")
    assert names.index("train-gender") < names.index("train-age")  # AgeNet fine-tunes from GenderNet
    assert names.index("compile") < names.index("test-age-ir") and names[-1] == "infer"
    assert names.index("mean") < names.index("pretrain") < names.index("train-gender")
    assert "pretrain-age" not in names  # age and gender pre-train in the shared trunk
    train = next(s for s in plan if s.name == "train-age")
    assert command(train)[-2:] == ["--max-iter", str(pipeline.QUICK_ITERATIONS)]
    assert "--max-iter" not in command(next(s for s in pipeline.stages("src", quick=False) if s.name == "train-age"))


def test_unknown_start_stage_is_one_clear_line():
    with pytest.raises(AgegenderError, match="unknown stage 'trian'.*train-gender"):
        pipeline.run("src", quick=True, start="trian")
