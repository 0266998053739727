"""The compiler: prototxt + caffemodel -> OpenVINO IR, checked against OpenCV 4's Caffe engine, against
numpy re-statements of Caffe's own arithmetic, and on the real fixtures' reference outputs."""
from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from agegender.caffe import array_to_datum, caffe_pb2, read_mean, write_lmdb, write_mean
from agegender.deploy.compile import MYRIAD_OPS, check_ops, model_ops, opencv_forward, random_caffemodel
from agegender.deploy.metadata import read_metadata, sha256_file
from agegender.errors import AgegenderError
from agegender.layers.net import Net
from agegender.layers.openvino_ops import build_model, fold_into_convolutions

from conftest import FIXTURES, ROOT, assert_one_line_error, need_shared, run_cli

CPU_FP32 = {"INFERENCE_PRECISION_HINT": "f32"}


def compiled(model_or_xml) -> ov.CompiledModel:
    return ov.Core().compile_model(model_or_xml if isinstance(model_or_xml, ov.Model) else str(model_or_xml),
                                   "CPU", CPU_FP32)


def write_net(tmp_path: Path, body: str, name: str = "net") -> tuple[Path, Net]:
    path = tmp_path / f"{name}.prototxt"
    path.write_text(textwrap.dedent(body))
    return path, Net.from_file(path)


def forward_ir(model_or_xml, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    net = compiled(model_or_xml)
    got = net(inputs)
    return {name: got[net.output(name)] for name in outputs}


# --- real fixtures ------------------------------------------------------------------------------------------

FIXTURE_NETS = {  # name: (prototxt, caffemodel, reference npz)
    "lenet": ("lenet/deploy.prototxt", "lenet/lenet_iter_10000.caffemodel", "lenet/reference_opencv.npz"),
    "det1": ("mtcnn/det1.prototxt", "mtcnn/det1.caffemodel", "mtcnn/det1_reference_opencv.npz"),
    "det4": ("mtcnn/det4.prototxt", "mtcnn/det4.caffemodel", "mtcnn/det4_reference_opencv.npz"),
}


@pytest.mark.parametrize("precision", ["FP32", "FP16"])
@pytest.mark.parametrize("name", sorted(FIXTURE_NETS))
def test_fixture_nets_match_opencv_reference_outputs(fixtures, tmp_path, name, precision):
    prototxt, weights, reference = (fixtures / p for p in FIXTURE_NETS[name])
    out = tmp_path / "graph" / name
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", out, "--precision", precision)
    assert proc.returncode == 0, proc.stderr
    assert "verification vs opencv on 8 random inputs" in proc.stdout
    ref = np.load(reference)
    net = Net.from_file(prototxt)
    ir = ov.Core().read_model(str(out) + ".xml")
    assert [i.get_any_name() for i in ir.inputs] == net.inputs  # Caffe blob names, where the prototxt says
    assert {n for o in ir.outputs for n in o.get_names()} >= set(net.outputs)
    for i in range(len(ref["input"])):
        got = forward_ir(out.with_suffix(".xml"), {"data": ref["input"][i:i + 1]}, net.outputs)
        for blob in net.outputs:
            expected = ref["output" if "output" in ref else blob][i:i + 1]
            diff = np.abs(got[blob] - expected).max()
            if precision == "FP32":
                assert diff <= 1e-4, (blob, diff)
            else:
                assert diff / np.abs(expected).max() <= 1e-2, (blob, diff)
    meta = read_metadata(out.with_suffix(".xml"))
    assert meta.precision == precision and meta.input_name == "data" and meta.output_name == net.outputs[-1]
    assert meta.source["caffemodel_sha256"] == sha256_file(weights)
    assert meta.verification["reference"] == "opencv" and meta.verification["inputs"] == 8


def test_fp32_keeps_fp32_weights_and_fp16_halves_them(fixtures, tmp_path):
    prototxt, weights, _ = (fixtures / p for p in FIXTURE_NETS["lenet"])
    sizes = {}
    for precision in ("FP32", "FP16"):
        proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / precision,
                       "--precision", precision, "--check", "none")
        assert proc.returncode == 0, proc.stderr
        sizes[precision] = (tmp_path / f"{precision}.bin").stat().st_size
    assert sizes["FP32"] > 0.95 * weights.stat().st_size  # 431k float32 parameters, uncompressed
    assert sizes["FP16"] < 0.55 * sizes["FP32"]


