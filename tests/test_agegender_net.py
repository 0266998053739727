"""AgeGenderNet: one trunk, an age and a gender head. Two Data layers read the age and the gender LMDB in
lockstep (same keys, same positions); the net trains, compiles to one IR with two outputs, is tested per head
and runs in run_inference in place of AgeNet + GenderNet, printing the same lines."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np

from agegender.caffe import array_to_datum, write_lmdb, write_mean
from agegender.deploy.metadata import read_metadata
from agegender.labels import AGE_CLASSES, GENDER_CLASSES
from agegender.layers.net import Net
from agegender.train.data import data_feeds

from conftest import ROOT, assert_one_line_error, run_cli

DATA = """layer {{ name: "data" type: "Data" top: "data" top: "label_age" include {{ phase: {phase} }}
  transform_param {{ crop_size: 10 mirror: {mirror} mean_file: "{dir}/mean.binaryproto" scale: 0.02 }}
  data_param {{ source: "{dir}/age_{split}_lmdb" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "data_gender" type: "Data" top: "data_g" top: "label_gender" include {{ phase: {phase} }}
  transform_param {{ crop_size: 10 mean_file: "{dir}/mean.binaryproto" scale: 0.02 }}
  data_param {{ source: "{dir}/gender_{split}_lmdb" batch_size: {batch} backend: LMDB }} }}
"""
TRUNK = """layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc7" type: "InnerProduct" bottom: "pool1" top: "fc7"
  inner_product_param { num_output: 16 weight_filler { type: "xavier" } } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
"""
HEAD = {task: f"""layer {{ name: "fc8_{task}" type: "InnerProduct" bottom: "fc7" top: "fc8_{task}"
  inner_product_param {{ num_output: {n} weight_filler {{ type: "xavier" }} }} }}
""" for task, n in (("age", 9), ("gender", 2))}
HEADS = """layer { name: "silence_data_g" type: "Silence" bottom: "data_g" }
layer { name: "accuracy_age" type: "Accuracy" bottom: "fc8_age" bottom: "label_age" top: "accuracy_age"
  include { phase: TEST } }
layer { name: "accuracy_gender" type: "Accuracy" bottom: "fc8_gender" bottom: "label_gender" top: "accuracy_gender"
  include { phase: TEST } }
layer { name: "loss_age" type: "SoftmaxWithLoss" bottom: "fc8_age" bottom: "label_age" top: "loss_age" loss_weight: 1 }
layer { name: "loss_gender" type: "SoftmaxWithLoss" bottom: "fc8_gender" bottom: "label_gender" top: "loss_gender"
  loss_weight: 0.5 }
"""
INPUT = 'name: "{name}"\ninput: "data" input_dim: 1 input_dim: 3 input_dim: 10 input_dim: 10\n'
PROB = 'layer {{ name: "{top}" type: "Softmax" bottom: "fc8_{task}" top: "{top}" }}\n'


def write_pair(directory: Path, split: str, count: int, seed: int, gender_keys=None) -> None:
    """age_SPLIT_lmdb and gender_SPLIT_lmdb of the same images under the same keys (as create_lmdb.sh writes
    them): a bright band at one of 3 heights gives the age (0, 4, 8) and, through it, the gender."""
    rng = np.random.default_rng(seed)
    ages, genders = [], []
    for i in range(count):
        image = rng.integers(0, 60, (3, 12, 12)).astype(np.uint8)
        band = i % 3
        image[:, 4 * band:4 * band + 4, :] += 150
        key = f"{i:08d}_face{i}.jpg".encode()
        ages.append((key, array_to_datum(image, 4 * band)))
        genders.append(((gender_keys or (lambda k: k))(key), array_to_datum(image, int(band == 1))))
    write_lmdb(directory / f"age_{split}_lmdb", ages)
    write_lmdb(directory / f"gender_{split}_lmdb", genders)


def project(directory: Path, **solver) -> Path:
    """The LMDB pairs, mean, train_test, deploy prototxts and solver of a tiny AgeGenderNet; the solver path."""
    if not (directory / "age_train_lmdb").exists():
        write_pair(directory, "train", 48, 0)
        write_pair(directory, "val", 30, 1)
        write_mean(np.full((3, 12, 12), 80, np.float32), directory / "mean.binaryproto")
    data = "".join(DATA.format(phase=phase, split=split, batch=batch, mirror=mirror, dir=directory)
                   for phase, split, batch, mirror in (("TRAIN", "train", 8, "true"), ("TEST", "val", 10, "false")))
    both = TRUNK + HEAD["age"] + HEAD["gender"]
    (directory / "train_test.prototxt").write_text(f'name: "AgeGenderNet"\n{data}{both}{HEADS}')
    (directory / "AgeGenderNet_deploy.prototxt").write_text(
        INPUT.format(name="AgeGenderNet") + both + PROB.format(top="prob_age", task="age")
        + PROB.format(top="prob_gender", task="gender"))
    for name, task in (("AgeNet", "age"), ("GenderNet", "gender")):  # one head each, the same layer names
        (directory / f"{name}_deploy.prototxt").write_text(
            INPUT.format(name=name) + TRUNK + HEAD[task] + PROB.format(top="prob", task=task))
    fields = {"net": f'"{directory}/train_test.prototxt"', "base_lr": 0.01, "lr_policy": '"fixed"', "momentum": 0.9,
              "display": 20, "max_iter": 80, "test_iter": 3, "test_interval": 80, "random_seed": 7,
              "snapshot_prefix": f'"{directory}/snap/AgeGenderNet"', **solver}
    (directory / "solver.prototxt").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    return directory / "solver.prototxt"


def test_two_data_layers_read_the_same_records_and_a_silenced_image_top_is_not_decoded(tmp_path):
    project(tmp_path)
    feeds = data_feeds(Net.from_file(tmp_path / "train_test.prototxt", "TRAIN"), seed=3)
    assert [(tuple(f.tops), f.images) for f in feeds] == [(("data", "label_age"), True),
                                                          (("data_g", "label_gender"), False)]
    for index in (0, 5):  # batch 5 wraps around the 48 records
        tops = feeds[0].batch(index) | feeds[1].batch(index)
        ages, genders = tops["label_age"].numpy(), tops["label_gender"].numpy()
        assert set(ages) == {0, 4, 8} and np.array_equal(genders, (ages == 4).astype(np.float32))
        assert tops["data_g"].shape == tops["data"].shape == (8, 3, 10, 10) and tops["data_g"].stride() == (0,) * 4


def test_data_layers_whose_lmdbs_have_other_keys_are_refused(tmp_path):
    solver = project(tmp_path)
    shutil.rmtree(tmp_path / "gender_train_lmdb")
    write_pair(tmp_path / "other", "train", 48, 0, gender_keys=lambda key: key.replace(b"face", b"FACE"))
    (tmp_path / "other/gender_train_lmdb").rename(tmp_path / "gender_train_lmdb")
    proc = run_cli("train", "--solver", solver, "--device", "cpu")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]  # after the glog lines of the nets being created
    for fragment in ("age_train_lmdb", "gender_train_lmdb", "would pair different records", "lists naming the same"):
        assert fragment in error, error


def test_agegendernet_trains_compiles_to_one_ir_tests_each_head_and_runs_like_the_two_nets(tmp_path):
    solver = project(tmp_path)
    proc = run_cli("train", "--solver", solver, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    train = re.findall(r"Train net output #\d+: (\w+) = ([\d.e+-]+) \(\* ([\d.]+) = ", proc.stderr)
    assert {(name, weight) for name, _, weight in train} == {("loss_age", "1"), ("loss_gender", "0.5")}
    test = dict(re.findall(r"Test net output #\d+: (\w+) = ([\d.e+-]+)", proc.stderr.split("Iteration 80, Testing")[1]))
    assert sorted(test) == ["accuracy_age", "accuracy_gender", "loss_age", "loss_gender"]
    assert float(test["accuracy_age"]) == 1.0 and float(test["accuracy_gender"]) == 1.0  # both heads learnt
    weights = tmp_path / "snap/AgeGenderNet_iter_80.caffemodel"

    graph = tmp_path / "joint"
    proc = run_cli("compile", "--model", tmp_path / "AgeGenderNet_deploy.prototxt", "--weights", weights,
                   "--mean", tmp_path / "mean.binaryproto", "--output", graph / "AgeGenderNet", "--precision", "FP32")
    assert proc.returncode == 0, proc.stderr
    assert "outputs prob_age, prob_gender" in proc.stdout and "top-1 agreement 16/16" in proc.stdout
    meta = read_metadata(graph / "AgeGenderNet.xml")
    assert meta.heads == [{"task": "age", "classes": list(AGE_CLASSES), "output_name": "prob_age"},
                          {"task": "gender", "classes": list(GENDER_CLASSES), "output_name": "prob_gender"}]
    import openvino as ov

    model = ov.Core().read_model(graph / "AgeGenderNet.xml")
    assert [o.get_any_name() for o in model.outputs] == ["prob_age", "prob_gender"]

    for task in ("age", "gender"):
        lmdb = tmp_path / f"{task}_val_lmdb"
        reports = [json.loads(run_cli("test", *source, "--lmdb", lmdb, "--labels", task, "--json").stdout)
                   for source in (("--ir", graph / "AgeGenderNet.xml"),
                                  ("--model", tmp_path / "AgeGenderNet_deploy.prototxt", "--weights", weights,
                                   "--mean", tmp_path / "mean.binaryproto"))]
        assert [r["task"] for r in reports] == [task, task] and reports[0]["confusion"] == reports[1]["confusion"]
        assert reports[0]["accuracy"] == 1.0 and reports[0]["classes"] == list(AGE_CLASSES if task == "age"
                                                                              else GENDER_CLASSES)
    assert_one_line_error(run_cli("test", "--ir", graph / "AgeGenderNet.xml", "--lmdb", tmp_path / "age_val_lmdb"),
                          "has several heads (age, gender)", "--labels age|gender")
    assert_one_line_error(run_cli("test", "--model", tmp_path / "AgeGenderNet_deploy.prototxt", "--weights", weights,
                                  "--mean", tmp_path / "mean.binaryproto", "--lmdb", tmp_path / "age_val_lmdb"),
                          "has several heads (prob_age, prob_gender)", "--labels age|gender")

    separate = tmp_path / "separate"  # the same weights as AgeNet + GenderNet: the answers must not change
    for name in ("AgeNet", "GenderNet"):
        proc = run_cli("compile", "--model", tmp_path / f"{name}_deploy.prototxt", "--weights", weights,
                       "--mean", tmp_path / "mean.binaryproto", "--output", separate / name, "--precision", "FP32")
        assert proc.returncode == 0, proc.stderr
    rng = np.random.default_rng(4)
    faces = tmp_path / "faces"
    faces.mkdir()
    for band in range(3):
        image = rng.integers(0, 60, (12, 12, 3)).astype(np.uint8)
        image[4 * band:4 * band + 4] += 150
        cv2.imwrite(str(faces / f"face{band}.png"), image)
    for source in (faces / "face1.png", faces):
        outputs = [run_cli("infer", "--graph_dir", g, "--image_path", source, "--faces", "none", "--cache_dir", "")
                   for g in (graph, separate)]
        assert [p.returncode for p in outputs] == [0, 0], [p.stderr for p in outputs]
        joint, two = ([line for line in p.stdout.splitlines() if not re.search(r"time|faces/s|^Face detection:", line)]
                      for p in outputs)
        assert joint == two and sum(line.startswith(("Age predicted", "Gender predicted")) for line in joint) == (
            2 if source.is_file() else 6)
    assert "Age predicted: 40-49" in outputs[0].stdout and "Gender predicted: Female" in outputs[0].stdout


def test_compile_names_a_head_per_output_and_refuses_labels_for_several(tmp_path):
    from agegender.deploy.compile import random_caffemodel

    prototxt = ROOT / "prototxt" / "AgeGenderNet_deploy.prototxt"
    weights = random_caffemodel(Net.from_file(prototxt, "TEST"), tmp_path / "random.caffemodel", seed=1)
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / "x", "--labels", "age")
    assert_one_line_error(proc, "--labels names the task of a one-output net", "prob_age, prob_gender")


def test_sidecar_heads_are_checked_like_the_first_head(tmp_path):
    """A sidecar whose gender head lists Female before Male (every gender inverted) or whose heads are not
    {task, classes, output_name} is refused in one line; the compiled order reads back."""
    import pytest

    from agegender.deploy.metadata import IRMetadata, write_metadata
    from agegender.errors import AgegenderError

    def heads(gender: list[str]) -> list[dict]:
        return [{"task": "age", "classes": list(AGE_CLASSES), "output_name": "prob_age"},
                {"task": "gender", "classes": gender, "output_name": "prob_gender"}]

    def sidecar(value) -> Path:
        xml = tmp_path / "AgeGenderNet.xml"
        write_metadata(xml, IRMetadata(task="age", classes=list(AGE_CLASSES), input_name="data",
                                       output_name="prob_age", input_shape=[1, 3, 227, 227], resize=[256, 256],
                                       crop=227, heads=value))
        return xml

    assert [h["task"] for h in read_metadata(sidecar(heads(list(GENDER_CLASSES)))).head_list()] == ["age", "gender"]
    with pytest.raises(AgegenderError, match=r"not the gender head's \['Male', 'Female'\] in this order"):
        read_metadata(sidecar(heads(["Female", "Male"])))
    with pytest.raises(AgegenderError, match='"heads" is .*expected a list of'):
        read_metadata(sidecar([{"task": "age", "classes": list(AGE_CLASSES)}]))
