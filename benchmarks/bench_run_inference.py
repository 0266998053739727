"""Speed of run_inference on one OpenVINO device (CPU by default): faces per second in folder mode
(async queue) against one request at a time, the end-to-end time per photo, and the model cache.

    .venv/bin/python benchmarks/bench_run_inference.py [--images 200] [--device CPU] [--graph_dir graph]

Graphs: the compiled graph/AgeNet.xml + GenderNet.xml when present; else stand-ins of the same size
(prototxt/*_deploy.prototxt with random weights, compiled to FP16 IR by `agegender compile`); the first
output line says which. Images: the first --images real UTKFace chips of ../shared (200x200 JPEG), and a
synthetic 1280x960 photo holding three of them. The last line is ``async/sync faces per second: X.XX``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender.deploy.faces import FaceFinder  # noqa: E402
from agegender.deploy.runtime import LATENCY, THROUGHPUT, Classifier  # noqa: E402
from agegender.infer import Nets, predict_faces, read_image, stream  # noqa: E402

SHARED = ROOT.parent / "shared"
UTKFACE = SHARED / "datasets" / "utkface-asian"
LH_MEAN = SHARED / "caffe-fixtures" / "levi-hassner" / "mean.binaryproto"
NETS = (("AgeNet", "age"), ("GenderNet", "gender"))
ROUNDS = 4


def graphs(graph_dir: Path, scratch: Path) -> tuple[Path, str]:
    if all((graph_dir / f"{name}.xml").is_file() for name, _ in NETS):
        return graph_dir, f"real compiled graphs in {graph_dir}"
    from agegender.deploy.compile import random_caffemodel
    from agegender.layers.net import Net

    for name, task in NETS:
        prototxt = ROOT / "prototxt" / f"{name}_deploy.prototxt"
        weights = random_caffemodel(Net.from_file(prototxt, "TEST"), scratch / f"{name}.caffemodel", seed=1)
        subprocess.run([sys.executable, "-m", "agegender", "compile", "--model", str(prototxt), "--weights",
                        str(weights), "--mean", str(LH_MEAN), "--output", str(scratch / "graph" / name),
                        "--labels", task, "--check", "none"], cwd=ROOT, check=True, capture_output=True)
    return scratch / "graph", ("stand-in graphs (no trained graph/ yet): prototxt/AgeNet_deploy + GenderNet_deploy "
                               "with random weights, compiled to FP16 IR by `agegender compile`")


def load(graph_dir: Path, device: str, hint: str, cache: Path | str) -> Nets:
    return Nets(*(Classifier(graph_dir / f"{name}.xml", device, cache, hint=hint) for name, _ in NETS))


def start_ms(graph_dir: Path, device: str, cache: Path | str) -> float:
    """A fresh process's time to read and compile both nets (what a user waits for before the first face)."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from agegender.deploy.runtime import Classifier; "
            "t = time.perf_counter(); "
            "[Classifier(f'{sys.argv[2]}/{n}.xml', sys.argv[3], sys.argv[4]) for n in ('AgeNet', 'GenderNet')]; "
            "print(1000 * (time.perf_counter() - t))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(graph_dir), device, str(cache)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def folder_sync(nets: Nets, finder: FaceFinder, paths: list[Path]) -> tuple[int, float]:
    """The original's way: one image after another, one request at a time."""
    start, faces = time.perf_counter(), 0
    for path in paths:
        image = read_image(path)
        faces += len(predict_faces(nets, image, finder.find(image)))
    return faces, time.perf_counter() - start


def folder_async(nets: Nets, finder: FaceFinder, paths: list[Path], jobs: int) -> tuple[int, float]:
    """Folder mode: decode and detect the next images while both async queues run the previous faces."""
    start = time.perf_counter()
    sources = ((path.name, read_image(path), None) for path in paths)
    faces = sum(len(record.results) for record in stream(nets, finder, sources, False, jobs))
    return faces, time.perf_counter() - start


def nets_only(nets: Nets, inputs: np.ndarray, pipelined: bool) -> float:
    """Faces per second through both nets alone (inputs already preprocessed)."""
    start = time.perf_counter()
    if pipelined:
        nets.age.predict(inputs), nets.gender.predict(inputs)
    else:
        for x in inputs:
            nets.age.predict(x[None]), nets.gender.predict(x[None])
    return len(inputs) / (time.perf_counter() - start)


def photo(paths: list[Path], target: Path) -> Path:
    canvas = np.full((960, 1280, 3), 90, np.uint8)
    for i, path in enumerate(paths[:3]):
        face = cv2.resize(cv2.imread(str(path)), (300, 300))
        canvas[330:630, 60 + i * 420:360 + i * 420] = face
    cv2.imwrite(str(target), canvas)
    return target


