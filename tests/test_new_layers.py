"""Each layer type added for issue 12 in a tiny prototxt with a random caffemodel: OpenCV 4's Caffe importer, our
OpenVINO build and our PyTorch engine give the same outputs (where OpenCV knows the type), and their shapes, blobs
and MACs follow Caffe's rules."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
from google.protobuf import text_format
from test_compile import forward_ir

from agegender.caffe import caffe_pb2
from agegender.deploy.compile import opencv_forward, random_caffemodel, torch_forward
from agegender.errors import AgegenderError
from agegender.layers.net import Net
from agegender.layers.openvino_ops import build_model
from agegender.layers.spec import parse_layer

CASES = {  # name: (layers after Input "data" of the shape, input shape, whether OpenCV 4 runs the type)
    "power": ('layer { name: "y" type: "Power" bottom: "data" top: "y" power_param { power: 2 scale: 0.5 shift: 1 } }',
              (2, 3, 4, 5), True),
    "power_sqrt": ('layer { name: "y" type: "Power" bottom: "data" top: "y" power_param { power: 0.5 shift: 10 } }',
                   (1, 2, 3, 3), True),
    "exp": ('layer { name: "y" type: "Exp" bottom: "data" top: "y" exp_param { base: 2 scale: 0.5 shift: -1 } }',
            (2, 3, 4, 5), True),
    "exp_e": ('layer { name: "y" type: "Exp" bottom: "data" top: "y" }', (2, 3, 4, 5), True),
    "log": ('layer { name: "p" type: "Power" bottom: "data" top: "p" power_param { shift: 4 scale: 0.5 } }\n'
            'layer { name: "y" type: "Log" bottom: "p" top: "y" }', (2, 3, 4, 5), True),
    # OpenCV 4's Log ignores log_param (it takes ln x): checked against the PyTorch engine only
    "log_base": ('layer { name: "y" type: "Log" bottom: "data" top: "y" log_param { base: 10 scale: 0.5 shift: 4 } }',
                 (2, 3, 4, 5), False),
    "absval": ('layer { name: "y" type: "AbsVal" bottom: "data" top: "y" }', (2, 3, 4, 5), True),
    "bnll": ('layer { name: "y" type: "BNLL" bottom: "data" top: "y" }', (2, 3, 4, 5), True),
    "elu": ('layer { name: "y" type: "ELU" bottom: "data" top: "y" elu_param { alpha: 0.7 } }', (2, 3, 4, 5), True),
    "relu6": ('layer { name: "s" type: "Power" bottom: "data" top: "s" power_param { scale: 8 } }\n'
              'layer { name: "y" type: "ReLU6" bottom: "s" top: "s" }', (2, 3, 4, 5), True),
    "bias": ('layer { name: "y" type: "Bias" bottom: "data" top: "y" }', (2, 3, 4, 5), False),  # not in OpenCV 4
    "bias_two_bottoms": ('layer { name: "b" type: "Pooling" bottom: "data" top: "b" pooling_param { pool: AVE '
                         'global_pooling: true } }\nlayer { name: "f" type: "Flatten" bottom: "b" top: "f" }\n'
                         'layer { name: "y" type: "Bias" bottom: "data" bottom: "f" top: "y" bias_param { axis: 0 } }',
                         (2, 3, 4, 5), False),
    "deconvolution": ('layer { name: "y" type: "Deconvolution" bottom: "data" top: "y" convolution_param { '
                      'num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }', (1, 3, 5, 6), True),
    "deconvolution_group": ('layer { name: "y" type: "Deconvolution" bottom: "data" top: "y" convolution_param { '
                            'num_output: 4 kernel_h: 2 kernel_w: 3 stride: 2 group: 2 bias_term: false } }',
                            (1, 4, 5, 6), True),
    "depthwise": ('layer { name: "y" type: "ConvolutionDepthwise" bottom: "data" top: "y" convolution_param { '
                  'num_output: 6 kernel_size: 3 pad: 1 stride: 2 } }', (1, 6, 7, 8), True),
    "crop": ('layer { name: "ref" type: "Pooling" bottom: "data" top: "ref" pooling_param { pool: MAX kernel_size: 2 '
             'stride: 2 } }\nlayer { name: "y" type: "Crop" bottom: "data" bottom: "ref" top: "y" crop_param { '
             'axis: 2 offset: 1 offset: 2 } }', (2, 3, 8, 9), True),
    "shuffle": ('layer { name: "y" type: "ShuffleChannel" bottom: "data" top: "y" shuffle_channel_param { group: 3 } }',
                (2, 6, 3, 4), True),
    "mvn": ('layer { name: "y" type: "MVN" bottom: "data" top: "y" }', (2, 3, 4, 5), True),
    "mvn_across_mean_only": ('layer { name: "y" type: "MVN" bottom: "data" top: "y" mvn_param { across_channels: true '
                             'normalize_variance: false } }', (2, 3, 4, 5), True),
    "permute": ('layer { name: "y" type: "Permute" bottom: "data" top: "y" permute_param { order: 0 order: 3 '
                'order: 1 order: 2 } }', (2, 3, 4, 5), True),
    "normalize": ('layer { name: "y" type: "Normalize" bottom: "data" top: "y" norm_param { across_spatial: false '
                  'channel_shared: false } }', (2, 3, 4, 5), True),
    "normalize_spatial": ('layer { name: "y" type: "Normalize" bottom: "data" top: "y" }', (2, 3, 4, 5), True),
    "argmax": ('layer { name: "y" type: "ArgMax" bottom: "data" top: "y" argmax_param { top_k: 3 out_max_val: true } }',
               (2, 3, 4, 5), False),
    "argmax_axis": ('layer { name: "y" type: "ArgMax" bottom: "data" top: "y" argmax_param { axis: 1 } }',
                    (2, 5, 4, 3), False),
}


def write_case(tmp_path, name):
    layers, shape, _ = CASES[name]
    dims = " ".join(f"dim: {d}" for d in shape)
    path = tmp_path / f"{name}.prototxt"
    data = f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}'
    path.write_text(f'name: "{name}"\n{data}\n' + textwrap.dedent(layers) + "\n")
    net = Net.from_file(path)
    return path, net, random_caffemodel(net, tmp_path / f"{name}.caffemodel", seed=3, gain=1.0)


@pytest.mark.parametrize("name", sorted(n for n in CASES if not n.startswith("argmax")))  # ArgMax: below
def test_new_layer_matches_opencv_and_torch(tmp_path, name):
    prototxt, net, weights = write_case(tmp_path, name)
    x = np.random.default_rng(1).standard_normal(net.blob_shapes["data"]).astype(np.float32)
    ours = forward_ir(build_model(net, net.weights_from(weights)), {"data": x}, net.outputs)
    references = []
    if CASES[name][2]:
        references.append(opencv_forward(prototxt, weights, net)({"data": x}))
    if all(n.spec.trainable for n in net.nodes):
        references.append(torch_forward(net, weights)({"data": x}))
    assert references
    for expected in references:
        for blob in net.outputs:
            assert ours[blob].shape == net.blob_shapes[blob]
            np.testing.assert_allclose(ours[blob], expected[blob].reshape(ours[blob].shape), atol=1e-4, rtol=1e-4)


def caffe_argmax(x: np.ndarray, top_k: int, out_max_val: bool) -> np.ndarray:
    """argmax_layer.cpp without an axis: each sample's top_k (index, value) pairs, largest value first."""
    flat = x.reshape(len(x), -1)
    order = np.argsort(-flat, axis=1, kind="stable")[:, :top_k]
    values = np.take_along_axis(flat, order, 1)
    return np.stack([order, values], 1) if out_max_val else order[:, None]


