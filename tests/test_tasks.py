"""The head registry: each task once, and the code that loops over tasks sees a newly registered one."""
from __future__ import annotations

import subprocess
import sys

import pytest

from agegender import tasks
from agegender.dataset.build import Entry, count_table
from agegender.dataset.utkface import Face
from agegender.errors import AgegenderError
from agegender.labels import AGE_CLASSES, GENDER_CLASSES

from conftest import ROOT


@pytest.fixture
def race_head():
    """A third head, registered for one test: UTKFace's race field, 5 unordered classes."""
    task = tasks.register(tasks.Task("race", "RaceNet", ("White", "Black", "Asian", "Indian", "Others"),
                                     label=lambda face: face.race))
    yield task
    tasks.unregister("race")


def test_the_original_two_heads():
    age, gender = tasks.get("age"), tasks.get("gender")
    assert (age.net, age.classes, age.ordinal, age.fine_tune_from) == ("AgeNet", AGE_CLASSES, True, "gender")
    assert (gender.net, gender.classes, gender.ordinal) == ("GenderNet", GENDER_CLASSES, False)
    face = Face("x.jpg", age=34, gender=1, race=2)
    assert (age.label(face), gender.label(face)) == (3, 1)
    assert (age.list_name("train"), age.lmdb_name("test")) == ("age_train.txt", "age_test_lmdb")
    assert [t.name for t in tasks.training_order()] == ["gender", "age"]  # AgeNet fine-tunes from GenderNet


def test_a_duplicate_task_or_net_is_refused(race_head):
    with pytest.raises(ValueError, match="'race' is registered already"):
        tasks.register(race_head)
    with pytest.raises(ValueError, match="'AgeNet' already belongs"):
        tasks.register(tasks.Task("years", "AgeNet", ("young", "old"), label=lambda face: face.age > 40))


def test_unknown_task_is_one_clear_line():
    with pytest.raises(AgegenderError, match="unknown task 'hair'; the tasks are age, gender"):
        tasks.get("hair")


def test_by_outputs_is_the_one_task_with_that_many_classes(race_head):
    assert tasks.by_outputs(9).name == "age" and tasks.by_outputs(5).name == "race" and tasks.by_outputs(3) is None
    twin = tasks.register(tasks.Task("twin", "TwinNet", ("a", "b", "c", "d", "e"), label=lambda face: 0))
    try:
        assert tasks.by_outputs(5) is None  # ambiguous: the user must say which
    finally:
        tasks.unregister(twin.name)


def test_training_order_puts_a_source_first_and_refuses_a_circle():
    a = tasks.register(tasks.Task("a", "ANet", ("x", "y", "z"), label=lambda face: 0, fine_tune_from="b"))
    b = tasks.register(tasks.Task("b", "BNet", ("x", "y", "z"), label=lambda face: 0, fine_tune_from="a"))
    try:
        with pytest.raises(AgegenderError, match="in a circle"):
            tasks.training_order()
    finally:
        tasks.unregister(a.name), tasks.unregister(b.name)


def test_count_table_is_the_originals_and_grows_with_a_head(race_head):
    people = [(5, 0, 2), (25, 1, 2), (25, 1, 0)]
    faces = [Face(f"{i}.jpg", age=a, gender=g, race=r) for i, (a, g, r) in enumerate(people)]
    text = count_table([Entry(f.path, f) for f in faces])
    age = "0-9\t10-19\t20-29\t30-39\t40-49\t50-59\t60-69\t70-79\t80-120"
    assert text.startswith(f"Number of image per age class:\n{age}\n{'-' * 62}\n1\t0\t2\t0\t0\t0\t0\t0\t0\n"
                           f"Number of image per gender class:\nMale\tFemale\n{'-' * 14}\n1\t2\n")
    races = "White\tBlack\tAsian\tIndian\tOthers"  # 38 columns wide, tabs expanded: the rule under it
    assert text.endswith(f"Number of image per race class:\n{races}\n{'-' * 38}\n1\t0\t2\t0\t0")


def test_doors_read_the_registry(tmp_path):
    def tasks_cli(*args):
        return subprocess.run([sys.executable, "-m", "agegender.tasks", *args], cwd=ROOT, capture_output=True,
                              text=True)
    assert tasks_cli().stdout.splitlines() == ["AgeNet age", "GenderNet gender"]
    assert tasks_cli("fine-tune-weights", "AgeNet", str(tmp_path)).stdout == "\n"  # nothing trained yet
    (tmp_path / "GenderNet").mkdir()
    for n in (20, 100):
        (tmp_path / "GenderNet" / f"g_iter_{n}.caffemodel").write_bytes(b"")
    proc = tasks_cli("fine-tune-weights", "AgeNet", str(tmp_path))
    assert proc.stdout.strip() == str(tmp_path / "GenderNet" / "g_iter_100.caffemodel")
    assert tasks_cli("fine-tune-weights", "GenderNet", str(tmp_path)).stdout == "\n"  # trains from its fillers
    proc = tasks_cli("fine-tune-weights", "CatNet")
    assert proc.returncode == 2 and "no task has the net 'CatNet'" in proc.stderr
