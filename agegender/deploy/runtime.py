"""Run a compiled classifier (OpenVINO IR + sidecar) on the best OpenVINO device present. No torch.

``Classifier(xml)`` picks the device (NPU, then GPU, then CPU; an absent device falls back to CPU with one
notice), caches the compiled model so the next start is fast, loads and checks the mean image, and
preprocesses images exactly as training did. ``predict`` runs a batch; ``pipeline`` keeps many requests
in flight (OpenVINO's AsyncInferQueue) for folders and videos. A graph with several heads (AgeGenderNet) is
one Classifier whose ``predict_heads`` gives every head from one inference; ``for_head(task)`` is a view that
reads one head, sharing the compiled model. ``pick_ir`` chooses between a net's FP16 IR and its INT8 CPU build.

On a CPU the nets run in f32 (``INFERENCE_PRECISION_HINT``): OpenVINO's Arm CPU plugin otherwise infers in
f16 on cores that have it (a Raspberry Pi 5's Cortex-A76), which moves probabilities by up to 0.02 and flips
near ties, and its x86 plugin in bf16 on cores with AVX512-BF16 or AMX (an AMD EPYC Zen 4, a Xeon Sapphire
Rapids), which moved them by up to 0.008 (2.4% of their value) and flipped 1 of the 273 validation faces'
answers for each of the pipeline's AgeNet and GenderNet IRs on an AMD EPYC; with f32 an x86 PC, a Pi 4 and a
Pi 5 give the same answers (scripts/check_arm64.sh).
"""
from __future__ import annotations

import copy
import hashlib
import os
import platform
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from agegender.caffe.mean import read_mean
from agegender.deploy.metadata import IRMetadata, finish_switch, read_metadata, sha256_file
from agegender.errors import AgegenderError
from agegender.fileio import require_file
from agegender.preprocess import resize_like_lmdb, to_bgr, transform
from agegender.quiet import quiet_stderr

try:
    from openvino import AsyncInferQueue, Core
except ImportError:  # OpenVINO <= 2022.3, the last runtime with the NCS2 (MYRIAD) plugin, or none at all
    try:
        from openvino.runtime import AsyncInferQueue, Core
    except ImportError:
        raise AgegenderError("OpenVINO is not installed: pip install -r requirements-edge.txt") from None

# OpenVINO's AUTO never picks the NPU unless it is named, so the order is ours.
DEVICE_PREFERENCE = ("NPU", "GPU", "CPU")
LATENCY, THROUGHPUT = "LATENCY", "THROUGHPUT"
CPU_PRECISION = "f32"  # INFERENCE_PRECISION_HINT on CPUs: the same answers on x86 and on every Arm core
INT8_SUFFIX = "_int8"  # graph/AgeNet_int8.xml: compile2Movidius.sh's INT8 CPU build beside graph/AgeNet.xml
INT8_MAX_DROP_POINTS = 1.0  # an INT8 build is used only when its measured accuracy is within this of FP32
INT8_MACHINES = ("x86_64", "amd64")  # where the INT8 build's accuracy and speed were measured (see pick_ir)

_core: Core | None = None


def core() -> Core:
    """One OpenVINO Core per process (creating it loads the plugins list)."""
    global _core
    if _core is None:
        _core = Core()
    return _core