def test_argmax_matches_caffes_loop(tmp_path):
    _, net, weights = write_case(tmp_path, "argmax")
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32)
    got = forward_ir(build_model(net, {}), {"data": x}, ["y"])["y"]
    assert got.shape == (2, 2, 3, 1)
    np.testing.assert_allclose(got[..., 0], caffe_argmax(x, 3, True), rtol=1e-6)
    _, net, _ = write_case(tmp_path, "argmax_axis")
    x = np.random.default_rng(3).standard_normal((2, 5, 4, 3)).astype(np.float32)
    got = forward_ir(build_model(net, {}), {"data": x}, ["y"])["y"]
    np.testing.assert_array_equal(got, x.argmax(1)[:, None].astype(np.float32))


def spec(text: str):
    return parse_layer(text_format.Parse(text, caffe_pb2.LayerParameter()))


def test_shapes_blobs_and_macs_follow_caffe():
    deconv = spec('type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 2 }')
    assert deconv.top_shapes([(1, 6, 5, 6)], 1) == [(1, 4, 9, 11)]  # s(in-1) + k - 2p
    assert deconv.blob_shapes([(1, 6, 5, 6)]) == [(6, 2, 3, 3), (4,)]
    assert deconv.macs([(1, 6, 5, 6)], [(1, 4, 9, 11)]) == 6 * 5 * 6 * 2 * 9
    depthwise = spec('type: "ConvolutionDepthwise" convolution_param { num_output: 8 kernel_size: 3 }')
    assert depthwise.blob_shapes([(1, 8, 5, 5)]) == [(8, 1, 3, 3), (8,)]
    assert depthwise.macs([(1, 8, 5, 5)], [(1, 8, 3, 3)]) == 8 * 9 * 9
    crop = spec('type: "Crop" crop_param { axis: 1 offset: 1 }')
    assert crop.top_shapes([(2, 5, 6, 7), (2, 3, 4, 4)], 1) == [(2, 3, 4, 4)]
    with pytest.raises(ValueError, match="exceeds"):
        crop.top_shapes([(2, 5, 6, 7), (2, 3, 6, 4)], 1)
    assert spec('type: "ArgMax" argmax_param { top_k: 2 }').top_shapes([(3, 4, 5)], 1) == [(3, 1, 2)]
    assert spec('type: "Bias" bottom: "x"').blob_shapes([(2, 3, 4)]) == [(3,)]
    assert spec('type: "Bias" bottom: "x" bottom: "b" bias_param { axis: 0 }').blob_shapes([(2, 3), (2, 3)]) == []
    assert spec('type: "Normalize" norm_param { channel_shared: false }').blob_shapes([(1, 5, 2, 2)]) == [(5,)]
    assert spec('type: "Permute" permute_param { order: 0 order: 2 }').top_shapes([(1, 2, 3, 4)], 1) == [(1, 3, 2, 4)]
    with pytest.raises(ValueError, match="must be positive"):
        spec('type: "Log" log_param { base: 0 }')
    with pytest.raises(ValueError, match="do not split into 4 groups"):
        spec('type: "ShuffleChannel" shuffle_channel_param { group: 4 }').top_shapes([(1, 6, 2, 2)], 1)


