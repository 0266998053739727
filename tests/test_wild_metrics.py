"""The in-the-wild scoring (agegender/wild.py) and benchmarks/bench_wild.py: FairFace's bins on our scale, the
1-off rules, one face per image (the largest), no face counted wrong, the label readers, and the benchmark end
to end on a few real FairFace images with stand-in nets."""
from __future__ import annotations

import importlib.util
import json
import shutil

import cv2
import numpy as np
import pytest
from test_run_inference import build_graph, model_cache  # noqa: F401

from agegender import wild
from agegender.errors import AgegenderError
from agegender.labels import AGE_CLASSES

from conftest import ROOT, SHARED, need_shared

FAIRFACE = SHARED / "datasets" / "fairface-dev"
A = {name: index for index, name in enumerate(AGE_CLASSES)}


def face(box, age="20-29", gender="Male") -> dict:
    return {"box": box, "age": {"label": age, "probability": 0.5}, "gender": {"label": gender, "probability": 0.9}}


def truth(name, targets, gender="Male", race="White") -> wild.Truth:
    return wild.Truth(name, frozenset(targets), gender, race)


# ---------------------------------------------------------------------------------------------- bins, 1-off

def test_fairface_bins_map_onto_ours():
    assert wild.fairface_targets("0-2") == wild.fairface_targets("3-9") == {A["0-9"]}
    for same in ("10-19", "20-29", "30-39", "40-49", "50-59", "60-69"):
        assert wild.fairface_targets(same) == {A[same]}
    assert wild.fairface_targets("70+") == {A["70-79"], A["80-120"]}
    with pytest.raises(ValueError, match="not a FairFace age bin"):
        wild.fairface_targets("70-79")


def test_exact_and_one_off_rules():
    infant, teen, elder = (wild.fairface_targets(b) for b in ("0-2", "10-19", "70+"))
    assert wild.age_exact(A["0-9"], infant) and not wild.age_exact(A["10-19"], infant)
    assert [wild.age_one_off(p, infant) for p in range(3)] == [True, True, False]
    assert [wild.age_one_off(p, teen) for p in range(4)] == [True, True, True, False]
    assert [wild.age_exact(p, elder) for p in (A["60-69"], A["70-79"], A["80-120"])] == [False, True, True]
    assert [wild.age_one_off(p, elder) for p in range(4, 9)] == [False, False, True, True, True]


# ---------------------------------------------------------------------------------------------- one face per image

def test_the_largest_face_is_taken_whatever_its_order():
    small, big, also_big = face([0, 0, 50, 50]), face([300, 10, 90, 100]), face([10, 300, 100, 90])
    assert wild.largest_face([small, big]) is big and wild.largest_face([big, small]) is big
    assert wild.largest_face([big, also_big, small]) is big  # equal areas: the first
    assert wild.largest_face([]) is None


def test_run_inference_lines_become_one_guess_per_image():
    lines = ["Device: CPU",  # not JSON: ignored
             json.dumps({"image": "two.jpg", "faces_from": "detected", "detected": 2,
                         "faces": [face([0, 0, 40, 40], "0-9", "Female"), face([50, 0, 120, 130], "70-79", "Male")]}),
             json.dumps({"image": "none.jpg", "faces_from": "detected", "detected": 0, "faces": []}),
             json.dumps({"image": "bad.jpg", "error": "bad.jpg is not a usable image"}),
             json.dumps({"image": "chip.jpg", "faces_from": "crop", "detected": 0, "faces": [face([0, 0, 448, 448])]})]
    guesses = wild.guesses_from_run_inference(lines)
    assert guesses["two.jpg"] == wild.Guess(A["70-79"], "Male")
    assert not guesses["none.jpg"].found and not guesses["bad.jpg"].found
    assert guesses["chip.jpg"].whole and guesses["chip.jpg"].found


def test_peer_lines_put_years_in_our_bins():
    lines = [json.dumps({"image": "a.jpg", "faces": [{"box": [0, 0, 9, 9], "age": 3, "gender": "male"},
                                                     {"box": [0, 0, 90, 90], "age": 85, "gender": "female"}]}),
             json.dumps({"image": "b.jpg", "faces": [{"box": [0, 0, 90, 90], "age": 10, "gender": "male"}]}),
             json.dumps({"image": "c.jpg", "faces": []}), json.dumps({"image": "d.jpg", "error": "OSError: x"}),
             json.dumps({"seconds": 1.5})]
    guesses = wild.guesses_from_peer(lines)
    assert guesses["a.jpg"] == wild.Guess(A["80-120"], "Female") and guesses["b.jpg"] == wild.Guess(A["10-19"], "Male")
    assert not guesses["c.jpg"].found and not guesses["d.jpg"].found and len(guesses) == 4


