"""The pipeline's plan: every stage is a door that exists, in the order the data flows."""
from __future__ import annotations

import os

import pytest

from agegender import pipeline
from agegender.errors import AgegenderError

from conftest import ROOT


def test_every_stage_door_exists_and_is_executable():
    for stage in pipeline.stages("../shared/datasets/utkface-asian", quick=False):
        door = stage.command[0]
        if door.startswith("./"):
            assert os.access(ROOT / door, os.X_OK), f"{stage.name}: {door} is missing or not executable"
        else:
            assert (ROOT / stage.command[1]).is_file(), stage.name


def test_order_quick_schedule_and_gender_before_age():
    plan = pipeline.stages("src", quick=True)
    names = [s.name for s in plan]
    assert names.index("dataset") < names.index("lmdb") < names.index("mean") < names.index("train-gender")
    assert names.index("train-gender") < names.index("train-age")  # AgeNet fine-tunes from GenderNet
    assert names.index("compile") < names.index("test-age-ir") and names[-1] == "infer"
    train = next(s for s in plan if s.name == "train-age")
    assert train.command[-2:] == ["--max-iter", str(pipeline.QUICK_ITERATIONS)]
    assert "--max-iter" not in next(s for s in pipeline.stages("src", quick=False) if s.name == "train-age").command


def test_unknown_start_stage_is_one_clear_line():
    with pytest.raises(AgegenderError, match="unknown stage 'trian'.*train-gender"):
        pipeline.run("src", quick=True, start="trian")
