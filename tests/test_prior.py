"""Class priors folded into an IR (agegender.deploy.prior, compile --prior): the frequencies read from lists,
the bias shift, the IR's probabilities moved exactly as Bayes' rule says, the sidecar's record, the errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from agegender.caffe import blob_to_array, read_caffemodel
from agegender.deploy import prior
from agegender.deploy.compile import random_caffemodel
from agegender.deploy.metadata import read_metadata
from agegender.errors import AgegenderError
from agegender.layers.net import Net

from conftest import assert_one_line_error, run_cli

CPU_FP32 = {"INFERENCE_PRECISION_HINT": "f32"}  # CPUs with bf16 (AVX512-BF16, AMX) infer in bf16 by default
TOY_INPUT = 'name: "toy"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'


def head(suffix: str, classes: int) -> str:
    """An InnerProduct fc8{suffix} and its Softmax prob{suffix} on the input."""
    return (f'layer {{ name: "fc8{suffix}" type: "InnerProduct" bottom: "data" top: "fc8{suffix}" '
            f'inner_product_param {{ num_output: {classes} }} }}\n'
            f'layer {{ name: "prob{suffix}" type: "Softmax" bottom: "fc8{suffix}" top: "prob{suffix}" }}\n')


CLASSIFIER = TOY_INPUT + head("", 9)
TWO_HEADS = TOY_INPUT + head("_age", 9) + head("_gender", 2)  # AgeGenderNet's output names


def infer(xml: Path, x: np.ndarray) -> dict:
    """The IR's outputs by name, computed in f32."""
    outputs = ov.Core().compile_model(str(xml), "CPU", CPU_FP32)(x)
    return {port.get_any_name(): value for port, value in outputs.items()}


def write_list(path: Path, counts: list[int]) -> Path:
    path.write_text("".join(f"img{label}_{i}.jpg {label}\n" for label, n in enumerate(counts) for i in range(n)))
    return path


@pytest.fixture
def toy(tmp_path) -> tuple[Path, Path]:
    return toy_net(tmp_path, "toy", CLASSIFIER, seed=3)


@pytest.fixture
def two_heads(tmp_path) -> tuple[Path, Path]:
    return toy_net(tmp_path, "two", TWO_HEADS, seed=5)


def toy_net(folder: Path, name: str, text: str, seed: int) -> tuple[Path, Path]:
    """(prototxt, caffemodel with random weights large enough to give confident probabilities)."""
    prototxt = folder / f"{name}.prototxt"
    prototxt.write_text(text)
    return prototxt, random_caffemodel(Net.from_file(prototxt), folder / f"{name}.caffemodel", seed=seed, gain=4.0)


def test_frequencies_are_smoothed_counts_and_the_shift_is_their_log_ratio(tmp_path):
    natural = write_list(tmp_path / "natural.txt", [7, 0, 3])
    balanced = write_list(tmp_path / "balanced.txt", [9, 9, 9])
    np.testing.assert_allclose(prior.label_frequencies(natural, 3), np.array([8, 1, 4]) / 13)
    delta = prior.log_adjustment(natural, balanced, 3, 0.5)
    np.testing.assert_allclose(delta, 0.5 * np.log(np.array([8, 1, 4]) / 13 * 3))
    assert not prior.log_adjustment(natural, natural, 3, 1.0).any()  # a net trained on the natural list: no shift


@pytest.mark.parametrize("counts, classes, fragment", [([], 3, "is empty"), ([1, 1, 1, 1], 3, "has label 3")])
def test_lists_that_do_not_fit_the_net_are_one_line_errors(tmp_path, counts, classes, fragment):
    with pytest.raises(AgegenderError, match=fragment):
        prior.label_frequencies(write_list(tmp_path / "l.txt", counts), classes)
    with pytest.raises(AgegenderError, match="list not found"):
        prior.label_frequencies(tmp_path / "absent.txt", 3)
    with pytest.raises(AgegenderError, match="outside"):
        prior.log_adjustment(write_list(tmp_path / "ok.txt", [1, 2, 3]), tmp_path / "ok.txt", 3, 5.0)


def test_the_shift_goes_into_the_softmax_inputs_bias_only(toy, tmp_path):
    prototxt, weights = toy
    net = Net.from_file(prototxt)
    assert prior.logits_layer(net, "prob") == "fc8"
    delta = np.linspace(-1, 1, 9)
    out = prior.adjusted_caffemodel(weights, "fc8", delta, tmp_path / "adjusted.caffemodel")
    before, after = read_caffemodel(weights).layer[0], read_caffemodel(out).layer[0]
    np.testing.assert_array_equal(blob_to_array(before.blobs[0]), blob_to_array(after.blobs[0]))
    np.testing.assert_allclose(blob_to_array(after.blobs[1]) - blob_to_array(before.blobs[1]), delta, atol=1e-6)
    with pytest.raises(AgegenderError, match="not written by a Softmax"):
        prior.logits_layer(net, "fc8")