def default_cache_dir() -> Path:
    """``$AGEGENDER_CACHE_DIR``, else ``$XDG_CACHE_HOME/agegender/openvino`` (``~/.cache/...``)."""
    if os.environ.get("AGEGENDER_CACHE_DIR"):
        return Path(os.environ["AGEGENDER_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agegender" / "openvino"


def notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


def pick_device(requested: str | None, available: Sequence[str]) -> tuple[str, str | None]:
    """(device to compile for, notice or None). ``None``/``AUTO``: the first of NPU, GPU, CPU present.
    A named device that is absent falls back to CPU with a notice saying why."""
    kinds = {name.split(".")[0]: name for name in reversed(available)}  # "GPU" -> "GPU.0"
    if not requested or requested.upper() == "AUTO":
        for kind in DEVICE_PREFERENCE:
            if kind in kinds:
                return kinds[kind], None
        raise AgegenderError(f"OpenVINO finds none of {', '.join(DEVICE_PREFERENCE)} "
                             f"(it lists: {', '.join(available) or 'nothing'}); check the openvino install")
    requested = requested.upper()
    if requested in available or requested in kinds:
        return requested, None
    if "CPU" not in kinds:
        raise AgegenderError(f"device {requested} is not available and there is no CPU device either "
                             f"(OpenVINO lists: {', '.join(available) or 'nothing'})")
    why = (" (the Neural Compute Stick 2 needs OpenVINO 2022.3 LTS, the last runtime with the MYRIAD plugin)"
           if requested == "MYRIAD" else "")
    return "CPU", f"device {requested} is not available{why}; OpenVINO lists {', '.join(available)}; running on CPU"


def device_name(device: str) -> str:
    try:
        return str(core().get_property(device, "FULL_DEVICE_NAME"))
    except RuntimeError:
        return device


def is_cpu(device: str) -> bool:
    return device.split(".")[0].upper() == "CPU"


def pick_ir(graph_dir: Path, name: str, device: str, on_notice: Callable[[str], None] = notice) -> Path:
    """``graph_dir/NAME.xml`` (FP16: CPU, GPU, NPU, NCS2), or on an x86-64 CPU its INT8 build
    ``NAME_int8.xml`` when present, compiled from the same prototxt and caffemodel with the same class
    prior, and its sidecar's measured accuracy (compile's INT8-vs-FP32 report on the validation LMDB, run by
    x86's INT8 kernels) is at most INT8_MAX_DROP_POINTS below FP32. An INT8 build that fails a condition is
    skipped with a notice saying which. Arm CPUs keep the FP16 IR: their INT8 kernels differ (an emulated
    Cortex-A72 moved the probabilities by 3e-4 against x86's), so the recorded accuracy would not be theirs."""
    default, int8 = graph_dir / f"{name}.xml", graph_dir / f"{name}{INT8_SUFFIX}.xml"
    if not (is_cpu(device) and platform.machine().lower() in INT8_MACHINES and int8.is_file() and default.is_file()):
        return default
    why = _int8_refusal(read_metadata(int8), read_metadata(default))
    if why:
        on_notice(f"{int8} {why}; using {default.name}")
        return default
    return int8


def _int8_refusal(int8: IRMetadata, main: IRMetadata) -> str | None:
    """Why an INT8 build may not stand in for the main IR, or None."""
    if any(int8.source.get(key) != main.source.get(key) for key in ("prototxt_sha256", "caffemodel_sha256")):
        return "was compiled from another prototxt or caffemodel"
    if int8.prior.get("bias_added") != main.prior.get("bias_added"):
        return "carries another class prior (compile --prior)"
    drop = int8.verification.get("int8_vs_fp32", {}).get("accuracy_drop_points")
    if drop is None:
        return "has no accuracy report against FP32"
    if drop > INT8_MAX_DROP_POINTS:
        return f"loses {drop:.1f} points of accuracy against FP32 (at most {INT8_MAX_DROP_POINTS:g} allowed)"
    return None


def device_config(device: str, hint: str) -> dict[str, str]:
    """compile_model's settings: the performance hint, and f32 arithmetic on a CPU (see the module's doc)."""
    config = {"PERFORMANCE_HINT": hint}
    if is_cpu(device):
        config["INFERENCE_PRECISION_HINT"] = CPU_PRECISION
    return config


def cache_key(device: str, config: dict[str, str]) -> str:
    """The model cache's subfolder for this device and precision. OpenVINO's own key covers the model and
    the settings but not which CPU compiled it, so without this an f16 blob compiled on one core would be
    loaded on another; the key names the architecture, the device, its capabilities and the precision."""
    try:
        capabilities = ",".join(core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except RuntimeError:
        capabilities = ""
    precision = config.get("INFERENCE_PRECISION_HINT", "default")
    identity = "|".join((platform.machine(), device, device_name(device), capabilities, precision))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"{device.split('.')[0]}-{platform.machine()}-{precision}-{digest}"


def load_mean(meta: IRMetadata, graph_dir: Path, mean_file: str | os.PathLike | None) -> np.ndarray | None:
    """The (C, H, W) mean the graph was compiled with: the sidecar's ``mean_file`` (its sha256 checked),
    or ``mean_file`` when given, checked against the sidecar's. None when the net has no mean."""
    recorded = graph_dir / meta.mean_file if meta.mean_file else None
    if (mean_file is not None and recorded is not None and recorded.is_file() and Path(mean_file).is_file()
            and os.path.samefile(mean_file, recorded)):
        mean_file = None  # the recorded file itself: checked as such (a hint "use it" would name the file given)
    if mean_file is None:
        if recorded is None:
            return None
        if not recorded.is_file():
            raise AgegenderError(f"mean file {recorded} named by the graph's sidecar is missing; "
                                 f"pass --mean or recompile with `agegender compile`")
        if meta.mean_sha256 and sha256_file(recorded) != meta.mean_sha256:
            raise AgegenderError(f"mean file {recorded} has changed since the graph was compiled (its sha256 "
                                 f"differs from the sidecar's); restore it or recompile with `agegender compile`")
        mean_file = recorded
    mean_file = require_file(mean_file, "mean file")
    mean = read_mean(mean_file)
    if meta.mean_sha256 and sha256_file(mean_file) != meta.mean_sha256:
        _check_mean_values(mean, mean_file, meta, recorded)
    expected = (meta.input_shape[1], *meta.resize)
    if mean.shape[0] != meta.input_shape[1] or mean.shape[1:] not in ((1, 1), tuple(meta.resize)):
        raise AgegenderError(f"mean file {mean_file} is {'x'.join(map(str, mean.shape))} but the graph expects "
                             f"{'x'.join(map(str, expected))} "
                             f"(images are resized to {meta.resize[0]}x{meta.resize[1]})")
    return mean


def _check_mean_values(mean: np.ndarray, path: Path, meta: IRMetadata, recorded: Path | None) -> None:
    """Another file than the recorded mean is accepted when it holds the same values (e.g. the
    .binaryproto the .npy was converted from): compared with the recorded file when it is intact, else
    with the sidecar's per-channel means. Otherwise predictions would be silently wrong."""
    channels = mean.reshape(mean.shape[0], -1).mean(1)
    if recorded is not None and recorded.is_file() and sha256_file(recorded) == meta.mean_sha256:
        reference = read_mean(recorded)
        if reference.shape == mean.shape and np.allclose(reference, mean, atol=1e-3):
            return
    elif len(meta.mean_bgr) == len(channels) and np.allclose(channels, meta.mean_bgr, atol=1e-2):
        return
    raise AgegenderError(f"mean file {path} does not match the mean the graph was compiled with "
                         f"({'x'.join(map(str, mean.shape))}, per-channel {np.round(channels, 2).tolist()}; expected "
                         f"{'x'.join(map(str, (meta.input_shape[1], *meta.resize)))}, "
                         f"{np.round(meta.mean_bgr, 2).tolist()}); use {meta.mean_file or 'the training mean'}")


class Classifier:
    """One compiled IR on one device. ``predict(batch)`` -> N x classes probabilities."""

    def __init__(self, xml_path: str | os.PathLike, device: str | None = None,
                 cache_dir: str | os.PathLike | None = None, mean_file: str | os.PathLike | None = None,
                 hint: str = LATENCY, on_notice: Callable[[str], None] = notice, head: str | None = None):
        """``device`` None or "AUTO" picks the best present; ``cache_dir`` None uses default_cache_dir(),
        "" turns the model cache off; ``hint`` LATENCY (one image at a time) or THROUGHPUT (pipelines);
        ``head`` the task whose output ``predict`` gives (None: the first head)."""
        finish_switch(xml_path)  # a compile killed while replacing this graph: its new trio goes in whole
        self.xml = require_file(xml_path, "graph")
        require_file(self.xml.with_suffix(".bin"), "graph weights")
        self.meta = read_metadata(self.xml)
        self.head = self.meta.head(head)
        if self.meta.color_order not in ("BGR", "RGB"):
            raise AgegenderError(f"{self.xml}: sidecar colour order {self.meta.color_order!r} is neither BGR nor RGB")
        self.mean = load_mean(self.meta, self.xml.parent, mean_file)
        model = self._read_model()
        self._cache_root = str(default_cache_dir() if cache_dir is None else cache_dir)  # "": no cache
        self.cache_dir: Path | None = None
        requested, message = pick_device(device, core().available_devices)
        if message:
            on_notice(message)
        self._compiled, self.device = self._compile(model, requested, hint, on_notice)
        self.device_name = device_name(self.device)
        self._outputs = {h["task"] or h["output_name"]: self._output_index(h["output_name"])
                         for h in self.meta.head_list()}
        self._output = self._output_index(self.head["output_name"])
        self._request = self._compiled.create_infer_request()
        self._pipelines: dict[int, Pipeline] = {}

    @property
    def classes(self) -> list[str]:
        return self.head["classes"]

    @property
    def tasks(self) -> list[str]:
        """The heads' tasks, in output order (one for AgeNet.xml, age and gender for AgeGenderNet.xml)."""
        return list(self._outputs)

    def for_head(self, task: str) -> "Classifier":
        """This graph reading the head of ``task``: same compiled model and request, its own pipelines."""
        view = copy.copy(self)
        view.head = self.meta.head(task)
        view._output = self._output_index(view.head["output_name"])
        view._pipelines = {}
        return view

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """C, H, W of one input."""
        return tuple(self.meta.input_shape[1:])

    def _read_model(self):
        with open(self.xml, "rb") as stream:
            head = stream.read(256).lstrip(b"\xef\xbb\xbf \t\r\n")
        if not head.startswith((b"<?xml", b"<net")):  # else OpenVINO tries every frontend, TensorFlow's logging
            raise AgegenderError(f"graph {self.xml} is not an OpenVINO IR (the file does not start with XML); "
                                 f"recompile with compile2Movidius.sh")
        try:
            with quiet_stderr():
                model = core().read_model(str(self.xml), str(self.xml.with_suffix(".bin")))
        except RuntimeError as exc:
            raise AgegenderError(f"graph {self.xml} is not a readable OpenVINO IR ({_first_line(exc)}); "
                                 f"recompile with `agegender compile`") from None
        if len(model.inputs) != 1:
            raise AgegenderError(f"graph {self.xml} has {len(model.inputs)} inputs; a classifier has one image input")
        shape = model.input(0).get_partial_shape()
        dims = [d.get_length() if d.is_static else -1 for d in shape]
        if len(dims) != 4 or dims[1:] != list(self.input_shape):
            raise AgegenderError(f"graph {self.xml} takes input {'x'.join(map(str, dims))} but its sidecar says "
                                 f"{'x'.join(map(str, self.meta.input_shape))}; "
                                 f"the .xml and .json do not belong together")
        if dims[0] != 1:  # one image per request; batches are pipelined, which every device supports
            model.reshape({model.input(0).get_any_name(): [1, *self.input_shape]})
        for head in self.meta.head_list():
            classes = _output_size(model, head["output_name"])
            if classes != len(head["classes"]):
                raise AgegenderError(f"graph {self.xml} outputs {classes} classes but its sidecar names "
                                     f"{len(head['classes'])} ({', '.join(head['classes'])}); recompile")
        return model

    def _compile(self, model, device: str, hint: str, on_notice: Callable[[str], None]):
        config = device_config(device, hint)
        key = cache_key(device, config)
        self.cache_dir = _usable_cache_dir(Path(self._cache_root, key)) if self._cache_root else None
        if self.cache_dir:
            config["CACHE_DIR"] = str(self.cache_dir)
        try:
            compiled = core().compile_model(model, device, config)
        except RuntimeError as exc:
            if device == "CPU":
                raise AgegenderError(f"OpenVINO cannot compile {self.xml} for CPU: {_first_line(exc)}") from None
            on_notice(f"compiling {self.xml.name} for {device} failed ({_first_line(exc)}); running on CPU")
            return self._compile(model, "CPU", hint, on_notice)
        try:
            ran_on = ",".join(compiled.get_property("EXECUTION_DEVICES"))
        except RuntimeError:
            ran_on = device
        return compiled, ran_on or device

    def _output_index(self, name: str) -> int:
        for index, output in enumerate(self._compiled.outputs):
            if name in output.get_names():
                return index
        return len(self._compiled.outputs) - 1

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """A face image (any size; BGR, gray or BGRA uint8) -> 1 x C x crop x crop, as the TEST phase saw
        the training data: BGR (no RGB swap unless the sidecar says so), resized to the LMDB size, mean
        subtracted at the centre-crop offset, centre-cropped, scaled."""
        bgr = to_bgr(image)
        if self.meta.color_order == "RGB":
            bgr = bgr[:, :, ::-1]
        height, width = self.meta.resize
        chw = resize_like_lmdb(bgr, height, width).transpose(2, 0, 1)
        return transform(chw, self.mean, self.meta.crop, self.meta.scale)[None]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """N x C x H x W float32 (preprocessed) -> N x classes probabilities. One input runs synchronously,
        more are pipelined through the async queue."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise AgegenderError(f"{self.xml.name} takes N x {'x'.join(map(str, self.input_shape))} inputs, "
                                 f"got {'x'.join(map(str, batch.shape))}")
        if len(batch) == 1:
            return self._infer_one(batch)[None]
        probabilities = np.empty((len(batch), len(self.classes)), dtype=np.float32)
        with self.pipeline(probabilities.__setitem__) as pipe:
            for index, x in enumerate(batch):
                pipe.submit(x[None], index)
        return probabilities

    def _infer_one(self, x: np.ndarray) -> np.ndarray:
        self._request.infer({0: np.ascontiguousarray(x)})
        return self._request.get_output_tensor(self._output).data.reshape(-1).copy()

    def predict_heads(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One preprocessed input (1 x C x H x W) -> {task: probabilities} of every head, from one inference."""
        self._request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return _heads(self._request, self._outputs)

    def pipeline(self, on_result: Callable[[Any, Any], None], jobs: int = 0, heads: bool = False) -> "Pipeline":
        """Many requests in flight; ``on_result(tag, probabilities)`` is called from OpenVINO's threads
        (``heads``: ``on_result(tag, {task: probabilities})`` of every head). The queue is made (and warmed)
        once per ``jobs`` and reused, so use one pipeline at a time."""
        if (jobs, heads) not in self._pipelines:
            self._pipelines[jobs, heads] = Pipeline(self, jobs, heads)
        return self._pipelines[jobs, heads].reset(on_result)


class Pipeline:
    """OpenVINO's AsyncInferQueue around a Classifier: ``submit(x, tag)`` returns as soon as a request is
    free; results arrive through ``on_result``; leaving the ``with`` block waits for all of them.

    Each request runs its first inference alone, one after another, before the queue is used: the first
    inference of a request allocates and specialises its kernels, and several of those at once on a
    machine with few, busy cores have been seen to hang AsyncInferQueue's waits (by the compile stage on
    this project's 2-core VM, and in reports for OpenVINO 2026 on 4-core CPUs)."""

    def __init__(self, classifier: Classifier, jobs: int = 0, heads: bool = False):
        self._queue = AsyncInferQueue(classifier._compiled, jobs)  # 0: the device's optimal number
        warm = {0: np.zeros((1, *classifier.input_shape), np.float32)}
        for _ in range(len(self._queue)):  # idle requests are taken in turn, so this warms each once
            self._queue.start_async(warm)
            self._queue.wait_all()
        self._output = classifier._output
        self._heads = classifier._outputs if heads else None
        self.on_result: Callable[[Any, np.ndarray], None] = lambda tag, probabilities: None
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._queue.set_callback(self._done)

    @property
    def jobs(self) -> int:
        return len(self._queue)

    def reset(self, on_result: Callable[[Any, np.ndarray], None]) -> "Pipeline":
        self._queue.wait_all()
        self.on_result = on_result
        with self._lock:
            self._errors.clear()
        return self

    def _done(self, request, tag) -> None:
        try:
            if self._heads is not None:
                self.on_result(tag, _heads(request, self._heads))
            else:
                self.on_result(tag, request.get_output_tensor(self._output).data.reshape(-1).copy())
        except BaseException as exc:  # raised again in the caller's thread
            with self._lock:
                self._errors.append(exc)

    def _raise_pending(self) -> None:
        with self._lock:
            if self._errors:
                raise self._errors.pop(0)

    def submit(self, x: np.ndarray, tag: Any) -> None:
        self._queue.start_async({0: np.ascontiguousarray(x, dtype=np.float32)}, tag)
        self._raise_pending()

    def wait(self) -> None:
        self._queue.wait_all()
        self._raise_pending()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.wait()
        else:
            self._queue.wait_all()


def _heads(request, outputs: dict[str, int]) -> dict[str, np.ndarray]:
    return {task: request.get_output_tensor(index).data.reshape(-1).copy() for task, index in outputs.items()}


def _output_size(model, name: str) -> int:
    outputs = [o for o in model.outputs if name in o.get_names()] or list(model.outputs[-1:])
    shape = outputs[0].get_partial_shape()
    if not shape.is_static:
        return -1
    return int(np.prod([d.get_length() for d in shape][1:]))


def _usable_cache_dir(path: Path) -> Path | None:
    """The model-cache folder, created; None (no cache, still correct, only slower to start) when it
    cannot be created (read-only home on a kiosk, say)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return Path(path)


def _first_line(exc: BaseException) -> str:
    """The reason in OpenVINO's message, past its "Exception from src/...cpp:N:" location lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if not (line.startswith("Exception from ") and line.endswith(":"))]
    return (reasons or lines or [type(exc).__name__])[0]