# --- Levi & Hassner nets --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lh_weights(tmp_path_factory):
    folder = need_shared(FIXTURES / "levi-hassner")
    out = tmp_path_factory.mktemp("lh")
    return {task: (folder / f"{task}_deploy.prototxt",
                   random_caffemodel(Net.from_file(folder / f"{task}_deploy.prototxt"), out / f"{task}.caffemodel"))
            for task in ("age", "gender")}


@pytest.mark.parametrize("task", ["age", "gender"])
def test_levi_hassner_nets_compile_verify_and_carry_their_sidecar(lh_weights, fixtures, tmp_path, task):
    prototxt, weights = lh_weights[task]
    mean_file = fixtures / "levi-hassner" / "mean.binaryproto"
    out = tmp_path / "graph" / ("AgeNet" if task == "age" else "GenderNet")
    batch = ["--batch", "1"] if task == "gender" else []  # the gender deploy prototxt says 10 (for 10 crops)
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--mean", mean_file, "--output", out, *batch)
    assert proc.returncode == 0, proc.stderr
    meta = read_metadata(out.with_suffix(".xml"))
    v = meta.verification
    assert v["reference"] == "opencv" and v["max_rel_diff"] <= 1e-2 and v["top1_agreement"] >= 0.75
    assert meta.input_shape == [1, 3, 227, 227] and meta.resize == [256, 256] and meta.crop == 227
    assert list(ov.Core().read_model(str(out) + ".xml").input(0).shape) == [1, 3, 227, 227]
    assert meta.precision == "FP16" and meta.target == "cpu"
    # the original Adience age net has 8 classes, so only gender's 2 are recognised without --labels
    assert (meta.task, meta.classes) == (("gender", ["Male", "Female"]) if task == "gender" else ("", list("01234567")))
    mean_npy = out.parent / "age_gender_mean.npy"
    assert meta.mean_file == "age_gender_mean.npy" and meta.mean_sha256 == sha256_file(mean_npy)
    np.testing.assert_array_equal(np.load(mean_npy), read_mean(mean_file))
    assert meta.mean_bgr == pytest.approx(read_mean(mean_file).mean(axis=(1, 2)), abs=1e-3)


@pytest.mark.parametrize("net_name,task", [("AgeNet", "age"), ("GenderNet", "gender")])
def test_our_trainers_deploy_nets_compile_and_match(tmp_path, net_name, task):
    prototxt = ROOT / "prototxt" / f"{net_name}_deploy.prototxt"
    if not prototxt.exists():
        pytest.skip(f"{prototxt} is not there yet")
    weights = random_caffemodel(Net.from_file(prototxt), tmp_path / "w.caffemodel")
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / net_name,
                   "--labels", task, "--check-inputs", "4")
    assert proc.returncode == 0, proc.stderr
    meta = read_metadata(tmp_path / f"{net_name}.xml")
    assert meta.verification["max_rel_diff"] <= 1e-2 and meta.verification["top1_agreement"] >= 0.75
    assert (meta.input_name, meta.output_name) == ("data", "prob") and meta.task == task


def test_myriad_ir_uses_only_what_the_2022_3_myriad_plugin_runs(lh_weights, tmp_path):
    prototxt, weights = lh_weights["age"]
    out = tmp_path / "AgeNet"
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", out, "--target", "myriad")
    assert proc.returncode == 0, proc.stderr
    ir = ov.Core().read_model(str(out) + ".xml")
    assert model_ops(ir) <= MYRIAD_OPS, model_ops(ir) - MYRIAD_OPS
    assert all(not p.get_partial_shape().is_dynamic for p in ir.inputs + ir.outputs)
    weights_types = {op.get_element_type().get_type_name() for op in ir.get_ordered_ops()
                     if op.get_type_name() == "Constant" and op.get_element_type().is_real()}
    assert weights_types == {"f16"}
    assert read_metadata(out.with_suffix(".xml")).target == "myriad"


def test_myriad_check_names_an_operation_from_a_later_opset():
    import openvino.opset8 as opset8

    data = opset8.parameter([1, 4], np.float32)
    model = ov.Model([opset8.softmax(data, 1)], [data])
    with pytest.raises(AgegenderError, match="Softmax-opset8 .* not supported by the NCS2"):
        check_ops(model, MYRIAD_OPS, "the NCS2")


def test_myriad_refuses_fp32_in_one_line(fixtures, tmp_path):
    prototxt, weights, _ = (fixtures / p for p in FIXTURE_NETS["lenet"])
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / "x",
                   "--target", "myriad", "--precision", "FP32")
    assert_one_line_error(proc, "--device MYRIAD runs FP16 only")


