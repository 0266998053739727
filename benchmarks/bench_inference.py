"""One caffemodel (AgeNet unless --net GenderNet), five ways to run it on this CPU: OpenVINO IR in FP32, FP16
and INT8, OpenCV 4 dnn reading the caffemodel itself, and the PyTorch engine (eager). Same input, same run.

    .venv/bin/python benchmarks/bench_inference.py [--net AgeNet|GenderNet] [--rounds 5] [--json FILE]

Net: prototxt/NET_deploy.prototxt (else the Levi & Hassner deploy prototxt in ../shared); weights: the newest
models/NET snapshot (else random weights, which time the same). INT8 is calibrated on 300 TEST-phase inputs
from data/lmdb/TASK_train_lmdb, else from the UTKFace faces in ../shared, else random inputs; its accuracy next
to FP32 is measured when data/lmdb/TASK_test_lmdb exists.

Latency: batch 1, one inference after another; median and p90. Throughput: images/s with the engine's own
parallelism: OpenVINO's THROUGHPUT hint with its infer requests kept busy, OpenCV and PyTorch with batches of 8 on all
threads. The machine is shared and noisy, so the engines take turns in every round and figures are medians
over the rounds. Ratios are to OpenCV dnn (higher is better for throughput, lower for latency).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from agegender.caffe import read_mean  # noqa: E402
from agegender.deploy import quantize as q  # noqa: E402
from agegender.deploy.compile import CALIBRATION_SIZE, random_caffemodel  # noqa: E402
from agegender.errors import AgegenderError  # noqa: E402
from agegender.fileio import newest_snapshot, write_text_atomic  # noqa: E402
from agegender.layers.net import Net  # noqa: E402

Run = Callable[[np.ndarray], object]
BATCH = 8


TASKS = {"AgeNet": "age", "GenderNet": "gender"}


def pick_inputs(name: str, workdir: Path) -> tuple[Path, Path, np.ndarray | None, str]:
    """(prototxt, caffemodel, mean, description) following the docstring's order of preference."""
    prototxt = ROOT / "prototxt" / f"{name}_deploy.prototxt"
    if not prototxt.exists():
        prototxt = SHARED / "caffe-fixtures" / "levi-hassner" / f"{TASKS[name]}_deploy.prototxt"
    try:
        weights, origin = newest_snapshot(ROOT / "models" / name), "trained"
    except AgegenderError:
        weights, origin = random_caffemodel(Net.from_file(prototxt), workdir / "random.caffemodel"), "random"
    mean = None
    for candidate in (ROOT / "data" / "mean" / "mean.binaryproto",
                      SHARED / "caffe-fixtures" / "levi-hassner" / "mean.binaryproto"):
        if candidate.exists():
            mean = read_mean(candidate)
            break
    return prototxt, weights, mean, f"{prototxt.relative_to(ROOT.parent)} + {origin} weights {weights.name}"


def calibration(task: str, mean: np.ndarray | None, crop: int, size: int = CALIBRATION_SIZE
                ) -> tuple[list[np.ndarray], str]:
    lmdb = ROOT / "data" / "lmdb" / f"{task}_train_lmdb"
    if (lmdb / "data.mdb").exists():
        return q.calibration_inputs(lmdb, mean, crop, size), str(lmdb.relative_to(ROOT))
    faces = sorted((SHARED / "datasets" / "utkface-asian").glob("*.jpg"))[:size]
    if faces and mean is not None:
        import cv2

        from agegender.preprocess import face_to_input

        inputs = [face_to_input(cv2.imread(str(f)), mean, crop) for f in faces]
        return inputs, f"{len(faces)} UTKFace faces in ../shared"
    rng = np.random.default_rng(0)
    return [rng.uniform(-120, 120, (1, 3, crop, crop)).astype(np.float32) for _ in range(size)], "random inputs"


def build_irs(net: Net, weights: Path, workdir: Path, inputs: list[np.ndarray]) -> dict[str, Path]:
    import openvino as ov

    from agegender.layers.openvino_ops import build_model

    model = build_model(net, net.weights_from(weights))
    paths = {p: workdir / p / "net.xml" for p in ("FP32", "FP16", "INT8")}
    ov.save_model(model, paths["FP32"], compress_to_fp16=False)
    ov.save_model(model, paths["FP16"], compress_to_fp16=True)
    ov.save_model(q.quantize(model, inputs, "cpu"), paths["INT8"], compress_to_fp16=False)
    return paths


