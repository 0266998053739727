"""INT8 post-training quantization with NNCF, and the report that justifies it: accuracy, model size and
throughput of INT8 next to FP32 on a test LMDB.

Calibration images are the TEST-phase inputs the net will see (mean subtracted at the crop offset,
centre crop), read spread evenly over the calibration LMDB.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import openvino as ov

from agegender.caffe import lmdb_size, read_lmdb
from agegender.caffe.datum import record_image
from agegender.errors import AgegenderError
from agegender.preprocess import transform
from agegender.scoring import evaluate

FP32_CPU = {"INFERENCE_PRECISION_HINT": "f32"}  # no silent bf16/fp16 on CPUs that have them


def calibration_inputs(lmdb: str | os.PathLike, mean: np.ndarray | None, crop: int, size: int) -> list[np.ndarray]:
    """``size`` 1xCxcropxcrop inputs from records spread evenly over the LMDB (all when it holds fewer)."""
    total = lmdb_size(lmdb)
    if total == 0:
        raise AgegenderError(f"calibration LMDB {lmdb} holds no records")
    step = max(total // size, 1)
    inputs = []
    for index, (key, datum) in enumerate(read_lmdb(lmdb)):
        if index % step == 0 and len(inputs) < size:
            chw = record_image(lmdb, key, datum)
            try:
                inputs.append(transform(chw, mean, crop)[None])
            except ValueError as exc:
                raise AgegenderError(f"calibration LMDB {lmdb}: {exc}; use the mean and the net made for this "
                                     f"LMDB's images") from None
    return inputs


def quantize(model: ov.Model, inputs: Sequence[np.ndarray], target: str) -> ov.Model:
    """NNCF post-training quantization (min-max ranges + fast bias correction) on ``inputs``."""
    import nncf

    device = {"npu": nncf.TargetDevice.NPU}.get(target, nncf.TargetDevice.CPU)
    return nncf.quantize(model, nncf.Dataset(list(inputs)), subset_size=len(inputs), target_device=device)


def _requests(compiled: ov.CompiledModel) -> list[ov.InferRequest]:
    return [compiled.create_infer_request() for _ in range(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))]


def throughput(compiled: ov.CompiledModel, sample: np.ndarray, seconds: float = 2.0) -> float:
    """Images per second with all of the device's parallel infer requests kept busy, round robin.
    (Plain requests rather than AsyncInferQueue, whose waits occasionally deadlocked on a busy machine.)"""
    requests = _requests(compiled)
    for request in requests:  # warm-up
        request.infer({0: sample})
    for request in requests:
        request.start_async({0: sample})
    done, index, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        request = requests[index % len(requests)]
        request.wait()
        done += sample.shape[0]
        request.start_async({0: sample})
        index += 1
    elapsed = time.perf_counter() - start
    for request in requests:
        request.wait()
    return done / elapsed


@dataclass
class VariantScore:
    precision: str
    accuracy: float
    size_mb: float
    images_per_s: float


def _accuracy(compiled: ov.CompiledModel, test_lmdb: str, mean: np.ndarray | None, crop: int,
              classes: Sequence[str]) -> float:
    requests = _requests(compiled)

    def predict(batch: np.ndarray) -> np.ndarray:
        outputs = []
        for first in range(0, len(batch), len(requests)):
            running = list(zip(requests, batch[first:first + len(requests)]))
            for request, image in running:
                request.start_async({0: image[None]})
            for request, _ in running:
                request.wait()
                outputs.append(request.get_output_tensor(0).data.ravel().copy())
        return np.stack(outputs)

    return evaluate(predict, test_lmdb, mean, crop, classes).accuracy


def compare_int8(fp32_xml: str | os.PathLike, int8_xml: str | os.PathLike, test_lmdb: str,
                 mean: np.ndarray | None, crop: int, classes: Sequence[str], rounds: int = 3) -> dict:
    """FP32 and INT8 side by side on the test LMDB; the accuracy drop is in points (percent). Throughput
    alternates between the two for ``rounds`` rounds and keeps the medians, as the CPU may be shared."""
    variants = {"fp32": (Path(fp32_xml), FP32_CPU), "int8": (Path(int8_xml), FP32_CPU)}
    compiled = {key: ov.Core().compile_model(str(xml), "CPU", {**config, "PERFORMANCE_HINT": "THROUGHPUT"})
                for key, (xml, config) in variants.items()}
    sample = np.zeros(tuple(compiled["fp32"].input(0).shape), np.float32)
    speeds = {key: [] for key in variants}
    for _ in range(rounds):
        for key in variants:
            speeds[key].append(throughput(compiled[key], sample, seconds=1.0))
    scores = {key: VariantScore(key.upper(), _accuracy(compiled[key], test_lmdb, mean, crop, classes),
                                (xml.stat().st_size + xml.with_suffix(".bin").stat().st_size) / 1e6,
                                float(np.median(speeds[key])))
              for key, (xml, _) in variants.items()}
    fp32, int8 = scores["fp32"], scores["int8"]
    return {"test_lmdb": str(test_lmdb), "fp32": asdict(fp32), "int8": asdict(int8),
            "accuracy_drop_points": 100 * (fp32.accuracy - int8.accuracy),
            "size_ratio": fp32.size_mb / int8.size_mb, "speedup": int8.images_per_s / fp32.images_per_s}


def format_comparison(report: dict) -> str:
    rows = [f"{'':6}{'accuracy':>10}{'size MB':>10}{'images/s':>10}"]
    for key in ("fp32", "int8"):
        v = report[key]
        rows.append(f"{v['precision']:6}{100 * v['accuracy']:9.1f}%{v['size_mb']:10.2f}{v['images_per_s']:10.1f}")
    rows.append(f"INT8 vs FP32 on {report['test_lmdb']}: accuracy drop {report['accuracy_drop_points']:.1f} points, "
                f"{report['size_ratio']:.1f}x smaller, {report['speedup']:.2f}x throughput")
    return "\n".join(rows)


def default_test_lmdb(calibration: str | os.PathLike) -> Path | None:
    """The LMDB whose INT8-vs-FP32 drop decides whether run_inference uses the INT8 build: age_train_lmdb ->
    age_val_lmdb beside it (the validation faces carved from the training part), else age_test_lmdb, else None."""
    path = Path(calibration)
    if "train" not in path.name:
        return None
    for split in ("val", "test"):
        candidate = path.with_name(path.name.replace("train", split))
        if (candidate / "data.mdb").is_file():
            return candidate
    return None