def test_ir_reshapes_to_ten_crops(lh_weights, tmp_path):
    """Reshapes copy the batch (special_zero), so a runtime can feed Levi & Hassner's 10 crops at once."""
    prototxt, weights = lh_weights["age"]
    net = Net.from_file(prototxt)
    model = build_model(net, net.weights_from(weights))
    x = np.random.default_rng(0).uniform(-100, 100, (10, 3, 227, 227)).astype(np.float32)
    single = np.concatenate([forward_ir(model, {"data": x[i:i + 1]}, ["prob"])["prob"] for i in range(10)])
    model.reshape({"data": [10, 3, 227, 227]})
    np.testing.assert_allclose(forward_ir(model, {"data": x}, ["prob"])["prob"], single, atol=1e-5)


# --- every layer type, against OpenCV and Caffe's arithmetic -----------------------------------------------

EVERY_LAYER = """
    name: "every_layer"
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 dim: 17 dim: 19 } } }
    layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
      convolution_param { num_output: 8 kernel_size: 3 pad: 1 bias_term: false } }
    layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
    layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
    layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: 0.1 } }
    layer { name: "split" type: "Split" bottom: "conv1" top: "a" top: "b" }
    layer { name: "gconv" type: "Convolution" bottom: "a" top: "gconv"
      convolution_param { num_output: 8 kernel_size: 3 pad: 2 dilation: 2 group: 4 } }
    layer { name: "prelu" type: "PReLU" bottom: "gconv" top: "gconv" }
    layer { name: "bn2" type: "BatchNorm" bottom: "b" top: "bn2" }
    layer { name: "sc2" type: "Scale" bottom: "bn2" top: "bn2" }
    layer { name: "sum" type: "Eltwise" bottom: "gconv" bottom: "bn2" top: "sum"
      eltwise_param { operation: SUM coeff: 0.5 coeff: -2 } }
    layer { name: "prod" type: "Eltwise" bottom: "gconv" bottom: "sum" top: "prod" eltwise_param { operation: PROD } }
    layer { name: "max" type: "Eltwise" bottom: "prod" bottom: "sum" top: "max" eltwise_param { operation: MAX } }
    layer { name: "slice" type: "Slice" bottom: "max" top: "s1" top: "s2" slice_param { axis: 1 slice_point: 3 } }
    layer { name: "sig" type: "Sigmoid" bottom: "s1" top: "s1" }
    layer { name: "tanh" type: "TanH" bottom: "s2" top: "s2" }
    layer { name: "cat" type: "Concat" bottom: "s2" bottom: "s1" top: "cat" }
    layer { name: "norm" type: "LRN" bottom: "cat" top: "norm" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 } }
    layer { name: "wnorm" type: "LRN" bottom: "norm" top: "wnorm"
      lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }
    layer { name: "pool" type: "Pooling" bottom: "wnorm" top: "pool"
      pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
    layer { name: "relu2" type: "ReLU" bottom: "pool" top: "pool" }
    layer { name: "mpool" type: "Pooling" bottom: "pool" top: "mpool"
      pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
    layer { name: "drop" type: "Dropout" bottom: "mpool" top: "mpool" }
    layer { name: "flat" type: "Flatten" bottom: "mpool" top: "flat" }
    layer { name: "ip" type: "InnerProduct" bottom: "flat" top: "ip" inner_product_param { num_output: 12 } }
    layer { name: "shape" type: "Reshape" bottom: "ip" top: "shape" reshape_param { shape { dim: 0 dim: 3 dim: -1 } } }
    layer { name: "prob" type: "Softmax" bottom: "shape" top: "prob" softmax_param { axis: 2 } }
    layer { name: "gpool" type: "Pooling" bottom: "pool" top: "gpool" pooling_param { pool: AVE global_pooling: true } }
    layer { name: "gflat" type: "Flatten" bottom: "gpool" top: "gflat" }
    layer { name: "sc3" type: "Scale" bottom: "pool" bottom: "gflat" top: "sc3" scale_param { axis: 0 } }
    layer { name: "ip2" type: "InnerProduct" bottom: "sc3" top: "ip2" inner_product_param { num_output: 5 axis: 2 } }
"""