def per_photo(nets: Nets, finder: FaceFinder, path: Path, repeats: int) -> dict:
    """Median ms of each step of a single-image run: decode, detect, both nets on every face."""
    steps = {"decode": [], "detect": [], "nets": [], "total": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        image = read_image(path)
        t1 = time.perf_counter()
        faces = finder.find(image)
        t2 = time.perf_counter()
        predict_faces(nets, image, faces)
        t3 = time.perf_counter()
        for step, ms in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            steps[step].append(1000 * ms)
    return {step: statistics.median(v) for step, v in steps.items()} | {"faces": len(faces.boxes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="UTKFace chips for folder mode (default 200)")
    parser.add_argument("--device", default="CPU", help="OpenVINO device (default CPU)")
    parser.add_argument("--graph_dir", type=Path, default=ROOT / "graph")
    parser.add_argument("--faces", default="auto", choices=("auto", "haar", "none"))
    parser.add_argument("--jobs", type=int, default=0, help="async requests per net (default: the device's optimal)")
    parser.add_argument("--repeats", type=int, default=20, help="runs of the single-photo measurement")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not UTKFACE.is_dir():
        sys.exit(f"{UTKFACE} is absent: the benchmark reads real UTKFace chips from ../shared")
    paths = sorted(UTKFACE.glob("*.jpg"))[:args.images]
    finder = FaceFinder(args.faces)
    with tempfile.TemporaryDirectory(prefix="bench_run_inference.") as tmp:
        scratch = Path(tmp)
        graph_dir, which = graphs(args.graph_dir, scratch)
        print(f"graphs: {which}")
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
              f"{Classifier(graph_dir / 'AgeNet.xml', args.device, '').device_name}, "
              f"load average {os.getloadavg()[0]:.1f} (other work on the machine slows every figure)")

        cache = scratch / "cache"
        starts = {"first start (empty cache)": start_ms(graph_dir, args.device, cache),
                  "second start (model cache)": start_ms(graph_dir, args.device, cache),
                  "start without cache": start_ms(graph_dir, args.device, "")}
        for what, ms in starts.items():
            print(f"{what}: {ms:.0f} ms to compile both nets")

        sync_nets = load(graph_dir, args.device, LATENCY, cache)
        async_nets = load(graph_dir, args.device, THROUGHPUT, cache)
        inputs = np.concatenate([sync_nets.age.preprocess(read_image(p)) for p in paths[:64]])
        folder_sync(sync_nets, finder, paths[:8]), folder_async(async_nets, finder, paths[:8], args.jobs)  # warm-up
        nets_sync, nets_async = nets_only(sync_nets, inputs, False), nets_only(async_nets, inputs, True)
        print(f"both nets only, {len(inputs)} faces: one request at a time {nets_sync:.1f} faces/s, "
              f"async queue {nets_async:.1f} faces/s")

        sync_faces = async_faces = 0
        sync_s = async_s = 0.0
        for round_ in range(ROUNDS):  # interleaved, so a change in the machine's load hits both alike
            chunk = paths[round_::ROUNDS]
            faces, seconds = folder_sync(sync_nets, finder, chunk)
            sync_faces, sync_s = sync_faces + faces, sync_s + seconds
            faces, seconds = folder_async(async_nets, finder, chunk, args.jobs)
            async_faces, async_s = async_faces + faces, async_s + seconds
        sync_rate, async_rate = sync_faces / sync_s, async_faces / async_s
        print(f"folder of {len(paths)} UTKFace chips (decode + --faces {args.faces} + both nets), "
              f"device {async_nets.age.device}:")
        print(f"  one request at a time: {sync_faces} faces in {sync_s:.2f} s = {sync_rate:.1f} faces/s")
        print(f"  folder mode (async):   {async_faces} faces in {async_s:.2f} s = {async_rate:.1f} faces/s")

        chip = per_photo(sync_nets, finder, paths[0], args.repeats)
        group = per_photo(sync_nets, finder, photo(paths, scratch / "photo.jpg"), args.repeats)
        for what, m in (("200x200 UTKFace chip", chip), ("1280x960 photo", group)):
            print(f"end to end per photo, {what} ({m['faces']} face{'s' * (m['faces'] != 1)}): {m['total']:.1f} ms "
                  f"(decode {m['decode']:.1f}, detect {m['detect']:.1f}, both nets {m['nets']:.1f})")
    if args.json:
        args.json.write_text(json.dumps({
            "graphs": which, "device": args.device, "images": len(paths), "faces_mode": args.faces,
            "start_ms": starts, "nets_only_faces_per_s": {"sync": nets_sync, "async": nets_async},
            "folder_faces_per_s": {"sync": sync_rate, "async": async_rate},
            "per_photo_ms": {"chip": chip, "photo": group}}, indent=2) + "\n")
    print(f"async/sync faces per second: {async_rate / sync_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
