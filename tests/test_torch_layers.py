"""The torch backend against Caffe: OpenCV's outputs on real Caffe models, numpy ports of Caffe's own loops,
numerical gradients for every layer type, and caffemodels that OpenCV reads back."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from google.protobuf import text_format

from agegender.caffe import caffe_pb2, write_caffemodel, write_prototxt
from agegender.layers.net import Net, load_deploy
from agegender.layers.spec import REGISTRY, SUPPORTED_TYPES
from agegender.layers.torch_net import TorchNet
from agegender.layers.torch_ops import BUILDERS

FLT_MAX = float(np.finfo(np.float32).max)
ROOT_PROTOTXT = __import__("pathlib").Path(__file__).resolve().parents[1] / "prototxt"


def layer_net(layers: str, *shapes, phase: str = "TEST") -> Net:
    """A net of Input layers a, b, c, ... with ``shapes``, followed by ``layers`` (prototxt text)."""
    inputs = "".join(
        f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {" ".join(f"dim: {d}" for d in shape)} }} }} }}\n'
        for name, shape in zip("abcd", shapes))
    proto = text_format.Parse(f'name: "t"\n{inputs}{layers}', caffe_pb2.NetParameter())
    return Net.from_proto(proto, phase)


def run_layer(layers: str, *arrays: np.ndarray, phase: str = "TEST", weights=None) -> dict[str, np.ndarray]:
    net = TorchNet(layer_net(layers, *(a.shape for a in arrays), phase=phase), weights)
    with torch.no_grad():
        out = net({name: torch.from_numpy(np.asarray(a, np.float32)) for name, a in zip("abcd", arrays)})
    return {k: v.numpy() for k, v in out.items()}


# ---------------------------------------------------------------- real Caffe models vs OpenCV

@pytest.mark.parametrize("prototxt,caffemodel,reference", [
    ("lenet/deploy.prototxt", "lenet/lenet_iter_10000.caffemodel", "lenet/reference_opencv.npz"),
    ("mtcnn/det1.prototxt", "mtcnn/det1.caffemodel", "mtcnn/det1_reference_opencv.npz"),
    ("mtcnn/det4.prototxt", "mtcnn/det4.caffemodel", "mtcnn/det4_reference_opencv.npz"),
])
def test_forward_matches_opencv_on_real_caffe_models(fixtures, prototxt, caffemodel, reference):
    net, weights = load_deploy(fixtures / prototxt, fixtures / caffemodel)
    expected = np.load(fixtures / reference)
    torch_net = TorchNet(net, weights).eval()
    with torch.no_grad():
        outputs = torch_net({net.inputs[0]: torch.from_numpy(expected["input"])})
    assert set(outputs) == set(net.outputs)
    for name, value in outputs.items():
        reference_value = expected["output" if "output" in expected else name]
        assert value.shape == reference_value.shape, name
        assert np.abs(value.numpy() - reference_value).max() <= 1e-4, name


# ---------------------------------------------------------------- numpy ports of Caffe's loops

def caffe_pooled_size(size, k, s, p):
    pooled = math.ceil((size + 2 * p - k) / s) + 1
    return pooled - 1 if p and (pooled - 1) * s >= size + p else pooled


def caffe_pool(x, method, k, s, p):
    """pooling_layer.cpp Forward_cpu, square windows."""
    n, c, h, w = x.shape
    ph, pw = caffe_pooled_size(h, k, s, p), caffe_pooled_size(w, k, s, p)
    y = np.empty((n, c, ph, pw), np.float64)
    for i in range(ph):
        for j in range(pw):
            hs, ws = i * s - p, j * s - p
            if method == "MAX":
                he, we, hs, ws = min(hs + k, h), min(ws + k, w), max(hs, 0), max(ws, 0)
                window = x[:, :, hs:he, ws:we]
                y[:, :, i, j] = window.max(axis=(2, 3)) if window.size else -FLT_MAX
            else:
                he, we = min(hs + k, h + p), min(ws + k, w + p)
                pool_size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / pool_size
    return y


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("size,k,s,p", [
    (56, 3, 2, 0),  # AgeNet pool1: rounds up, last window clipped
    (13, 3, 2, 0), (7, 3, 2, 1), (5, 2, 2, 1), (6, 3, 2, 0), (8, 2, 2, 0), (9, 3, 3, 1),
    (6, 3, 2, 2),  # pad > kernel/2: torch refuses, the explicit path pads to Caffe's geometry
    (10, 5, 3, 3),
])
def test_pooling_matches_caffe_loops(method, size, k, s, p):
    x = np.random.default_rng(size * 100 + k * 10 + p).normal(size=(2, 3, size, size + 1)).astype(np.float32)
    layer = f'layer {{ name: "p" type: "Pooling" bottom: "a" top: "y" pooling_param {{ pool: {method} kernel_size: {k} stride: {s} pad: {p} }} }}'
    y = run_layer(layer, x)["y"]
    expected = caffe_pool(x.astype(np.float64), method, k, s, p)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_global_pooling_averages_the_whole_map():
    x = np.random.default_rng(1).normal(size=(2, 4, 5, 7)).astype(np.float32)
    layer = 'layer { name: "p" type: "Pooling" bottom: "a" top: "y" pooling_param { pool: AVE global_pooling: true } }'
    np.testing.assert_allclose(run_layer(layer, x)["y"][:, :, 0, 0], x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)


def caffe_lrn(x, size, alpha, beta, k, across):
    """lrn_layer.cpp: across channels k + alpha/size * window sum of squares; within channel via an AVE
    pooling of the squares (padded, divisor size^2) and a Power layer 1 + alpha * pooled."""
    half = (size - 1) // 2
    if across:
        padded = np.pad(x * x, ((0, 0), (half, half), (0, 0), (0, 0)))
        sums = sum(padded[:, i:i + x.shape[1]] for i in range(size))
        return x * (k + alpha / size * sums) ** -beta
    return x * (1 + alpha * caffe_pool(x * x, "AVE", size, 1, half)) ** -beta


@pytest.mark.parametrize("region,size,alpha,beta,k", [
    ("ACROSS_CHANNELS", 5, 1e-4, 0.75, 1.0),  # AgeNet's norm1/norm2
    ("ACROSS_CHANNELS", 3, 0.5, 0.6, 2.0),
    ("WITHIN_CHANNEL", 3, 0.3, 0.75, 1.0),
    ("WITHIN_CHANNEL", 5, 0.1, 0.5, 3.0),  # Caffe ignores k within a channel
])
def test_lrn_matches_caffe(region, size, alpha, beta, k):
    x = np.random.default_rng(size).normal(scale=3.0, size=(2, 7, 6, 5))
    layer = (f'layer {{ name: "n" type: "LRN" bottom: "a" top: "y" lrn_param {{ local_size: {size} alpha: {alpha} '
             f'beta: {beta} k: {k} norm_region: {region} }} }}')
    expected = caffe_lrn(x, size, np.float32(alpha), np.float32(beta), np.float32(k), region == "ACROSS_CHANNELS")
    np.testing.assert_allclose(run_layer(layer, x.astype(np.float32))["y"], expected, rtol=2e-5, atol=1e-6)


def test_inner_product_flattens_from_its_axis_and_honours_transpose():
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 5)).astype(np.float32)
    w = np.random.default_rng(3).normal(size=(6, 60)).astype(np.float32)
    b = np.arange(6, dtype=np.float32)
    layer = 'layer { name: "ip" type: "InnerProduct" bottom: "a" top: "y" inner_product_param { num_output: 6 } }'
    np.testing.assert_allclose(run_layer(layer, x, weights={"ip": [w, b]})["y"], x.reshape(2, -1) @ w.T + b, rtol=1e-5)
    axis2 = 'layer { name: "ip" type: "InnerProduct" bottom: "a" top: "y" inner_product_param { num_output: 6 axis: 2 transpose: true } }'
    w2 = np.random.default_rng(4).normal(size=(20, 6)).astype(np.float32)
    y = run_layer(axis2, x, weights={"ip": [w2, b]})["y"]
    np.testing.assert_allclose(y, x.reshape(2, 3, 20) @ w2 + b, rtol=1e-5, atol=1e-5)


def test_dropout_scales_kept_values_in_training_and_is_identity_in_test():
    x = np.ones((4, 1000), np.float32)
    layer = 'layer { name: "d" type: "Dropout" bottom: "a" top: "y" dropout_param { dropout_ratio: 0.3 } }'
    assert np.array_equal(run_layer(layer, x, phase="TEST")["y"], x)
    y = run_layer(layer, x, phase="TRAIN")["y"]
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.03


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("loss_param,expected_divisor", [
    ("", "valid"), ("normalization: FULL", "all"), ("normalization: BATCH_SIZE", "outer"),
    ("normalization: NONE", "none"), ("ignore_label: 2", "valid"), ("ignore_label: 2 normalize: false", "outer"),
])
def test_softmax_with_loss_normalisation_and_ignore_label(loss_param, expected_divisor):
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(3, 4, 2, 2)).astype(np.float32)  # outer 3, inner 4 positions
    labels = np.array([0, 1, 2, 3, 2, 2, 1, 0, 3, 3, 2, 1], np.float32).reshape(3, 1, 2, 2)
    layer = (f'layer {{ name: "l" type: "SoftmaxWithLoss" bottom: "a" bottom: "b" top: "loss" top: "prob" '
             f'loss_param {{ {loss_param} }} }}')
    out = run_layer(layer, scores, labels)
    prob = softmax(scores.astype(np.float64))
    flat_prob = prob.transpose(0, 2, 3, 1).reshape(-1, 4)
    flat_labels = labels.reshape(-1).astype(int)
    keep = flat_labels != 2 if "ignore_label" in loss_param else np.ones(12, bool)
    total = -np.log(flat_prob[np.arange(12), flat_labels])[keep].sum()
    divisor = {"valid": keep.sum(), "all": 12, "outer": 3, "none": 1}[expected_divisor]
    np.testing.assert_allclose(out["loss"], total / divisor, rtol=1e-5)
    np.testing.assert_allclose(out["prob"], prob, rtol=1e-5, atol=1e-7)


def test_softmax_with_loss_clamps_the_probability_at_flt_min_like_caffe():
    scores = np.array([[0.0, 200.0]], np.float32)  # p(label 0) underflows to 0
    layer = 'layer { name: "l" type: "SoftmaxWithLoss" bottom: "a" bottom: "b" top: "loss" }'
    assert run_layer(layer, scores, np.zeros(1, np.float32))["loss"] == pytest.approx(-math.log(np.finfo(np.float32).tiny), rel=1e-6)


def test_accuracy_top_k_counts_ties_against_the_true_class_and_reports_per_class():
    scores = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.2, 0.3, 0.7], [0.6, 0.3, 0.1]], np.float32)
    labels = np.array([1, 0, 1, 0], np.float32)
    top1 = 'layer { name: "acc" type: "Accuracy" bottom: "a" bottom: "b" top: "acc" top: "per_class" }'
    out = run_layer(top1, scores, labels)
    # sample 1 ties class 0 with class 1 and loses to class 2: wrong at top-1 and top-2 (3 classes >= it)
    assert out["acc"] == pytest.approx(0.5)
    np.testing.assert_allclose(out["per_class"], [0.5, 0.5, 0.0])
    top2 = 'layer { name: "acc" type: "Accuracy" bottom: "a" bottom: "b" top: "acc" accuracy_param { top_k: 2 } }'
    assert run_layer(top2, scores, labels)["acc"] == pytest.approx(0.75)


def test_eltwise_max_breaks_ties_as_caffe():
    a = torch.tensor([[1.0, 2.0]], requires_grad=True)
    b = torch.tensor([[1.0, 3.0]], requires_grad=True)
    net = TorchNet(layer_net('layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "y" eltwise_param { operation: MAX } }',
                             (1, 2), (1, 2)))
    net({"a": a, "b": b})["y"].sum().backward()
    assert a.grad.tolist() == [[0.0, 0.0]] and b.grad.tolist() == [[1.0, 1.0]]  # Caffe: a tie goes to bottom 1


# ---------------------------------------------------------------- gradients

GRADIENT_CASES = {
    "conv": ('layer { name: "c" type: "Convolution" bottom: "a" top: "y" convolution_param { num_output: 4 kernel_size: 3 '
             'stride: 2 pad: 1 group: 2 dilation: 1 } }', [(2, 4, 5, 5)], "TEST"),
    "conv_dilated": ('layer { name: "c" type: "Convolution" bottom: "a" top: "y" convolution_param { num_output: 2 kernel_h: 2 '
                     'kernel_w: 3 dilation: 2 bias_term: false } }', [(1, 2, 6, 7)], "TEST"),
    "max_pool": ('layer { name: "p" type: "Pooling" bottom: "a" top: "y" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }',
                 [(2, 2, 6, 6)], "TEST"),
    "max_pool_explicit": ('layer { name: "p" type: "Pooling" bottom: "a" top: "y" pooling_param { pool: MAX kernel_size: 3 '
                          'stride: 2 pad: 2 } }', [(1, 2, 6, 6)], "TEST"),
    "ave_pool": ('layer { name: "p" type: "Pooling" bottom: "a" top: "y" pooling_param { pool: AVE kernel_size: 3 stride: 2 '
                 'pad: 1 } }', [(1, 2, 7, 6)], "TEST"),
    "ave_pool_explicit": ('layer { name: "p" type: "Pooling" bottom: "a" top: "y" pooling_param { pool: AVE kernel_size: 3 '
                          'stride: 2 pad: 2 } }', [(1, 2, 6, 6)], "TEST"),
    "lrn_across": ('layer { name: "n" type: "LRN" bottom: "a" top: "y" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 } }',
                   [(2, 5, 3, 3)], "TEST"),
    "lrn_within": ('layer { name: "n" type: "LRN" bottom: "a" top: "y" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 '
                   'norm_region: WITHIN_CHANNEL } }', [(1, 2, 4, 4)], "TEST"),
    "relu": ('layer { name: "r" type: "ReLU" bottom: "a" top: "a" }', [(2, 3, 4)], "TEST"),
    "leaky_relu": ('layer { name: "r" type: "ReLU" bottom: "a" top: "y" relu_param { negative_slope: 0.1 } }', [(2, 3, 4)], "TEST"),
    "prelu": ('layer { name: "r" type: "PReLU" bottom: "a" top: "y" }', [(2, 3, 2, 2)], "TEST"),
    "prelu_shared": ('layer { name: "r" type: "PReLU" bottom: "a" top: "y" prelu_param { channel_shared: true } }',
                     [(2, 3, 2, 2)], "TEST"),
    "sigmoid": ('layer { name: "s" type: "Sigmoid" bottom: "a" top: "y" }', [(3, 4)], "TEST"),
    "tanh": ('layer { name: "s" type: "TanH" bottom: "a" top: "y" }', [(3, 4)], "TEST"),
    "dropout": ('layer { name: "d" type: "Dropout" bottom: "a" top: "y" dropout_param { dropout_ratio: 0.4 } }',
                [(3, 8)], "TRAIN"),
    "inner_product": ('layer { name: "ip" type: "InnerProduct" bottom: "a" top: "y" inner_product_param { num_output: 3 } }',
                      [(2, 2, 2, 2)], "TEST"),
    "inner_product_t": ('layer { name: "ip" type: "InnerProduct" bottom: "a" top: "y" inner_product_param { num_output: 3 '
                        'transpose: true axis: 2 } }', [(2, 2, 4)], "TEST"),
    "softmax": ('layer { name: "s" type: "Softmax" bottom: "a" top: "y" }', [(2, 4, 2)], "TEST"),
    "softmax_loss": ('layer { name: "l" type: "SoftmaxWithLoss" bottom: "a" bottom: "b" top: "y" }', [(3, 4), "labels4"], "TEST"),
    "softmax_loss_ignore": ('layer { name: "l" type: "SoftmaxWithLoss" bottom: "a" bottom: "b" top: "y" loss_weight: 2 '
                            'loss_param { ignore_label: 1 normalization: FULL } }', [(3, 4), "labels4"], "TEST"),
    "concat": ('layer { name: "c" type: "Concat" bottom: "a" bottom: "b" top: "y" }', [(2, 2, 3), (2, 1, 3)], "TEST"),
    "slice": ('layer { name: "s" type: "Slice" bottom: "a" top: "y" top: "z" slice_param { slice_point: 1 } }',
              [(2, 3, 2)], "TEST"),
    "split": ('layer { name: "s" type: "Split" bottom: "a" top: "y" top: "z" }\n'
              'layer { name: "e" type: "Eltwise" bottom: "y" bottom: "z" top: "w" eltwise_param { operation: PROD } }',
              [(2, 3)], "TEST"),
    "eltwise_sum": ('layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "y" eltwise_param { operation: SUM '
                    'coeff: 0.5 coeff: -2 } }', [(2, 3), (2, 3)], "TEST"),
    "eltwise_max": ('layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "y" eltwise_param { '
                    'operation: MAX } }', [(2, 3), (2, 3), (2, 3)], "TEST"),
    "flatten": ('layer { name: "f" type: "Flatten" bottom: "a" top: "y" }\n'
                'layer { name: "t" type: "TanH" bottom: "y" top: "z" }', [(2, 3, 2)], "TEST"),
    "reshape": ('layer { name: "r" type: "Reshape" bottom: "a" top: "y" reshape_param { shape { dim: 0 dim: -1 dim: 2 } } }\n'
                'layer { name: "t" type: "Sigmoid" bottom: "y" top: "z" }', [(2, 3, 4)], "TEST"),
    "batch_norm_train": ('layer { name: "bn" type: "BatchNorm" bottom: "a" top: "y" }', [(4, 3, 2, 2)], "TRAIN"),
    "batch_norm_global": ('layer { name: "bn" type: "BatchNorm" bottom: "a" top: "y" }', [(2, 3, 2, 2)], "TEST"),
    "scale": ('layer { name: "s" type: "Scale" bottom: "a" top: "y" scale_param { bias_term: true } }', [(2, 3, 2)], "TEST"),
    "permute": ('layer { name: "p" type: "Permute" bottom: "a" top: "y" permute_param { order: 0 order: 2 order: 3 } }',
                [(2, 3, 2, 4)], "TEST"),
    "normalize": ('layer { name: "n" type: "Normalize" bottom: "a" top: "y" norm_param { across_spatial: false '
                  'channel_shared: false } }', [(2, 3, 2, 2)], "TEST"),
    "normalize_spatial": ('layer { name: "n" type: "Normalize" bottom: "a" top: "y" }', [(2, 3, 2, 2)], "TEST"),
    "power": ('layer { name: "p" type: "Power" bottom: "a" top: "y" power_param { power: 2 scale: 0.5 shift: 1 } }',
              [(2, 3)], "TEST"),
    "exp": ('layer { name: "p" type: "Exp" bottom: "a" top: "y" exp_param { base: 2 scale: 0.5 shift: 1 } }',
            [(2, 3)], "TEST"),
    "log": ('layer { name: "p" type: "Log" bottom: "a" top: "y" log_param { base: 3 scale: 0.5 shift: 6 } }',
            [(2, 3)], "TEST"),
    "absval": ('layer { name: "p" type: "AbsVal" bottom: "a" top: "y" }', [(2, 3)], "TEST"),
    "bnll": ('layer { name: "p" type: "BNLL" bottom: "a" top: "y" }', [(2, 3)], "TEST"),
    "elu": ('layer { name: "p" type: "ELU" bottom: "a" top: "y" elu_param { alpha: 0.5 } }', [(2, 3)], "TEST"),
    "relu6": ('layer { name: "p" type: "ReLU6" bottom: "a" top: "a" }', [(2, 3)], "TEST"),
    "bias": ('layer { name: "b" type: "Bias" bottom: "a" top: "y" }', [(2, 3, 2)], "TEST"),
    "bias_two_bottoms": ('layer { name: "b" type: "Bias" bottom: "a" bottom: "b" top: "y" bias_param { axis: 0 } }',
                         [(2, 3, 2), (2, 3)], "TEST"),
    "deconvolution": ('layer { name: "d" type: "Deconvolution" bottom: "a" top: "y" convolution_param { num_output: 4 '
                      'kernel_size: 3 stride: 2 pad: 1 group: 2 } }', [(1, 2, 3, 3)], "TEST"),
    "depthwise": ('layer { name: "d" type: "ConvolutionDepthwise" bottom: "a" top: "y" convolution_param { '
                  'num_output: 3 kernel_size: 3 pad: 1 } }', [(1, 3, 4, 4)], "TEST"),
    "crop": ('layer { name: "c" type: "Crop" bottom: "a" bottom: "b" top: "y" crop_param { offset: 1 } }',
             [(1, 2, 4, 5), (1, 2, 2, 3)], "TEST"),
    "shuffle": ('layer { name: "s" type: "ShuffleChannel" bottom: "a" top: "y" shuffle_channel_param { group: 2 } }',
                [(1, 4, 2, 2)], "TEST"),
    "mvn": ('layer { name: "m" type: "MVN" bottom: "a" top: "y" }', [(2, 2, 3, 3)], "TEST"),
    "mvn_across": ('layer { name: "m" type: "MVN" bottom: "a" top: "y" mvn_param { across_channels: true } }',
                   [(2, 2, 2, 3)], "TEST"),
    "scale_two_bottoms": ('layer { name: "s" type: "Scale" bottom: "a" bottom: "b" top: "y" scale_param { axis: 0 } }',
                          [(2, 3, 2), (2, 3)], "TEST"),
}


def test_every_trainable_layer_type_has_a_torch_module_and_a_gradient_case():
    assert set(BUILDERS) == {t for t in SUPPORTED_TYPES if REGISTRY[t].trainable and not REGISTRY[t].fed}
    covered = {n.type for case in GRADIENT_CASES.values()
               for n in layer_net(case[0], *[(3,) if s == "labels4" else s for s in case[1]], phase=case[2]).nodes}
    assert set(BUILDERS) - {"Silence", "Accuracy", "PriorBox"} <= covered


def test_registries_refuse_a_second_registration_of_a_type():
    from agegender.layers.spec import LayerSpec, register
    from agegender.layers.torch_ops import builds

    with pytest.raises(ValueError, match="layer spec for layer type 'ReLU' is already registered"):
        register("ReLU")(type("Again", (LayerSpec,), {}))
    with pytest.raises(ValueError, match="PyTorch module for layer type 'Permute' is already registered"):
        builds("Permute")(type("Again", (), {}))


@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
def test_gradients_match_numerical_gradients(case):
    layers, shapes, phase = GRADIENT_CASES[case]
    shapes = [(3,) if s == "labels4" else s for s in shapes]
    net = TorchNet(layer_net(layers, *shapes, phase=phase)).double()
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for node, layer in zip(net.nodes, net.layers):
            for blob in layer.blobs:
                blob.copy_(torch.rand(blob.shape, generator=rng, dtype=torch.float64) + 0.5 if node.type == "BatchNorm"
                           else torch.randn(blob.shape, generator=rng, dtype=torch.float64))
    inputs, constants = {}, {}
    for name, shape, raw in zip("abcd", shapes, GRADIENT_CASES[case][1]):
        if raw == "labels4":
            constants[name] = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
        else:
            inputs[name] = torch.randn(shape, generator=rng, dtype=torch.float64, requires_grad=True)
    params = {k: v for k, v in net.named_parameters() if v.requires_grad}

    def function(*tensors):
        torch.manual_seed(0)  # the same dropout mask at every evaluation
        feed = dict(zip(inputs, tensors[:len(inputs)]), **constants)
        outputs = torch.func.functional_call(net, dict(zip(params, tensors[len(inputs):])), (feed,))
        return tuple(outputs[k] for k in sorted(outputs))

    assert torch.autograd.gradcheck(function, (*inputs.values(), *params.values()), eps=1e-6, atol=1e-5, rtol=1e-4,
                                     fast_mode=True)


# ---------------------------------------------------------------- nets and caffemodels

ZOO = """
layer { name: "conv" type: "Convolution" bottom: "a" top: "conv" convolution_param { num_output: 6 kernel_size: 3 pad: 1
  weight_filler { type: "xavier" } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" batch_norm_param { use_global_stats: true } }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true
  filler { type: "uniform" min: 0.5 max: 1.5 } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "prelu" type: "PReLU" bottom: "conv" top: "conv" prelu_param { filler { type: "constant" value: 0.2 } } }
layer { name: "split" type: "Split" bottom: "conv" top: "left" top: "right" }
layer { name: "ave" type: "Pooling" bottom: "left" top: "ave" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "max" type: "Pooling" bottom: "right" top: "max" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "lrn" type: "LRN" bottom: "max" top: "lrn" lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 } }
layer { name: "sum" type: "Eltwise" bottom: "ave" bottom: "lrn" top: "sum" eltwise_param { coeff: 1 coeff: 0.5 } }
layer { name: "cat" type: "Concat" bottom: "sum" bottom: "ave" top: "cat" }
layer { name: "slice" type: "Slice" bottom: "cat" top: "s1" top: "s2" slice_param { slice_point: 4 } }
layer { name: "sig" type: "Sigmoid" bottom: "s1" top: "s1" }
layer { name: "tanh" type: "TanH" bottom: "s2" top: "s2" }
layer { name: "prod" type: "Eltwise" bottom: "s1" bottom: "s1" top: "prod" eltwise_param { operation: PROD } }
layer { name: "flat" type: "Flatten" bottom: "prod" top: "flat" }
layer { name: "fc" type: "InnerProduct" bottom: "flat" top: "fc" inner_product_param { num_output: 5
  weight_filler { type: "msra" } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "fc" top: "fc" relu_param { negative_slope: 0.1 } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
layer { name: "reshape" type: "Reshape" bottom: "s2" top: "r" reshape_param { shape { dim: 0 dim: -1 } } }
"""


def opencv_outputs(prototxt, caffemodel, inputs: np.ndarray, layers: dict[str, str]) -> dict[str, np.ndarray]:
    """OpenCV's outputs, by top name, of ``layers`` (top -> the layer producing it)."""
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(inputs)
    return dict(zip(layers, net.forward(list(layers.values()))))


def test_caffemodel_from_fillers_loads_in_opencv_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    net = layer_net(ZOO, (2, 3, 9, 9))
    torch_net = TorchNet(net)
    with torch.no_grad():  # statistics that make the BatchNorm do something
        bn = torch_net.layer("bn").blobs
        bn[0].normal_(0, 0.5)
        bn[1].uniform_(0.5, 2.0)
        bn[2].fill_(2.0)
    write_prototxt(text_format.Parse(f'name: "zoo"\ninput: "a"\ninput_dim: 2 input_dim: 3 input_dim: 9 input_dim: 9\n{ZOO}',
                                     caffe_pb2.NetParameter()), tmp_path / "zoo.prototxt")
    write_caffemodel(torch_net.to_caffemodel(), tmp_path / "zoo.caffemodel")
    x = np.random.default_rng(6).normal(size=(2, 3, 9, 9)).astype(np.float32)
    with torch.no_grad():
        ours = torch_net({"a": torch.from_numpy(x)})
    assert set(ours) == {"prob", "r"}
    theirs = opencv_outputs(tmp_path / "zoo.prototxt", tmp_path / "zoo.caffemodel", x, {"prob": "prob", "r": "reshape"})
    for name in ours:
        np.testing.assert_allclose(ours[name].numpy(), theirs[name].reshape(ours[name].shape), atol=1e-4, err_msg=name)


@pytest.mark.parametrize("net_name", ["AgeNet", "GenderNet"])
def test_our_deploy_nets_match_opencv_and_end_in_prob(tmp_path, net_name):
    deploy = ROOT_PROTOTXT / f"{net_name}_deploy.prototxt"
    net = Net.from_file(deploy, "TEST")
    assert net.inputs == ["data"] and net.blob_shapes["data"] == (1, 3, 227, 227) and net.outputs == ["prob"]
    assert net.blob_shapes["prob"] == (1, 9 if net_name == "AgeNet" else 2)
    torch.manual_seed(1)
    torch_net = TorchNet(net).eval()
    with torch.no_grad():
        classifier = [n.name for n in net.nodes if n.type == "InnerProduct"][-1]
        torch_net.layer(classifier).blobs[0].mul_(30)  # fillers alone give near-uniform probabilities
    write_caffemodel(torch_net.to_caffemodel(), tmp_path / "net.caffemodel")
    assert net.weights_from(tmp_path / "net.caffemodel").keys() == {n.name for n in net.nodes if n.blob_shapes}
    x = np.random.default_rng(7).normal(scale=60, size=(1, 3, 227, 227)).astype(np.float32)
    with torch.no_grad():
        ours = torch_net({"data": torch.from_numpy(x)})["prob"].numpy()
    theirs = opencv_outputs(deploy, tmp_path / "net.caffemodel", x, {"prob": "prob"})["prob"]
    assert np.abs(ours - theirs).max() <= 1e-4
    assert ours.max() > 1.5 / ours.shape[1]  # a real, non-uniform comparison


def test_train_nets_share_layers_with_test_and_to_caffemodel_writes_every_layer():
    train = Net.from_file(ROOT_PROTOTXT / "AgeNet_deploy.prototxt", "TEST")
    a, b = TorchNet(train), TorchNet(train)
    b.share_blobs_from(a)
    assert b.layer("conv1").blobs[0] is a.layer("conv1").blobs[0]
    proto = a.to_caffemodel()
    assert [layer.name for layer in proto.layer] == [n.name for n in train.nodes]
    conv1 = next(layer for layer in proto.layer if layer.name == "conv1")
    assert [list(bl.shape.dim) for bl in conv1.blobs] == [[96, 3, 7, 7], [96]]
