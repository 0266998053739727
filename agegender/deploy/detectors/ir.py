"""A Caffe detector net compiled to OpenVINO IR by agegender's compiler and run by the nets' runtime.

The IR is built from the prototxt + caffemodel by the same code as ``agegender compile``
(``agegender.layers.openvino_ops.build_model``), once per input shape, and kept in the model cache
(``<cache>/detectors/<prototxt stem>-<sha256 of caffemodel, prototxt>-NxCxHxW.xml``), so the next start only reads it.
Compiled models are shared between threads; each thread gets its own infer request.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from agegender.deploy.metadata import sha256_file
from agegender.errors import AgegenderError

DYNAMIC = -1  # a batch dimension left open in the compiled model (R-Net/O-Net take any number of crops)


def ir_path(prototxt: Path, caffemodel: Path, shape: Sequence[int], cache_dir: Path | None) -> Path:
    digest = sha256_file(caffemodel)[:8] + sha256_file(prototxt)[:4]
    folder = Path(cache_dir or Path(tempfile.gettempdir()) / f"agegender-{os.getuid()}") / "detectors"
    return folder / f"{prototxt.stem}-{digest}-{'x'.join(map(str, shape))}.xml"


def compile_ir(prototxt: Path, caffemodel: Path, shape: Sequence[int], xml: Path) -> Path:
    """``agegender compile``'s graph builder on the prototxt with its input set to ``shape`` (N, C, H, W);
    the IR (FP32 weights) is written atomically to ``xml``."""
    import openvino as ov

    from agegender.caffe import read_net
    from agegender.layers.net import Net
    from agegender.layers.openvino_ops import build_model

    proto = read_net(prototxt)
    inputs = [layer for layer in proto.layer if layer.type == "Input"]
    if len(inputs) != 1 or len(inputs[0].input_param.shape) != 1:
        raise AgegenderError(f"{prototxt}: a detector prototxt has one Input layer (or input/input_dim) with one shape")
    dims = inputs[0].input_param.shape[0].dim
    dims[:] = [int(v) for v in shape]
    net = Net.from_proto(proto, "TEST", source=str(prototxt))
    model = build_model(net, net.weights_from(caffemodel))
    xml.parent.mkdir(parents=True, exist_ok=True)
    staged = xml.with_name(f".{xml.stem}.{os.getpid()}.{threading.get_ident()}.xml")
    ov.save_model(model, staged, compress_to_fp16=False)
    os.replace(staged.with_suffix(".bin"), xml.with_suffix(".bin"))
    os.replace(staged, xml)
    return xml


class CaffeNet:
    """One Caffe detector net on one OpenVINO device, compiled per input shape on first use.

    ``run(x)`` -> {Caffe top name: array}. ``batch_dynamic`` compiles with an open batch dimension (for
    nets fed a variable number of crops)."""

    def __init__(self, prototxt: Path, caffemodel: Path, device: str, cache_dir: Path | None,
                 batch_dynamic: bool = False):
        self.prototxt, self.caffemodel = Path(prototxt), Path(caffemodel)
        self.device, self.cache_dir, self.batch_dynamic = device, cache_dir, batch_dynamic
        self._compiled: dict[tuple[int, ...], object] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _model(self, shape: tuple[int, ...]):
        key = (DYNAMIC, *shape[1:]) if self.batch_dynamic else shape
        with self._lock:
            compiled = self._compiled.get(key)
            if compiled is None:
                compiled = self._compile(key)
                # One inference in the compiling thread before any other thread may use it: concurrent first
                # inferences of a new compiled model deadlocked OpenVINO 2026.4's CPU plugin (1 run in 4).
                compiled.create_infer_request().infer({0: np.zeros((1, *key[1:]) if key[0] == DYNAMIC else key,
                                                                   np.float32)})
                self._compiled[key] = compiled
        return key, compiled

    def _compile(self, shape: tuple[int, ...]):
        from agegender.deploy.runtime import core

        static = (1, *shape[1:]) if shape[0] == DYNAMIC else shape
        xml = ir_path(self.prototxt, self.caffemodel, static, self.cache_dir)
        if not xml.is_file() or not xml.with_suffix(".bin").is_file():
            compile_ir(self.prototxt, self.caffemodel, static, xml)
        model = core().read_model(str(xml))
        if shape[0] == DYNAMIC:
            model.reshape({model.input(0).get_any_name(): [-1, *shape[1:]]})
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if self.cache_dir:  # OpenVINO's compiled-model cache, as the nets': the next start skips compiling
            config["CACHE_DIR"] = str(self.cache_dir)
        try:
            return core().compile_model(model, self.device, config)
        except RuntimeError as exc:
            raise AgegenderError(f"OpenVINO cannot compile the detector {self.prototxt.name} for {self.device}: "
                                 f"{str(exc).strip().splitlines()[0]}") from None

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        key, compiled = self._model(tuple(x.shape))
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get((id(self), key))
        if request is None:
            request = requests[(id(self), key)] = compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return {name: request.get_tensor(output).data.copy()
                for output in compiled.outputs for name in output.get_names()}