def test_every_layer_type_matches_opencv(tmp_path):
    prototxt, net = write_net(tmp_path, EVERY_LAYER)
    weights = random_caffemodel(net, tmp_path / "w.caffemodel", gain=1.0)
    arrays = net.weights_from(weights)
    assert fold_into_convolutions(net, arrays)[1] == {"bn1", "sc1"}  # bn2/sc2 follow a Split, not a Convolution
    x = np.random.default_rng(0).standard_normal((1, 4, 17, 19)).astype(np.float32)
    expected = opencv_forward(prototxt, weights, net)({"data": x})
    for fold in (True, False):
        got = forward_ir(build_model(net, arrays, fold=fold), {"data": x}, net.outputs)
        assert set(got) == {"prob", "ip2"}
        for blob in net.outputs:
            np.testing.assert_allclose(got[blob], expected[blob], atol=1e-4, rtol=1e-4)


def test_every_layer_type_matches_the_pytorch_engine(tmp_path):
    """The second, independent reference; here LRN's k is not 1 (OpenCV 4 ignores k)."""
    pytest.importorskip("torch")
    from agegender.deploy.compile import torch_forward

    prototxt, net = write_net(tmp_path, EVERY_LAYER.replace("beta: 0.75 }", "beta: 0.75 k: 2 }"))
    weights = random_caffemodel(net, tmp_path / "w.caffemodel", gain=1.0)
    x = np.random.default_rng(5).standard_normal((1, 4, 17, 19)).astype(np.float32)
    expected = torch_forward(net, weights)({"data": x})
    got = forward_ir(build_model(net, net.weights_from(weights)), {"data": x}, net.outputs)
    for blob in net.outputs:
        np.testing.assert_allclose(got[blob], expected[blob], atol=1e-4, rtol=1e-4)


def test_check_torch_verifies_with_the_pytorch_engine(fixtures, tmp_path):
    pytest.importorskip("torch")
    prototxt, weights, _ = (fixtures / p for p in FIXTURE_NETS["det1"])
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / "det1",
                   "--precision", "FP32", "--check", "torch", "--check-inputs", "3")
    assert proc.returncode == 0, proc.stderr
    v = read_metadata(tmp_path / "det1.xml").verification
    assert v["reference"] == "torch" and v["inputs"] == 3 and v["max_abs_diff"] <= 1e-4


def test_auto_check_falls_back_to_pytorch_when_opencv_cannot_load_the_net(fixtures, monkeypatch):
    pytest.importorskip("torch")
    from agegender.deploy import compile as compile_command

    def unloadable(*args):
        raise AgegenderError("OpenCV cannot load det1.prototxt (unsupported layer)")

    monkeypatch.setattr(compile_command, "opencv_forward", unloadable)
    prototxt, weights, _ = (fixtures / p for p in FIXTURE_NETS["det1"])
    net = Net.from_file(prototxt)
    name, forward = compile_command.reference_forward("auto", prototxt, weights, net)
    assert name == "torch" and set(forward({"data": np.zeros((1, 3, 12, 12), np.float32)})) == set(net.outputs)
    with pytest.raises(AgegenderError, match="--check opencv is not possible .*unsupported layer"):
        compile_command.reference_forward("opencv", prototxt, weights, net)


def test_batchnorm_and_scale_fold_into_the_convolution(tmp_path):
    prototxt, net = write_net(tmp_path, """
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 9 dim: 9 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
          convolution_param { num_output: 6 kernel_size: 3 } }
        layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bn" batch_norm_param { eps: 0.01 } }
        layer { name: "scale" type: "Scale" bottom: "bn" top: "bn" scale_param { bias_term: true } }
        layer { name: "relu" type: "ReLU" bottom: "bn" top: "bn" }
    """)
    weights = random_caffemodel(net, tmp_path / "w.caffemodel", gain=1.0)
    arrays = net.weights_from(weights)
    arrays["bn"][2][:] = 4.0  # Caffe stores unnormalised moving sums and their normaliser
    folded = build_model(net, arrays)
    assert not {"Multiply", "BatchNormInference"} & {op.get_type_name() for op in folded.get_ordered_ops()}
    x = np.random.default_rng(1).standard_normal((1, 3, 9, 9)).astype(np.float32)
    mean, var = arrays["bn"][0] / 4, arrays["bn"][1] / 4
    conv = forward_ir(build_model(Net.from_proto(_prefix(prototxt, 2)), arrays), {"data": x}, ["conv"])["conv"]
    gamma, beta = (a[None, :, None, None] for a in arrays["scale"])
    caffe = np.maximum((conv - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 0.01) * gamma + beta, 0)
    np.testing.assert_allclose(forward_ir(folded, {"data": x}, ["bn"])["bn"], caffe, atol=1e-4, rtol=1e-4)