# ---------------------------------------------------------------------------------------------- scores

def test_an_image_without_a_face_counts_wrong_and_is_counted():
    truths = [truth("a", {A["20-29"]}), truth("b", {A["30-39"]}, "Female"), truth("c", {A["0-9"]}), truth("d", {1})]
    guesses = {"a": wild.Guess(A["20-29"], "Male"), "b": wild.Guess(A["20-29"], "Male"), "c": wild.NOT_FOUND}
    result = wild.score(truths, guesses)  # "d" is missing from the guesses: not found either
    assert (result["n"], result["not_found"]) == (4, 2)
    assert [result[k]["correct"] for k in ("age_exact", "age_one_off", "gender")] == [1, 2, 1]
    assert result["age_exact"]["accuracy"] == 0.25 and result["gender"]["accuracy"] == 0.25
    found = wild.score(truths, guesses, found_only=True)
    assert (found["n"], found["not_found"], found["age_one_off"]["accuracy"]) == (2, 2, 1.0)
    assert "N=4" in wild.format_score("all", result) and "no face 2" in wild.format_score("all", result)


def test_evaluate_splits_east_southeast_asian_faces_and_gender_by_race():
    truths = [truth("a", {2}, "Male", "East Asian"), truth("b", {2}, "Female", "Southeast Asian"),
              truth("c", {2}, "Female", "White"), truth("d", {2}, "Male", "White")]
    guesses = {"a": wild.Guess(2, "Male"), "b": wild.Guess(2, "Male"), "c": wild.Guess(5, "Female", whole=True)}
    result = wild.evaluate(truths, guesses)
    assert result["east_southeast_asian"]["n"] == 2 and result["east_southeast_asian"]["gender"]["correct"] == 1
    assert result["all"]["gender"]["accuracy"] == 0.5 and result["all"]["not_found"] == 1
    assert result["all_found"]["n"] == 3 and result["all_found"]["whole_image"] == 1
    assert result["all_detected"]["n"] == 2 and result["all_detected"]["gender"]["correct"] == 1
    assert "east_southeast_asian_detected" not in result  # no image of that group was fed whole
    assert result["gender_by_race"]["White"] == {"correct": 1, "accuracy": 0.5, "n": 2}
    assert "White 50.0% (1/2)" in wild.format_gender_by_race(result["gender_by_race"])
    assert result["gender_recall"] == {"Male": {"correct": 1, "accuracy": 0.5, "n": 2},  # "d" was not found
                                       "Female": {"correct": 1, "accuracy": 0.5, "n": 2}}
    assert result["gender_recall_by_age"] == {"Male": {"20-29": {"correct": 1, "accuracy": 0.5, "n": 2}},
                                              "Female": {"20-29": {"correct": 1, "accuracy": 0.5, "n": 2}}}


def test_gender_recall_by_age_keeps_fairface_70_plus_as_one_bin_in_age_order():
    truths = [truth("a", {7, 8}, "Female", "White"), truth("b", {0}, "Female", "White"),
              truth("c", {7, 8}, "Female", "Black")]
    guesses = {"a": wild.Guess(8, "Female"), "b": wild.Guess(0, "Male"), "c": wild.Guess(7, "Male")}
    by_age = wild.evaluate(truths, guesses)["gender_recall_by_age"]["Female"]
    assert list(by_age) == ["0-9", "70+"]
    assert by_age["70+"] == {"correct": 1, "accuracy": 0.5, "n": 2} and by_age["0-9"]["correct"] == 0
    assert [wild.age_name(frozenset(a)) for a in ({2}, {2, 3}, {7, 8})] == ["20-29", "20-39", "70+"]


# ---------------------------------------------------------------------------------------------- readers

def test_fairface_labels_of_the_dev_set():
    truths = wild.read_fairface_labels(need_shared(FAIRFACE) / "labels.tsv")
    assert len(truths) == 540 and len({t.name for t in truths}) == 540
    assert sum(t.race in wild.EAST_SOUTHEAST_ASIAN for t in truths) == 145
    assert sum(t.age == {A["0-9"]} for t in truths) == 120 and sum(len(t.age) == 2 for t in truths) == 60
    assert sum(t.gender == "Female" for t in truths) == 270


def test_bad_fairface_labels_name_the_line(tmp_path):
    labels = tmp_path / "labels.tsv"
    labels.write_text("file\tage\tgender\trace\na.jpg\t20-29\tMale\tWhite\nb.jpg\t71\tMale\tWhite\n")
    with pytest.raises(AgegenderError, match="line 3"):
        wild.read_fairface_labels(labels)
    labels.write_text("name,age\n")
    with pytest.raises(AgegenderError, match="header"):
        wild.read_fairface_labels(labels)
    with pytest.raises(AgegenderError, match="not found"):
        wild.read_fairface_labels(tmp_path / "absent.tsv")


