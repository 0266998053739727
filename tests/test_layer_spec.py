"""Layer specs: Caffe's shape rules, parameter blobs and fillers, on synthetic layers."""
from __future__ import annotations

import pytest
from google.protobuf import text_format

from agegender.caffe import caffe_pb2
from agegender.layers.spec import parse_layer


def spec(text: str):
    return parse_layer(text_format.Parse(text, caffe_pb2.LayerParameter()))


@pytest.mark.parametrize("size,kernel,stride,pad,expected", [
    (14, 3, 2, 0, 7),   # ceil((14-3)/2)+1 = 7 (floor would give 6)
    (13, 3, 2, 0, 6),
    (5, 3, 2, 1, 3),    # ceil((5+2-3)/2)+1 = 3; the last window starts inside the image: kept
    (4, 2, 2, 1, 3),    # ceil((4+2-2)/2)+1 = 3, (3-1)*2 = 4 < 4+1: kept
    (3, 2, 2, 1, 2),    # ceil((3+2-2)/2)+1 = 3, but (3-1)*2 = 4 >= 3+1: Caffe clips it to 2
])
def test_pooling_rounds_up_and_clips_like_caffe(size, kernel, stride, pad, expected):
    pool = spec(f'type: "Pooling" pooling_param {{ pool: MAX kernel_size: {kernel} stride: {stride} pad: {pad} }}')
    assert pool.top_shapes([(1, 4, size, size)], 1) == [(1, 4, expected, expected)]


def test_convolution_blobs_group_and_macs():
    conv = spec('type: "Convolution" convolution_param { num_output: 8 kernel_size: 3 group: 2 pad: 1 }')
    assert conv.top_shapes([(2, 4, 5, 5)], 1) == [(2, 8, 5, 5)]
    assert conv.blob_shapes([(2, 4, 5, 5)]) == [(8, 2, 3, 3), (8,)]
    assert conv.macs([(2, 4, 5, 5)], [(2, 8, 5, 5)]) == 2 * 8 * 5 * 5 * 2 * 9


def test_scale_with_a_second_bottom_learns_only_its_bias():
    two = spec('type: "Scale" bottom: "x" bottom: "s" scale_param { axis: 1 bias_term: true }')
    assert two.blob_shapes([(2, 3, 4, 4), (3, 4)]) == [(3, 4)]
    assert [f.type for f in two.fillers()] == ["constant"] and two.fillers()[0].value == 0
    one = spec('type: "Scale" bottom: "x" scale_param { bias_term: true }')
    assert one.blob_shapes([(2, 3, 4, 4)]) == [(3,), (3,)]
    assert [f.value for f in one.fillers()] == [1.0, 0.0]


def test_reshape_zero_and_minus_one():
    reshape = spec('type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }')
    assert reshape.top_shapes([(2, 3, 4, 5)], 1) == [(2, 60)]
    with pytest.raises(ValueError, match="cannot reshape"):
        spec('type: "Reshape" reshape_param { shape { dim: 7 dim: -1 } }').top_shapes([(2, 3, 4, 5)], 1)


def test_inner_product_flattens_from_axis():
    ip = spec('type: "InnerProduct" inner_product_param { num_output: 5 }')
    assert ip.top_shapes([(2, 3, 4, 4)], 1) == [(2, 5)] and ip.blob_shapes([(2, 3, 4, 4)]) == [(5, 48), (5,)]


def test_bad_parameters_are_value_errors():
    with pytest.raises(ValueError, match="kernel_size"):
        spec('type: "Convolution" convolution_param { num_output: 4 }')
    with pytest.raises(ValueError, match="local_size"):
        spec('type: "LRN" lrn_param { local_size: 4 }')
    with pytest.raises(KeyError):
        spec('type: "Foo"')


@pytest.mark.parametrize("param,message", [
    ('pooling_param { pool: MAX kernel_size: 3 stride_h: 2 }', "give both stride_h and stride_w"),
    ('pooling_param { pool: MAX kernel_h: 3 }', "give both kernel_h and kernel_w"),
    ('pooling_param { pool: AVE global_pooling: true kernel_size: 3 }', "global_pooling takes no kernel size"),
    ('pooling_param { pool: AVE global_pooling: true stride: 2 }', "stride 1"),
])
def test_pooling_refuses_what_caffe_refuses(param, message):
    with pytest.raises(ValueError, match=message):
        spec(f'type: "Pooling" {param}')


def test_convolution_takes_a_lone_pad_h_but_not_a_lone_stride_h_as_caffe():
    conv = spec('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 pad_h: 1 }')
    assert conv.pad == (1, 0) and conv.top_shapes([(1, 1, 5, 5)], 1) == [(1, 2, 5, 3)]
    with pytest.raises(ValueError, match="give both stride_h and stride_w"):
        spec('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 stride_h: 2 }')


def test_data_layer_needs_a_batch_size_as_in_caffe():
    with pytest.raises(ValueError, match="batch_size > 0"):
        spec('type: "Data" data_param { source: "db" backend: LMDB }')
    assert spec('type: "Data" data_param { source: "db" batch_size: 5 backend: LMDB }').batch_size == 5


def test_loss_weights_are_none_or_one_per_top_as_in_caffe():
    from agegender.errors import AgegenderError
    from agegender.layers.net import Net

    def net(loss_weights: str) -> Net:
        text = ('layer { name: "in" type: "Input" top: "x" top: "t" input_param { shape { dim: 2 dim: 3 } '
                'shape { dim: 2 } } } '
                f'layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "t" top: "l" top: "p" '
                f'{loss_weights} }}')
        return Net.from_proto(text_format.Parse(text, caffe_pb2.NetParameter()))

    assert net("").nodes[-1].loss_weights == [1.0, 0.0]
    assert net("loss_weight: 2 loss_weight: 0").nodes[-1].loss_weights == [2.0, 0.0]
    with pytest.raises(AgegenderError, match="1 loss_weight\\(s\\) for 2 top\\(s\\)"):
        net("loss_weight: 2")


def test_a_prototxt_state_stage_selects_layers_as_in_caffe():
    from agegender.layers.net import Net
    proto = text_format.Parse('''
        name: "staged" state { stage: "deploy" }
        layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 1 dim: 3 } } }
        layer { name: "prob" type: "Softmax" bottom: "a" top: "prob" include { stage: "deploy" } }
        layer { name: "relu" type: "ReLU" bottom: "a" top: "relu" exclude { stage: "deploy" } }
    ''', caffe_pb2.NetParameter())
    assert [n.name for n in Net.from_proto(proto).nodes] == ["a", "prob"]
    proto.ClearField("state")
    assert [n.name for n in Net.from_proto(proto).nodes] == ["a", "relu"]
    assert [n.name for n in Net.from_proto(proto, stages=["deploy"]).nodes] == ["a", "prob"]