def _prefix(prototxt: Path, n_layers: int) -> caffe_pb2.NetParameter:
    from agegender.caffe import read_net

    proto = read_net(prototxt)
    del proto.layer[n_layers:]
    return proto


def caffe_pooling(x: np.ndarray, method: str, kernel: int, stride: int, pad: int, out_hw) -> np.ndarray:
    """Caffe's PoolingLayer::Forward_cpu, loop for loop."""
    n, c, h, w = x.shape
    out = np.empty((n, c, *out_hw), np.float32)
    for ph in range(out_hw[0]):
        for pw in range(out_hw[1]):
            hs, ws = ph * stride - pad, pw * stride - pad
            he, we = min(hs + kernel, h + pad), min(ws + kernel, w + pad)
            pool_size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, :, hs:he, ws:we]
            out[:, :, ph, pw] = window.max((2, 3)) if method == "MAX" else window.sum((2, 3)) / pool_size
    return out


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("kernel,stride,pad,h,w", [
    (3, 2, 0, 6, 7),    # ceil overhang, no padding
    (3, 2, 1, 6, 8),    # padding and an overhang on both axes
    (2, 2, 1, 5, 5),    # Caffe drops a last window that would start in the padding
    (3, 3, 1, 7, 9),    # padding, no overhang
    (3, 2, 2, 7, 10),
    (3, 1, 1, 4, 4),
])
def test_pooling_matches_caffe_on_awkward_sizes(tmp_path, method, kernel, stride, pad, h, w):
    prototxt, net = write_net(tmp_path, f"""
        layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 2 dim: 3 dim: {h} dim: {w} }} }} }}
        layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool"
          pooling_param {{ pool: {method} kernel_size: {kernel} stride: {stride} pad: {pad} }} }}
    """)
    x = np.random.default_rng(2).standard_normal((2, 3, h, w)).astype(np.float32) + 1.0
    got = forward_ir(build_model(net, {}), {"data": x}, ["pool"])["pool"]
    expected = caffe_pooling(x, method, kernel, stride, pad, net.blob_shapes["pool"][2:])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def caffe_lrn(x: np.ndarray, size: int, alpha: float, beta: float, k: float, across: bool) -> np.ndarray:
    """Caffe's LRNLayer: across channels k + alpha/size * window sum; within a channel 1 + alpha * window mean
    (an AVE pooling of x^2 with padding (size-1)/2, so border windows still divide by size^2)."""
    half = (size - 1) // 2
    sq = x.astype(np.float64) ** 2
    if across:
        padded = np.pad(sq, ((0, 0), (half, half), (0, 0), (0, 0)))
        window = sum(padded[:, i:i + x.shape[1]] for i in range(size))
        return (x * (k + alpha / size * window) ** -beta).astype(np.float32)
    padded = np.pad(sq, ((0, 0), (0, 0), (half, half), (half, half)))
    window = sum(padded[:, :, i:i + x.shape[2], j:j + x.shape[3]] for i in range(size) for j in range(size))
    return (x * (1 + alpha * window / size ** 2) ** -beta).astype(np.float32)


@pytest.mark.parametrize("region,size,k", [("ACROSS_CHANNELS", 5, 1.0), ("ACROSS_CHANNELS", 3, 2.0),
                                           ("WITHIN_CHANNEL", 3, 1.0), ("WITHIN_CHANNEL", 5, 2.0)])
def test_lrn_matches_caffe(tmp_path, region, size, k):
    """Including k != 1, which OpenCV 4's Caffe importer ignores (it always uses 1)."""
    _, net = write_net(tmp_path, f"""
        layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 7 dim: 6 dim: 5 }} }} }}
        layer {{ name: "norm" type: "LRN" bottom: "data" top: "norm"
          lrn_param {{ local_size: {size} alpha: 0.3 beta: 0.75 k: {k} norm_region: {region} }} }}
    """)
    x = np.random.default_rng(3).standard_normal((1, 7, 6, 5)).astype(np.float32) * 2
    got = forward_ir(build_model(net, {}), {"data": x}, ["norm"])["norm"]
    np.testing.assert_allclose(got, caffe_lrn(x, size, 0.3, 0.75, k, region == "ACROSS_CHANNELS"), atol=1e-5)


# --- errors ---------------------------------------------------------------------------------------------------