def test_prior_box_matches_ssd_geometry_and_openvino():
    layer = ('type: "PriorBox" bottom: "f" bottom: "img" prior_box_param { min_size: 30 max_size: 60 aspect_ratio: 2 '
             'flip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 step: 8 offset: 0.5 clip: true }')
    prior = spec(layer)
    assert prior.aspect_ratios == (1.0, 2.0, 0.5) and prior.priors_per_cell == 4
    priors = prior.priors([(1, 8, 3, 4), (1, 3, 24, 32)])
    assert priors.shape == (1, 2, 3 * 4 * 4 * 4)
    first = priors[0, 0, :16].reshape(4, 4)  # cell (0, 0), centre (4, 4): min box, sqrt(30*60), ratio 2, ratio 1/2
    s2 = 30 * np.sqrt(2)
    expected = np.array([[4 - 15, 4 - 15, 4 + 15, 4 + 15], [4 - 21.2132, 4 - 21.2132, 4 + 21.2132, 4 + 21.2132],
                         [4 - s2 / 2, 4 - 15 / np.sqrt(2), 4 + s2 / 2, 4 + 15 / np.sqrt(2)],
                         [4 - 15 / np.sqrt(2), 4 - s2 / 2, 4 + 15 / np.sqrt(2), 4 + s2 / 2]]) / [32, 24, 32, 24]
    np.testing.assert_allclose(first, expected.clip(0, 1), atol=1e-5)
    np.testing.assert_allclose(priors[0, 1, :8], [0.1, 0.1, 0.2, 0.2] * 2)


def test_a_layer_that_cannot_run_in_place_is_refused():
    proto = text_format.Parse('layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
                              'layer { name: "abs" type: "AbsVal" bottom: "x" top: "x" }', caffe_pb2.NetParameter())
    with pytest.raises(AgegenderError, match="layer 'abs' \\(AbsVal\\): cannot compute in place"):
        Net.from_proto(proto)


def test_new_layers_build_from_opset1_operations_the_myriad_plugin_runs(tmp_path):
    from agegender.deploy.compile import MYRIAD_OPS, check_ops

    for name in CASES:
        _, net, weights = write_case(tmp_path, name)
        check_ops(build_model(net, net.weights_from(weights)), MYRIAD_OPS, "OpenVINO 2022.3's MYRIAD plugin")
