"""A Caffe net as a graph of parsed layers for one phase, with every blob's shape known.

Built once from a NetParameter (Caffe's include/exclude rules applied, shapes inferred layer by layer)
and shared by inspect, the PyTorch trainer and the OpenVINO compiler.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from agegender.caffe import caffe_pb2, read_caffemodel, read_lmdb, read_net
from agegender.caffe.blob import blob_fits, blob_shape, blob_to_array
from agegender.caffe.datum import datum_to_array
from agegender.errors import AgegenderError
from agegender.layers.spec import SUPPORTED_TYPES, DataSpec, LayerSpec, Shape, parse_layer


@dataclass
class Node:
    """One layer of the net: its spec, wiring and shapes."""

    name: str
    type: str
    spec: LayerSpec
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    bottom_shapes: list[Shape]
    top_shapes: list[Shape]
    blob_shapes: list[Shape]
    param_specs: list[caffe_pb2.ParamSpec]
    loss_weights: list[float]

    @property
    def param_count(self) -> int:
        return sum(math.prod(map(int, s)) for s in self.blob_shapes)

    @property
    def macs(self) -> int:
        return self.spec.macs(self.bottom_shapes, self.top_shapes)

    def describe(self) -> str:
        return f"layer '{self.name}' ({self.type})"


def _meets_rule(state: caffe_pb2.NetState, rule: caffe_pb2.NetStateRule) -> bool:
    """Caffe's Net::StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def layer_included(layer: caffe_pb2.LayerParameter, state: caffe_pb2.NetState) -> bool:
    """Caffe's include/exclude semantics: included if any include rule is met, or no exclude rule is."""
    if layer.include and layer.exclude:
        raise AgegenderError(f"layer '{layer.name}' has both include and exclude rules; Caffe allows only one kind")
    if layer.include:
        return any(_meets_rule(state, r) for r in layer.include)
    return not any(_meets_rule(state, r) for r in layer.exclude)


def lmdb_datum_shape(source: str) -> Shape:
    """(C, H, W) of the first record of an LMDB, as Caffe's DataLayer does at set-up."""
    for _, datum in read_lmdb(source):
        return datum_to_array(datum).shape
    raise AgegenderError(f"LMDB {source} holds no records; rebuild it with `agegender lmdb`")


