"""AgeGenderNet (one trunk, two heads) against AgeNet + GenderNet: the time for both answers of a face.

    .venv/bin/python benchmarks/bench_agegender_net.py [--precision FP32] [--faces 300] [--rounds 5]

Each prototxt/NET_deploy.prototxt is compiled (agegender compile) with the newest models/NET snapshot, else
random weights (which time the same), and run by agegender.deploy.runtime.Classifier as run_inference runs it:
latency = one face at a time (LATENCY hint; AgeNet then GenderNet, or one AgeGenderNet inference), median ms
per face; throughput = faces/s through the async queues (THROUGHPUT hint; two queues or one). The two ways take
turns in every round and the figures are medians over the rounds (the machine is shared and noisy).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender.deploy.compile import random_caffemodel  # noqa: E402
from agegender.errors import AgegenderError  # noqa: E402
from agegender.fileio import newest_snapshot  # noqa: E402
from agegender.layers.net import Net  # noqa: E402

NETS = ("AgeNet", "GenderNet", "AgeGenderNet")


def compile_graphs(workdir: Path, precision: str) -> dict[str, str]:
    """graph/NET.xml for each net in ``workdir``; returns where each net's weights came from."""
    origin = {}
    for name in NETS:
        prototxt = ROOT / "prototxt" / f"{name}_deploy.prototxt"
        try:
            weights, origin[name] = newest_snapshot(ROOT / "models" / name), "trained"
        except AgegenderError:
            weights = random_caffemodel(Net.from_file(prototxt), workdir / f"{name}.caffemodel")
            origin[name] = "random"
        subprocess.run([sys.executable, "-m", "agegender", "compile", "--model", str(prototxt), "--weights",
                        str(weights), "--output", str(workdir / name / name), "--precision", precision,
                        "--check", "none"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return origin


def latency(run, inputs: list[np.ndarray]) -> float:
    """Median ms per face, one after another."""
    times = []
    for x in inputs:
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def throughput(queues, inputs: list[np.ndarray]) -> float:
    """Faces/s with every face submitted to each queue (both answers of every face in hand at the end)."""
    start = time.perf_counter()
    for index, x in enumerate(inputs):
        for queue in queues:
            queue.submit(x, index)
    for queue in queues:
        queue.wait()
    return len(inputs) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("FP32", "FP16"), default="FP32")
    parser.add_argument("--faces", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from agegender.deploy.runtime import LATENCY, THROUGHPUT, Classifier

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        origin = compile_graphs(Path(tmp), args.precision)
        graph = {(name, hint): Classifier(Path(tmp) / name / f"{name}.xml", "CPU", "", hint=hint)
                 for name in NETS for hint in (LATENCY, THROUGHPUT)}
        inputs = [rng.standard_normal((1, 3, 227, 227)).astype(np.float32) * 50 for _ in range(args.faces)]
        age, gender, joint = (graph[name, LATENCY] for name in NETS)
        ways = {"two nets": lambda x: (age.predict(x), gender.predict(x)), "AgeGenderNet": joint.predict_heads}
        queues = {"two nets": [graph["AgeNet", THROUGHPUT].pipeline(lambda *_: None),
                               graph["GenderNet", THROUGHPUT].pipeline(lambda *_: None)],
                  "AgeGenderNet": [graph["AgeGenderNet", THROUGHPUT].pipeline(lambda *_: None, heads=True)]}
        results = {way: {"ms": [], "faces/s": []} for way in ways}
        for _ in range(args.rounds):
            for way in ways:
                results[way]["ms"].append(latency(ways[way], inputs[:100]))
                results[way]["faces/s"].append(throughput(queues[way], inputs))
    load = os.getloadavg()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load[0]:.1f}; "
          f"{args.precision} IRs, weights: {', '.join(f'{k} {v}' for k, v in origin.items())}")
    medians = {way: {k: float(np.median(v)) for k, v in r.items()} for way, r in results.items()}
    for way, m in medians.items():
        print(f"{way:13s} latency {m['ms']:.2f} ms per face (median of {args.rounds} rounds of 100), "
              f"throughput {m['faces/s']:.1f} faces/s ({args.faces} faces per round)")
    two, one = medians["two nets"], medians["AgeGenderNet"]
    print(f"AgeGenderNet / two nets: latency {one['ms'] / two['ms']:.2f}x, throughput "
          f"{one['faces/s'] / two['faces/s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
