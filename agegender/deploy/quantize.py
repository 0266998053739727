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

from agegender.caffe import datum_to_array, lmdb_size, read_lmdb
from agegender.errors import AgegenderError
from agegender.preprocess import transform

DEFAULT_CALIBRATION_SIZE = 300
FP32_CPU = {"INFERENCE_PRECISION_HINT": "f32"}  # no silent bf16/fp16 on CPUs that have them


def calibration_inputs(lmdb: str | os.PathLike, mean: np.ndarray | None, crop: int, size: int) -> list[np.ndarray]:
    """``size`` 1xCxcropxcrop inputs from records spread evenly over the LMDB (all when it holds fewer)."""
    total = lmdb_size(lmdb)
    if total == 0:
        raise AgegenderError(f"calibration LMDB {lmdb} holds no records")
    step = max(total // size, 1)
    inputs = []
    for index, (_, datum) in enumerate(read_lmdb(lmdb)):
        if index % step == 0 and len(inputs) < size:
            inputs.append(transform(datum_to_array(datum), mean, crop)[None])
    return inputs


def quantize(model: ov.Model, inputs: Sequence[np.ndarray], target: str) -> ov.Model:
    """NNCF post-training quantization (min-max ranges + fast bias correction) on ``inputs``."""
    import nncf

    device = {"npu": nncf.TargetDevice.NPU}.get(target, nncf.TargetDevice.CPU)
    return nncf.quantize(model, nncf.Dataset(list(inputs)), subset_size=len(inputs), target_device=device)


def throughput(compiled: ov.CompiledModel, sample: np.ndarray, seconds: float = 3.0) -> float:
    """Images per second with all of the device's parallel infer requests busy (AsyncInferQueue)."""
    requests = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    queue = ov.AsyncInferQueue(compiled, requests)
    batch = sample.shape[0]
    for _ in range(requests):  # warm-up
        queue.start_async({0: sample})
    queue.wait_all()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: sample})
        done += batch
    queue.wait_all()
    return done / (time.perf_counter() - start)


@dataclass
class VariantScore:
    precision: str
    accuracy: float
    size_mb: float
    images_per_s: float


def score_variant(xml: str | os.PathLike, precision: str, test_lmdb: str, mean: np.ndarray | None,
                  crop: int, classes: Sequence[str], config: dict) -> VariantScore:
    from agegender.evaluate import evaluate

    compiled = ov.Core().compile_model(str(xml), "CPU", {**config, "PERFORMANCE_HINT": "THROUGHPUT"})
    queue = ov.AsyncInferQueue(compiled)
    results: dict[int, np.ndarray] = {}
    queue.set_callback(lambda request, index: results.__setitem__(index, request.get_output_tensor(0).data.ravel().copy()))

    def predict(batch: np.ndarray) -> np.ndarray:
        for index, image in enumerate(batch):
            queue.start_async({0: image[None]}, index)
        queue.wait_all()
        return np.stack([results.pop(i) for i in range(len(batch))])

    scores = evaluate(predict, test_lmdb, mean, crop, classes)
    sample = np.zeros(tuple(compiled.input(0).shape), np.float32)
    size = Path(xml).with_suffix(".bin").stat().st_size + Path(xml).stat().st_size
    return VariantScore(precision, scores.accuracy, size / 1e6, throughput(compiled, sample))


def compare_int8(fp32_xml: str | os.PathLike, int8_xml: str | os.PathLike, test_lmdb: str,
                 mean: np.ndarray | None, crop: int, classes: Sequence[str]) -> dict:
    """FP32 and INT8 side by side on the test LMDB; the accuracy drop is in points (percent)."""
    fp32 = score_variant(fp32_xml, "FP32", test_lmdb, mean, crop, classes, FP32_CPU)
    int8 = score_variant(int8_xml, "INT8", test_lmdb, mean, crop, classes, {})
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
    """age_train_lmdb -> age_test_lmdb beside it, when that exists."""
    path = Path(calibration)
    if "train" not in path.name:
        return None
    candidate = path.with_name(path.name.replace("train", "test"))
    return candidate if (candidate / "data.mdb").is_file() else None