def test_training_layers_fail_in_one_line_naming_layer_and_type(tmp_path):
    prototxt, net = write_net(tmp_path, """
        layer { name: "data" type: "Input" top: "data" top: "label"
          input_param { shape { dim: 1 dim: 4 } shape { dim: 1 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
    """)
    weights = random_caffemodel(net, tmp_path / "w.caffemodel")
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / "ir")
    assert_one_line_error(proc, "layer 'loss' (SoftmaxWithLoss)", "deploy prototxt ends with a Softmax")
    assert not (tmp_path / "ir.xml").exists()


def test_unknown_layer_type_fails_in_one_line(tmp_path):
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }\n'
                        'layer { name: "up" type: "Upsample" bottom: "data" top: "up" }\n')
    proc = run_cli("compile", "--model", prototxt, "--weights", prototxt, "--output", tmp_path / "ir")
    assert_one_line_error(proc, "layer 'up' (Upsample)", "unsupported layer type")


def test_a_wrong_ir_is_refused_and_nothing_is_written(fixtures, tmp_path, monkeypatch):
    """The verification is a gate: break the ReLU builder and compile must refuse its output."""
    import argparse

    from agegender.deploy import compile as compile_command
    from agegender.layers import openvino_ops

    monkeypatch.setitem(openvino_ops.BUILDERS, "ReLU", openvino_ops.identity)
    parser = argparse.ArgumentParser()
    compile_command.add_arguments(parser)
    prototxt, weights, _ = (fixtures / p for p in FIXTURE_NETS["lenet"])
    args = parser.parse_args(["--model", str(prototxt), "--weights", str(weights), "--output", str(tmp_path / "ir"),
                              "--precision", "FP32"])
    with pytest.raises(AgegenderError, match="does not match opencv"):
        compile_command.run(args)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_recompile_leaves_the_previous_ir_and_its_sidecar_together(fixtures, tmp_path, monkeypatch):
    """The IR, its weights and its sidecar are staged together: a failure while writing the sidecar keeps the
    previous trio as it was, never a new IR beside an old sidecar."""
    import argparse

    from agegender.deploy import compile as compile_command
    from agegender.deploy import metadata

    parser = argparse.ArgumentParser()
    compile_command.add_arguments(parser)
    prototxt, weights, _ = (fixtures / p for p in FIXTURE_NETS["lenet"])
    base = ["--model", str(prototxt), "--weights", str(weights), "--output", str(tmp_path / "ir")]
    assert compile_command.run(parser.parse_args(base + ["--precision", "FP32"])) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == {"ir.xml", "ir.bin", "ir.json"}

    def fail(*_):
        raise OSError("disk full")
    monkeypatch.setattr(metadata, "write_metadata", fail)
    with pytest.raises(OSError, match="disk full"):
        compile_command.run(parser.parse_args(base + ["--precision", "FP16"]))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# --- INT8 -----------------------------------------------------------------------------------------------------