def test_test_lists_give_bins_and_genders(tmp_path):
    (tmp_path / "age.txt").write_text("data/x/25_1_2_a.jpg.chip.jpg 2\ndata/x/3_0_2_b.jpg.chip.jpg 0\n")
    (tmp_path / "gender.txt").write_text("data/x/25_1_2_a.jpg.chip.jpg 1\ndata/x/3_0_2_b.jpg.chip.jpg 0\n")
    truths = wild.read_test_lists(tmp_path / "age.txt", tmp_path / "gender.txt")
    assert truths == [truth("25_1_2_a.jpg.chip.jpg", {2}, "Female", "Asian"),
                      truth("3_0_2_b.jpg.chip.jpg", {0}, "Male", "Asian")]
    assert wild.list_images(tmp_path / "age.txt") == ["data/x/25_1_2_a.jpg.chip.jpg", "data/x/3_0_2_b.jpg.chip.jpg"]
    (tmp_path / "gender.txt").write_text("data/x/3_0_2_b.jpg.chip.jpg 0\ndata/x/25_1_2_a.jpg.chip.jpg 1\n")
    with pytest.raises(AgegenderError, match="same images"):
        wild.read_test_lists(tmp_path / "age.txt", tmp_path / "gender.txt")


# ---------------------------------------------------------------------------------------------- the benchmark

def bench_wild():
    spec = importlib.util.spec_from_file_location("bench_wild", ROOT / "benchmarks" / "bench_wild.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_inference_arguments_pass_through():
    args = bench_wild().parse_args(["--no-peer", "--infer-args", "--detector mtcnn --jobs 2", "--", "--faces", "haar"])
    assert args.no_peer and args.extra == ["--detector", "mtcnn", "--jobs", "2", "--faces", "haar"]
    assert bench_wild().parse_args([]).extra == []


def test_benchmark_counts_an_image_without_a_face(tmp_path):
    """Four real FairFace faces and a blank picture, through run_inference with stand-in nets: the blank one is
    not found and counted wrong; with `-- --faces none` passed through, every image has its one face."""
    labels = need_shared(FAIRFACE / "labels.tsv").read_text().splitlines()
    folder = tmp_path / "fairface"
    (folder / "images").mkdir(parents=True)
    for line in labels[1:5]:
        shutil.copy(FAIRFACE / "images" / line.split("\t")[0], folder / "images")
    cv2.imwrite(str(folder / "images" / "blank.jpg"), np.full((300, 600, 3), 128, np.uint8))
    (folder / "labels.tsv").write_text("\n".join(labels[:5] + ["blank.jpg\t20-29\tMale\tEast Asian"]) + "\n")
    graph = build_graph(tmp_path / "graph")
    module = bench_wild()
    for extra, not_found in (([], 1), (["--", "--faces", "none"], 0)):
        out = tmp_path / "wild.json"
        assert module.main(["--graph_dir", str(graph), "--fairface", str(folder), "--no-peer", "--json", str(out),
                            *extra]) == 0
        ours = json.loads(out.read_text())["fairface"]["agegender"]
        assert ours["all"]["n"] == 5 and ours["all"]["not_found"] == not_found
        assert ours["all_found"]["n"] == 5 - not_found and ours["all"]["gender"]["correct"] <= 5 - not_found
        assert json.loads(out.read_text())["fairface"]["peer"] == {"skipped": "--no-peer"}
        assert (ours["per_image"]["blank.jpg"] == [None, None, False]) == bool(not_found)


def test_ours_is_also_scored_on_the_images_the_peer_found(capsys):
    truths = [truth("a", {A["20-29"]}), truth("b", {A["30-39"]}, "Female"), truth("c", {A["0-9"]})]
    ours = {"guesses": {"a": wild.Guess(A["20-29"], "Male"), "b": wild.NOT_FOUND, "c": wild.Guess(A["0-9"], "Male")}}
    peer = {"guesses": {"a": wild.Guess(A["30-39"], "Male"), "b": wild.Guess(A["30-39"], "Female")}}
    figures = bench_wild().same_faces(ours, peer, truths, {"all": frozenset()})
    assert figures["all"]["n"] == 2 and figures["all"]["not_found"] == 1  # "c": the peer missed it, left out
    assert figures["all"]["gender"]["correct"] == 1 and figures["all"]["age_exact"]["correct"] == 1
    assert "2 images where the peer found a face" in capsys.readouterr().out