def test_compiled_probabilities_follow_bayes_rule_and_the_sidecar_says_so(toy, tmp_path):
    prototxt, weights = toy
    natural = write_list(tmp_path / "age_train_natural.txt", [60, 5, 90, 30, 10, 8, 6, 5, 6])
    balanced = write_list(tmp_path / "age_train.txt", [90] * 9)
    common = ["--model", prototxt, "--weights", weights, "--labels", "age", "--precision", "FP32"]
    assert run_cli("compile", *common, "--output", tmp_path / "plain").returncode == 0
    proc = run_cli("compile", *common, "--output", tmp_path / "prior", "--prior", natural, "--trained-on", balanced)
    assert proc.returncode == 0, proc.stderr
    assert "class prior folded into fc8's bias (weight 0.5" in proc.stderr  # the age task's registered weight
    assert "verification vs opencv" in proc.stdout  # the reference ran on the adjusted caffemodel too
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    plain, shifted = (infer(tmp_path / f"{name}.xml", x)["prob"][0] for name in ("plain", "prior"))
    frequencies = prior.label_frequencies(natural, 9)
    expected = plain * np.sqrt(frequencies * 9)  # weight 0.5 over a uniform training list
    np.testing.assert_allclose(shifted, expected / expected.sum(), rtol=1e-4)
    record = read_metadata(tmp_path / "prior.xml").prior
    assert record["weight"] == 0.5 and record["layer"] == "fc8" and record["natural_list"] == str(natural)
    assert read_metadata(tmp_path / "plain.xml").prior == {}
    assert not list(tmp_path.glob("**/prior.caffemodel"))  # the staged copy does not outlive the compile
    weightless = run_cli("compile", *common, "--output", tmp_path / "zero", "--prior", natural, "--trained-on",
                         balanced, "--prior-weight", "0")
    assert weightless.returncode == 0 and read_metadata(tmp_path / "zero.xml").prior == {}


@pytest.mark.parametrize("extra, fragment", [
    (["--prior", "n.txt"], "--prior LIST and --trained-on LIST go together"),
    (["--prior-weight", "1"], "--prior-weight and --prior-head go with --prior"),
    (["--prior-head", "gender"], "--prior-weight and --prior-head go with --prior"),
])
def test_incomplete_prior_options_are_one_line_errors(toy, tmp_path, extra, fragment):
    prototxt, weights = toy
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / "g", *extra)
    assert_one_line_error(proc, fragment)


def test_a_net_with_two_heads_gets_the_prior_on_the_head_whose_task_has_one(two_heads, tmp_path):
    prototxt, weights = two_heads
    natural = write_list(tmp_path / "natural.txt", [60, 5, 90, 30, 10, 8, 6, 5, 6])
    balanced = write_list(tmp_path / "balanced.txt", [90] * 9)
    common = ["--model", prototxt, "--weights", weights, "--precision", "FP32"]
    assert run_cli("compile", *common, "--output", tmp_path / "plain").returncode == 0
    proc = run_cli("compile", *common, "--output", tmp_path / "prior", "--prior", natural, "--trained-on", balanced)
    assert proc.returncode == 0, proc.stderr
    record = read_metadata(tmp_path / "prior.xml").prior
    assert (record["task"], record["layer"], record["weight"]) == ("age", "fc8_age", 0.5)
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    plain, shifted = (infer(tmp_path / f"{name}.xml", x) for name in ("plain", "prior"))
    np.testing.assert_allclose(plain["prob_gender"], shifted["prob_gender"], rtol=1e-5)  # gender untouched
    expected = plain["prob_age"][0] * np.sqrt(prior.label_frequencies(natural, 9) * 9)
    np.testing.assert_allclose(shifted["prob_age"][0], expected / expected.sum(), rtol=1e-4)


def test_prior_head_puts_the_prior_on_the_named_head_and_refuses_a_head_the_net_lacks(two_heads, toy, tmp_path):
    prototxt, weights = two_heads
    natural = write_list(tmp_path / "natural.txt", [70, 30])
    balanced = write_list(tmp_path / "balanced.txt", [50, 50])
    common = ["--model", prototxt, "--weights", weights, "--precision", "FP32", "--prior", natural,
              "--trained-on", balanced]
    proc = run_cli("compile", *common, "--output", tmp_path / "g", "--prior-head", "gender", "--prior-weight", "1")
    assert proc.returncode == 0, proc.stderr
    record = read_metadata(tmp_path / "g.xml").prior
    assert (record["task"], record["layer"]) == ("gender", "fc8_gender")
    np.testing.assert_allclose(record["bias_added"], np.log([71 / 51, 31 / 51]), atol=1e-5)
    assert run_cli("compile", *common[:6], "--output", tmp_path / "plain").returncode == 0
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    plain, shifted = (infer(tmp_path / f"{name}.xml", x) for name in ("plain", "g"))
    np.testing.assert_allclose(plain["prob_age"], shifted["prob_age"], rtol=1e-5)  # age untouched
    expected = plain["prob_gender"][0] * np.array([71, 31]) / 51  # Bayes' rule at weight 1
    np.testing.assert_allclose(shifted["prob_gender"][0], expected / expected.sum(), rtol=1e-4)

    proc = run_cli("compile", *common, "--output", tmp_path / "w", "--prior-head", "gender")
    assert_one_line_error(proc, "--prior-head gender: the task's registered prior weight is 0")

    single, single_weights = toy
    proc = run_cli("compile", "--model", single, "--weights", single_weights, "--output", tmp_path / "h", "--prior",
                   natural, "--trained-on", balanced, "--prior-head", "gender")
    assert_one_line_error(proc, "--prior-head gender: the net's heads are prob (age)")
