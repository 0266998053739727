"""A Caffe net (``Net``, one phase) as a ``torch.nn.Module``: blobs in, every output blob out, caffemodel out.

Layers run in prototxt order; a blob name always refers to its latest producer, so in-place layers
(top == bottom) and Split fan-out need no special casing. Dropout and BatchNorm follow ``training``,
which starts as the net's phase (TRAIN -> train mode, TEST -> eval mode).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from agegender.caffe import array_to_blob, caffe_pb2
from agegender.errors import AgegenderError
from agegender.layers.fillers import fill
from agegender.layers.net import Net
from agegender.layers.torch_ops import FED_TYPES, build_layer


@dataclass
class LearnableBlob:
    """One parameter blob as the solver sees it, in Caffe's learnable_params order."""

    layer: str
    index: int
    param: nn.Parameter
    lr_mult: float
    decay_mult: float


class TorchNet(nn.Module):
    def __init__(self, net: Net, weights: dict[str, list[np.ndarray]] | None = None):
        """``weights`` by layer name (as ``Net.weights_from`` gives); layers without weights use Caffe's fillers,
        drawn from torch's global generator."""
        super().__init__()
        self.net = net
        self.nodes = [n for n in net.nodes if n.type not in FED_TYPES]
        _reject_shared_params(net)
        layers = []
        for node in self.nodes:
            try:
                layers.append(build_layer(node))
            except KeyError:
                raise AgegenderError(f"{net.source}: {node.describe()} has no PyTorch implementation") from None
        self.layers = nn.ModuleList(layers)
        self.input_names = [t for n in net.nodes if n.type in FED_TYPES for t in n.tops]
        self.loss_weights = [(top, w) for n in net.nodes for top, w in zip(n.tops, n.loss_weights) if w]
        outputs = net.outputs
        self.output_names = outputs + [t for t, _ in self.loss_weights if t not in outputs]
        self._initialise(weights or {})
        self.train(net.phase == "TRAIN")

    def _initialise(self, weights: dict[str, list[np.ndarray]]) -> None:
        for node, layer in zip(self.nodes, self.layers):
            if node.name in weights:
                continue
            for blob, filler in zip(layer.blobs, node.spec.fillers()):
                try:
                    fill(blob, filler)
                except ValueError as exc:
                    raise AgegenderError(f"{self.net.source}: {node.describe()}: {exc}") from None
        self.load_weights(weights)

    @torch.no_grad()
    def load_weights(self, weights: dict[str, list[np.ndarray]]) -> list[str]:
        """Copy the arrays of every layer named in ``weights`` (shapes as ``Net.weights_from`` checked them);
        returns the names of the layers copied."""
        copied = []
        for node, layer in zip(self.nodes, self.layers):
            arrays = weights.get(node.name)
            if arrays is None:
                continue
            for blob, array in zip(layer.blobs, arrays):
                blob.copy_(torch.from_numpy(np.asarray(array, dtype=np.float32)).reshape(blob.shape))
            copied.append(node.name)
        return copied

    def layer(self, name: str) -> nn.Module:
        for node, layer in zip(self.nodes, self.layers):
            if node.name == name:
                return layer
        raise KeyError(name)

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Feed the Input/Data tops; returns the net's output blobs (and any loss-weighted blob)."""
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ValueError(f"net input(s) {', '.join(missing)} not given; "
                             f"the net takes {', '.join(self.input_names)}")
        blobs = dict(inputs)
        for node, layer in zip(self.nodes, self.layers):
            blobs.update(zip(node.tops, layer(*(blobs[b] for b in node.bottoms))))
        return {name: blobs[name] for name in self.output_names}

    def loss(self, outputs: dict[str, Tensor]) -> Tensor:
        """Caffe's net loss: the sum of every loss-weighted top, times its weight."""
        if not self.loss_weights:
            raise AgegenderError(f"{self.net.source}: phase {self.net.phase} has no loss layer to train on")
        return sum(w * outputs[top].sum() for top, w in self.loss_weights)

    def learnable_blobs(self) -> list[LearnableBlob]:
        """Every parameter blob with its lr_mult and decay_mult (ParamSpec, default 1), in Caffe's order."""
        blobs = []
        for node, layer in zip(self.nodes, self.layers):
            for index, param in enumerate(layer.blobs):
                spec = node.param_specs[index] if index < len(node.param_specs) else caffe_pb2.ParamSpec()
                lr_mult = spec.lr_mult if node.spec.learns else 0.0
                blobs.append(LearnableBlob(node.name, index, param, lr_mult, spec.decay_mult))
        return blobs

    def share_blobs_from(self, other: "TorchNet") -> None:
        """Use ``other``'s parameter tensors for same-named layers (Caffe's ShareTrainedLayersWith: the test
        nets see the train net's weights as they learn)."""
        for node, layer in zip(self.nodes, self.layers):
            if not node.blob_shapes:
                continue
            try:
                source = other.layer(node.name)
            except KeyError:
                continue
            theirs = [tuple(b.shape) for b in source.blobs]
            if theirs != [tuple(b.shape) for b in layer.blobs]:
                raise AgegenderError(f"{node.describe()} has blobs {theirs} in phase {other.net.phase} but "
                                     f"{[tuple(b.shape) for b in layer.blobs]} in phase {self.net.phase}; "
                                     f"layers sharing a name must match")
            layer.blobs = source.blobs

    def to_caffemodel(self) -> caffe_pb2.NetParameter:
        """The net as Caffe's Net::ToProto writes a snapshot: every layer, blobs in Caffe's order and shapes."""
        proto = caffe_pb2.NetParameter(name=self.net.name)
        layers = dict(zip((n.name for n in self.nodes), self.layers))
        phase = caffe_pb2.Phase.Value(self.net.phase)
        for node in self.net.nodes:
            entry = proto.layer.add(name=node.name, type=node.type, bottom=node.bottoms, top=node.tops, phase=phase)
            for blob in (layers[node.name].blobs if node.name in layers else []):
                entry.blobs.append(array_to_blob(blob.detach().cpu().numpy()))
        return proto


def _reject_shared_params(net: Net) -> None:
    names = Counter(p.name for n in net.nodes for p in n.param_specs if p.name)
    shared = [name for name, count in names.items() if count > 1]
    if shared:
        raise AgegenderError(f"{net.source}: parameter sharing (param name '{shared[0]}' in several layers) is not "
                             f"supported; give each layer its own parameters")


def numpy_forward(net: Net, weights: dict[str, list[np.ndarray]]):
    """The engine as a plain function of numpy arrays (no gradients): {input: array} -> {output: array}.
    The reference forward of `compile`'s check and the caffemodel predictor of `test`."""
    model = TorchNet(net, weights).eval()

    def forward(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = model({name: torch.from_numpy(array) for name, array in inputs.items()})
        return {name: out[name].numpy() for name in net.outputs}

    return forward