def openvino_runners(xml: Path) -> tuple[Run, Callable[[np.ndarray], float]]:
    import openvino as ov

    config = q.FP32_CPU  # as run_inference: f32 arithmetic on a CPU, whatever the IR stores
    core = ov.Core()
    latency = core.compile_model(str(xml), "CPU", {**config, "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
    parallel = core.compile_model(str(xml), "CPU", {**config, "PERFORMANCE_HINT": "THROUGHPUT"})
    return (lambda x: latency.infer({0: x})), (lambda x: q.throughput(parallel, x, seconds=2.0))


def opencv_runner(prototxt: Path, weights: Path) -> Run:
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)

    def run(x: np.ndarray):
        net.setInput(x)
        return net.forward()

    return run


def torch_runner(net: Net, weights: Path) -> Run | None:
    try:
        import torch

        from agegender.layers.torch_net import TorchNet
    except ImportError:
        return None
    model = TorchNet(net, net.weights_from(weights)).eval()
    name = net.inputs[0]

    def run(x: np.ndarray):
        with torch.inference_mode():
            return model({name: torch.from_numpy(x)})

    return run


def latency_ms(run: Run, x: np.ndarray, n: int) -> list[float]:
    run(x)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run(x)
        times.append(1e3 * (time.perf_counter() - start))
    return times


def batched_throughput(run: Run, x: np.ndarray, seconds: float = 2.0) -> float:
    batch = np.repeat(x, BATCH, axis=0)
    run(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(batch)
        done += BATCH
    return done / (time.perf_counter() - start)


def int8_accuracy(task: str, irs: dict[str, Path], mean, crop: int) -> dict | None:
    test = ROOT / "data" / "lmdb" / f"{task}_test_lmdb"
    if not (test / "data.mdb").exists():
        return None
    from agegender.tasks import TASKS

    return q.compare_int8(irs["FP32"], irs["INT8"], str(test), mean, crop, TASKS[task].classes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", choices=sorted(TASKS), default="AgeNet", help="which net (default AgeNet)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; every engine runs in each (default 5)")
    parser.add_argument("--latency-runs", type=int, default=20, help="batch-1 inferences per engine per round")
    parser.add_argument("--json", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        prototxt, weights, mean, description = pick_inputs(args.net, workdir)
        net = Net.from_file(prototxt, "TEST")
        crop = net.blob_shapes[net.inputs[0]][-1]
        inputs, calibration_source = calibration(TASKS[args.net], mean, crop)
        print(f"net: {description}; INT8 calibrated on {len(inputs)} inputs from {calibration_source}", flush=True)
        irs = build_irs(net, weights, workdir, inputs)
        engines: dict[str, tuple[Run, Callable[[np.ndarray], float]]] = {}
        for precision, xml in irs.items():
            engines[f"OpenVINO IR {precision}"] = openvino_runners(xml)
        cv_run = opencv_runner(prototxt, weights)
        engines["OpenCV dnn (caffemodel)"] = (cv_run, lambda x, r=cv_run: batched_throughput(r, x))
        torch_run = torch_runner(net, weights)
        if torch_run is not None:
            engines["PyTorch eager"] = (torch_run, lambda x, r=torch_run: batched_throughput(r, x))

        x = inputs[0]
        latencies = {name: [] for name in engines}
        throughputs = {name: [] for name in engines}
        for round_index in range(args.rounds):
            for name, (run, parallel) in engines.items():
                latencies[name] += latency_ms(run, x, args.latency_runs)
                throughputs[name].append(parallel(x))
            print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        accuracy = int8_accuracy(TASKS[args.net], irs, mean, crop)

    base = "OpenCV dnn (caffemodel)"
    rows = {}
    for name in engines:
        rows[name] = {"latency_median_ms": float(np.median(latencies[name])),
                      "latency_p90_ms": float(np.percentile(latencies[name], 90)),
                      "images_per_s": float(np.median(throughputs[name]))}
    for row in rows.values():
        row["throughput_vs_opencv"] = row["images_per_s"] / rows[base]["images_per_s"]
        row["latency_vs_opencv"] = row["latency_median_ms"] / rows[base]["latency_median_ms"]
    print(format_table(rows))
    if accuracy:
        print(q.format_comparison(accuracy))
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores"
    print(f"machine: {machine}; {args.rounds} rounds x {args.latency_runs} batch-1 runs per engine")
    if args.json:
        write_text_atomic(args.json, json.dumps({"net": description, "calibration": calibration_source,
                                                 "machine": machine, "engines": rows, "int8_vs_fp32": accuracy},
                                                indent=2) + "\n")
    return 0


def format_table(rows: dict[str, dict]) -> str:
    lines = ["| engine | latency median (ms) | latency p90 (ms) | images/s | throughput vs OpenCV "
             "| latency vs OpenCV |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['latency_median_ms']:.2f} | {r['latency_p90_ms']:.2f} | {r['images_per_s']:.1f} "
                     f"| {r['throughput_vs_opencv']:.2f}x | {r['latency_vs_opencv']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
