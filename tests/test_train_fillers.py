"""Caffe's fillers (initial weights) and the per-blob learning-rate multipliers the solver sees."""
from __future__ import annotations

import math

import pytest
import torch
from google.protobuf import text_format

from agegender.caffe import caffe_pb2, read_net
from agegender.errors import AgegenderError
from agegender.layers.fillers import fill
from agegender.layers.net import Net
from agegender.layers.torch_net import TorchNet


def filled(shape, **fields) -> torch.Tensor:
    torch.manual_seed(0)
    blob = torch.empty(shape)
    fill(blob, caffe_pb2.FillerParameter(**fields))
    return blob


def test_constant_uniform_and_gaussian():
    assert torch.all(filled((3, 4), type="constant", value=0.25) == 0.25)
    uniform = filled((200, 100), type="uniform", min=-0.5, max=2.0)
    assert uniform.min() >= -0.5 and uniform.max() <= 2.0 and abs(uniform.mean() - 0.75) < 0.02
    gaussian = filled((200, 100), type="gaussian", mean=1.0, std=0.01)
    assert abs(gaussian.mean() - 1.0) < 1e-3 and abs(gaussian.std() - 0.01) < 1e-3
    sparse = filled((10, 1000), type="gaussian", std=1.0, sparse=2)  # ~2 of 10 outputs nonzero per input
    assert abs((sparse != 0).float().mean() - 0.2) < 0.03


@pytest.mark.parametrize("norm,fan", [(caffe_pb2.FillerParameter.FAN_IN, 32 * 9),
                                      (caffe_pb2.FillerParameter.FAN_OUT, 64 * 9),
                                      (caffe_pb2.FillerParameter.AVERAGE, (32 * 9 + 64 * 9) / 2)])
def test_xavier_and_msra_scale_by_caffes_fan(norm, fan):
    xavier = filled((64, 32, 3, 3), type="xavier", variance_norm=norm)
    bound = math.sqrt(3 / fan)
    assert xavier.abs().max() <= bound and xavier.abs().max() > 0.99 * bound
    msra = filled((64, 32, 3, 3), type="msra", variance_norm=norm)
    assert abs(msra.std() - math.sqrt(2 / fan)) < 0.03 * math.sqrt(2 / fan) and abs(msra.mean()) < 0.01


def test_positive_unitball_and_bilinear():
    unitball = filled((5, 3, 2, 2), type="positive_unitball")
    assert torch.all(unitball >= 0) and torch.allclose(unitball.reshape(5, -1).sum(1), torch.ones(5))
    bilinear = filled((1, 1, 4, 4), type="bilinear")  # Caffe's upsampling-by-2 kernel
    ramp = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(bilinear[0, 0], ramp[:, None] * ramp[None, :])


def test_unknown_filler_names_the_layer():
    proto = text_format.Parse('layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 1 dim: 4 } } }\n'
                              'layer { name: "ip" type: "InnerProduct" bottom: "a" top: "y" inner_product_param { '
                              'num_output: 2 weight_filler { type: "orthogonal" } } }', caffe_pb2.NetParameter())
    with pytest.raises(AgegenderError, match="layer 'ip'.*unknown filler type 'orthogonal'"):
        TorchNet(Net.from_proto(proto))


def test_v1_blobs_lr_and_weight_decay_become_lr_and_decay_multipliers(fixtures):
    """Levi & Hassner's own V1 train_val: blobs_lr 1/2 (fc8 10/20), weight_decay 1/0, per blob."""
    proto = read_net(fixtures / "levi-hassner/age_train_val.prototxt")
    layers = [layer for layer in proto.layer if layer.type != "Data"]
    inputs = caffe_pb2.LayerParameter(name="input", type="Input", top=["data", "label"])
    inputs.input_param.shape.add().dim.extend([1, 3, 227, 227])
    inputs.input_param.shape.add().dim.extend([1])
    del proto.layer[:]
    proto.layer.extend([inputs, *layers])
    blobs = TorchNet(Net.from_proto(proto, "TRAIN")).learnable_blobs()
    multipliers = {(b.layer, b.index): (b.lr_mult, b.decay_mult) for b in blobs}
    assert multipliers[("conv1", 0)] == (1, 1) and multipliers[("conv1", 1)] == (2, 0)
    assert multipliers[("fc8", 0)] == (10, 1) and multipliers[("fc8", 1)] == (20, 0)
    assert [b.layer for b in blobs][::2] == ["conv1", "conv2", "conv3", "fc6", "fc7", "fc8"]