SMALL_CLASSIFIER = """
    name: "small"
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 24 dim: 24 } } }
    layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
      convolution_param { num_output: 8 kernel_size: 3 } }
    layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
    layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
      pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
    layer { name: "fc1" type: "InnerProduct" bottom: "pool1" top: "fc1" inner_product_param { num_output: 64 } }
    layer { name: "relu2" type: "ReLU" bottom: "fc1" top: "fc1" }
    layer { name: "fc" type: "InnerProduct" bottom: "fc1" top: "fc" inner_product_param { num_output: 2 } }
    layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def test_int8_quantizes_on_the_calibration_lmdb_and_reports_against_fp32(tmp_path):
    prototxt, net = write_net(tmp_path, SMALL_CLASSIFIER)
    weights = random_caffemodel(net, tmp_path / "w.caffemodel")
    rng = np.random.default_rng(4)
    for split, n in (("train", 40), ("val", 20), ("test", 30)):
        images = rng.integers(0, 256, (n, 3, 28, 28), dtype=np.uint8)
        write_lmdb(tmp_path / "lmdb" / f"gender_{split}_lmdb",
                   [(f"{i:08d}".encode(), array_to_datum(img, i % 2)) for i, img in enumerate(images)])
    out = tmp_path / "graph" / "GenderNet"
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", out, "--precision", "INT8",
                   "--calibration", tmp_path / "lmdb" / "gender_train_lmdb", "--calibration-size", "20")
    assert proc.returncode == 0, proc.stderr
    assert "calibrating on 20 images" in proc.stderr
    assert "INT8 vs FP32 on" in proc.stdout and "accuracy drop" in proc.stdout
    ir = ov.Core().read_model(str(out) + ".xml")
    assert "FakeQuantize" in {op.get_type_name() for op in ir.get_ordered_ops()}
    meta = read_metadata(out.with_suffix(".xml"))
    report = meta.verification["int8_vs_fp32"]
    assert meta.precision == "INT8" and meta.task == "gender" and report["calibration_images"] == 20
    assert report["test_lmdb"].endswith("gender_val_lmdb")  # the keep-or-refuse choice never reads the test split
    assert 0 <= report["int8"]["accuracy"] <= 1 and report["int8"]["images_per_s"] > 0
    assert report["fp32"]["size_mb"] > 2.5 * report["int8"]["size_mb"]  # int8 weights
    drop = 100 * (report["fp32"]["accuracy"] - report["int8"]["accuracy"])
    assert report["accuracy_drop_points"] == pytest.approx(drop)


def test_int8_comparison_prefers_the_validation_lmdb_and_falls_back_to_test(tmp_path):
    from agegender.deploy.quantize import default_test_lmdb
    train = tmp_path / "age_train_lmdb"
    assert default_test_lmdb(train) is None
    for split in ("test", "val"):
        (tmp_path / f"age_{split}_lmdb").mkdir()
        (tmp_path / f"age_{split}_lmdb" / "data.mdb").write_bytes(b"")
        assert default_test_lmdb(train) == tmp_path / f"age_{split}_lmdb"
    assert default_test_lmdb(tmp_path / "calibration_lmdb") is None


def test_labels_that_do_not_fit_the_output_fail_before_any_work(fixtures, tmp_path):
    prototxt, weights, _ = (fixtures / p for p in FIXTURE_NETS["lenet"])
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / "x", "--labels", "age")
    assert_one_line_error(proc, "--labels age names 9 classes but output 'loss' has 10")
    assert "verification" not in proc.stdout


def test_int8_without_calibration_fails_in_one_line(fixtures, tmp_path):
    prototxt, weights, _ = (fixtures / p for p in FIXTURE_NETS["lenet"])
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / "x",
                   "--precision", "INT8")
    assert_one_line_error(proc, "--precision INT8 needs --calibration")


def test_compile_help_does_not_import_openvino():
    import subprocess
    import sys

    from conftest import ROOT

    code = "import sys; from agegender.cli import build_parser; build_parser(); print('openvino' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- compile2Movidius.sh ------------------------------------------------------------------------------------

def run_movidius(tmp_path: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MODELS_DIR=str(tmp_path / "models"), PROTOTXT_DIR=str(tmp_path / "prototxt"),
               MEAN_FILE=str(tmp_path / "mean.binaryproto"), GRAPH_DIR=str(tmp_path / "graph"),
               LMDB_DIR=str(tmp_path / "lmdb"), LISTS_DIR=str(tmp_path / "DEF"), **env_vars)
    return subprocess.run([str(ROOT / "compile2Movidius.sh"), *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_compile2movidius_compiles_the_newest_snapshots(lh_weights, fixtures, tmp_path):
    (tmp_path / "prototxt").mkdir()
    shutil.copy(fixtures / "levi-hassner" / "mean.binaryproto", tmp_path / "mean.binaryproto")
    for net, task in (("AgeNet", "age"), ("GenderNet", "gender")):
        prototxt, weights = lh_weights[task]
        text = prototxt.read_text()
        # the Adience age net has 8 classes, ours 9; the gender one takes 10 crops, ours 1
        text = text.replace("num_output: 8", "num_output: 9").replace("input_dim: 10", "input_dim: 1")
        (tmp_path / "prototxt" / f"{net}_deploy.prototxt").write_text(text)
        (tmp_path / "models" / net).mkdir(parents=True)
        snapshot_net = Net.from_file(tmp_path / "prototxt" / f"{net}_deploy.prototxt")
        random_caffemodel(snapshot_net, tmp_path / "models" / net / f"{net}_iter_200.caffemodel")
        for older in (30, 5):  # lexically "newer" than 200, but older
            (tmp_path / "models" / net / f"{net}_iter_{older}.caffemodel").write_bytes(b"not a caffemodel")
    proc = run_movidius(tmp_path, "--check-inputs", "2")  # extra arguments reach `agegender compile`
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("verification vs opencv on 2 random inputs") == 2
    for net, task in (("AgeNet", "age"), ("GenderNet", "gender")):
        meta = read_metadata(tmp_path / "graph" / f"{net}.xml")
        assert meta.task == task and meta.precision == "FP16"
        assert meta.source["caffemodel"].endswith(f"{net}_iter_200.caffemodel")
        assert (tmp_path / "graph" / f"{net}.bin").stat().st_size > 1e6
    assert (tmp_path / "graph" / "age_gender_mean.npy").is_file()
    assert "no INT8 build of AgeNet" in proc.stderr and not list((tmp_path / "graph").glob("*_int8.*"))


def small_nets_and_lmdbs(tmp_path: Path) -> None:
    """Small AgeNet/GenderNet (24x24 input, 9 and 2 classes) with snapshots, a 28x28 mean and train/test LMDBs."""
    (tmp_path / "prototxt").mkdir()
    for net, task, classes in (("AgeNet", "age", 9), ("GenderNet", "gender", 2)):
        net_text = SMALL_CLASSIFIER.replace("num_output: 2", f"num_output: {classes}")
        prototxt, small = write_net(tmp_path / "prototxt", net_text,
                                    f"{net}_deploy")
        (tmp_path / "models" / net).mkdir(parents=True)
        random_caffemodel(small, tmp_path / "models" / net / f"{net}_iter_10.caffemodel")
        rng = np.random.default_rng(classes)
        for split, n in (("train", 24), ("test", 20)):
            images = rng.integers(0, 256, (n, 3, 28, 28), dtype=np.uint8)
            write_lmdb(tmp_path / "lmdb" / f"{task}_{split}_lmdb",
                       [(f"{i:08d}".encode(), array_to_datum(img, i % classes)) for i, img in enumerate(images)])
    write_mean(np.full((3, 28, 28), 120, np.float32), tmp_path / "mean.binaryproto")


def test_compile2movidius_adds_an_int8_cpu_build_with_its_accuracy_report(tmp_path):
    small_nets_and_lmdbs(tmp_path)
    (tmp_path / "DEF").mkdir()  # build_dataset.py's lists: the balanced training list and each face once
    for task, classes in (("age", 9), ("gender", 2)):
        for name, per_class in (("train", lambda c: 5), ("train_natural", lambda c: c + 1)):
            (tmp_path / "DEF" / f"{task}_{name}.txt").write_text(
                "".join(f"f{c}_{i}.jpg {c}\n" for c in range(classes) for i in range(per_class(c))))
    proc = run_movidius(tmp_path, "--check-inputs", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("accuracy drop") == 2
    for net in ("AgeNet", "GenderNet"):
        fp16, int8 = (read_metadata(tmp_path / "graph" / f"{net}{suffix}.xml") for suffix in ("", "_int8"))
        assert (fp16.precision, fp16.target, int8.precision, int8.target) == ("FP16", "cpu", "INT8", "cpu")
        assert int8.source["caffemodel_sha256"] == fp16.source["caffemodel_sha256"]
        assert "accuracy_drop_points" in int8.verification["int8_vs_fp32"]
        # the age IRs carry the class prior at the age task's weight; gender's weight is 0: none
        assert fp16.prior == int8.prior and bool(fp16.prior) == (net == "AgeNet")
    assert read_metadata(tmp_path / "graph" / "AgeNet.xml").prior["weight"] == 0.5
    # a forced single build keeps to it; INT8=0 also removes an INT8 build that would now be stale
    proc = run_movidius(tmp_path, "--precision", "FP32", "--check", "none")
    assert proc.returncode == 0 and "INT8" not in proc.stdout, proc.stderr
    assert (tmp_path / "graph" / "AgeNet_int8.xml").is_file()
    proc = run_movidius(tmp_path, "--check", "none", INT8="0", PRIOR="0")
    assert proc.returncode == 0, proc.stderr
    assert not list((tmp_path / "graph").glob("*_int8.*"))
    assert read_metadata(tmp_path / "graph" / "AgeNet.xml").prior == {}  # PRIOR=0: the net as trained


def test_compile2movidius_without_snapshots_says_train_first(tmp_path):
    proc = run_movidius(tmp_path)
    assert_one_line_error(proc, "no AgeNet snapshot", "train first with train_AgeNet.sh")


def test_every_deployable_layer_type_has_an_openvino_builder_and_registries_refuse_duplicates():
    from agegender.layers.openvino_ops import BUILDERS, builder
    from agegender.layers.spec import REGISTRY

    assert set(BUILDERS) == {t for t, spec in REGISTRY.items() if not spec.not_deployable}
    with pytest.raises(ValueError, match="OpenVINO builder for layer type 'Permute' is already registered"):
        builder("Permute")(lambda node, inputs, blobs: inputs)