@dataclass
class Net:
    name: str
    phase: str
    nodes: list[Node]
    blob_shapes: dict[str, Shape] = field(default_factory=dict)
    source: str = "net"

    @classmethod
    def from_file(cls, path: str | os.PathLike, phase: str = "TEST", stages: Sequence[str] = (),
                  level: int = 0) -> "Net":
        return cls.from_proto(read_net(path), phase, stages, level, source=str(path))

    @classmethod
    def from_proto(cls, proto: caffe_pb2.NetParameter, phase: str = "TEST", stages: Sequence[str] = (),
                   level: int = 0, source: str = "net") -> "Net":
        # as Caffe's Net(file, phase, level, stages): the prototxt's own state{} stages are kept, ``stages`` added
        state = caffe_pb2.NetState(phase=caffe_pb2.Phase.Value(phase), level=level,
                                   stage=[*proto.state.stage, *stages])
        net = cls(proto.name, phase, [], {}, source)
        for layer in proto.layer:
            if layer_included(layer, state):
                net._add(layer)
        if not net.nodes:
            raise AgegenderError(f"{source}: no layers in phase {phase}")
        return net

    def _fail(self, layer: caffe_pb2.LayerParameter, message: str) -> AgegenderError:
        return AgegenderError(f"{self.source}: layer '{layer.name}' ({layer.type}): {message}")

    def _add(self, layer: caffe_pb2.LayerParameter) -> None:
        try:
            spec = parse_layer(layer)
        except KeyError:
            raise self._fail(layer, f"unsupported layer type '{layer.type}'; agegender supports "
                                    f"{', '.join(SUPPORTED_TYPES)}") from None
        except ValueError as exc:
            raise self._fail(layer, str(exc)) from None
        low, high = spec.n_bottoms
        if len(layer.bottom) < low or (high >= 0 and len(layer.bottom) > high):
            wanted = low if low == high else f"{low} or more"
            raise self._fail(layer, f"takes {wanted} bottom(s), got {len(layer.bottom)}")
        if not layer.top and spec.needs_top:
            raise self._fail(layer, "has no top")
        if set(layer.top) & set(layer.bottom) and not spec.in_place:
            shared = (set(layer.top) & set(layer.bottom)).pop()
            raise self._fail(layer, f"cannot compute in place (top '{shared}' is also its bottom; Caffe would give "
                                    f"wrong results): give the top a new name")
        missing = [b for b in layer.bottom if b not in self.blob_shapes]
        if missing:
            raise self._fail(layer, f"bottom '{missing[0]}' is not produced by any earlier layer in phase {self.phase}")
        bottoms = [self.blob_shapes[b] for b in layer.bottom]
        try:
            if isinstance(spec, DataSpec):
                tops = spec.shapes_for(lmdb_datum_shape(spec.source), len(layer.top))
            else:
                tops = spec.top_shapes(bottoms, len(layer.top))
            blobs = spec.blob_shapes(bottoms)
        except ValueError as exc:
            raise self._fail(layer, f"{exc} (input shapes {', '.join(map(str, bottoms))})") from None
        if len(tops) != len(layer.top):
            raise self._fail(layer, f"produces {len(tops)} top(s), the prototxt names {len(layer.top)}")
        if layer.loss_weight and len(layer.loss_weight) != len(tops):
            raise self._fail(layer, f"has {len(layer.loss_weight)} loss_weight(s) for {len(tops)} top(s); "
                                    f"give none or one per top, as Caffe requires")
        default_loss = 1.0 if spec.is_loss else 0.0
        loss_weights = list(layer.loss_weight) or [default_loss] + [0.0] * (len(tops) - 1)
        self.nodes.append(Node(layer.name, layer.type, spec, tuple(layer.bottom), tuple(layer.top), bottoms,
                               tops, blobs, list(layer.param), loss_weights))
        self.blob_shapes.update(zip(layer.top, tops))

    @property
    def inputs(self) -> list[str]:
        """Blobs fed from outside: the tops of Input layers."""
        return [t for n in self.nodes if n.type == "Input" for t in n.tops]

    @property
    def outputs(self) -> list[str]:
        """Caffe's net outputs: blobs that no later layer consumes."""
        consumed, outputs = set(), []
        for node in reversed(self.nodes):
            outputs += [t for t in node.tops if t not in consumed and t not in outputs]
            consumed.update(node.bottoms)
        return list(reversed(outputs))

    def weights_from(self, model: caffe_pb2.NetParameter | str | os.PathLike, *,
                     strict: bool = True, model_name: str | None = None) -> dict[str, list[np.ndarray]]:
        """Parameter arrays by layer name, checked against this net's shapes (Caffe's CopyTrainedLayersFrom).

        ``strict`` requires weights for every layer that has parameters (deploying); otherwise layers
        absent from the model keep their initialisation (fine-tuning). A shape mismatch is always an error.
        """
        if not isinstance(model, caffe_pb2.NetParameter):
            model_name = model_name or str(model)
            model = read_caffemodel(model)
        model_name = model_name or "caffemodel"
        stored = {layer.name: layer for layer in model.layer if layer.blobs}
        weights = {}
        for node in self.nodes:
            if not node.blob_shapes:
                continue
            layer = stored.get(node.name)
            if layer is None:
                if strict:
                    raise AgegenderError(f"{model_name}: {node.describe()} has no weights; the prototxt needs "
                                         f"blobs {_shapes(node.blob_shapes)} (is this caffemodel for {self.source}?)")
                continue
            blobs = list(layer.blobs)
            if len(blobs) != len(node.blob_shapes) or not all(map(blob_fits, blobs, node.blob_shapes)):
                raise AgegenderError(f"{model_name}: {node.describe()} has weights of shape "
                                     f"{_shapes([blob_shape(b) for b in blobs])} but {self.source} needs "
                                     f"{_shapes(node.blob_shapes)}; "
                                     f"fix the prototxt or rename the layer to train it anew")
            weights[node.name] = [_blob_values(b, s, f"{model_name}: {node.describe()}")
                                  for b, s in zip(blobs, node.blob_shapes)]
        return weights


def _blob_values(blob: caffe_pb2.BlobProto, shape: Shape, where: str) -> np.ndarray:
    """The blob as float32 ``shape``; one line when it holds too few values or any NaN/infinity (a damaged
    caffemodel, or a diverged training, would otherwise give confident wrong answers)."""
    try:
        values = blob_to_array(blob, shape).astype(np.float32)
    except ValueError as exc:
        raise AgegenderError(f"{where}: {exc}; the caffemodel is damaged or was written for another net") from None
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise AgegenderError(f"{where}: {bad} of its {values.size} weights are NaN or infinite (a diverged "
                             f"training?); use an earlier snapshot")
    return values


def _shapes(shapes: Sequence[Shape]) -> str:
    return ", ".join("x".join(map(str, s)) if s else "scalar" for s in shapes)


def load_deploy(prototxt: str | os.PathLike, weights: str | os.PathLike) -> tuple[Net, dict[str, list[np.ndarray]]]:
    """A TEST-phase net and its checked weights: what compile, test and the OpenCV checks start from."""
    net = Net.from_file(prototxt, "TEST")
    return net, net.weights_from(weights)

