"""Speed of run_inference on one OpenVINO device (CPU by default), today's path against the path before the
detector seam, in the same run: folder mode on UTKFace chips (faces/s) and one 1280x960 photo (ms per stage).

    .venv/bin/python benchmarks/bench_run_inference.py [--images 200] [--device CPU] [--graph_dir graph]
                     [--now-graph-dir DIR] [--detector NAME] [--detector-dir ../shared/caffe-fixtures] [--workers 0]
                     [--align auto|onet|none] [--min-face PX]

"before" (run_inference at d12b715): the Haar cascade on every image; in a folder, decoding, detecting and
preprocessing on the calling thread while both nets' async queues run; for one photo, its faces one at a
time through both nets (LATENCY). "now": --detector (default: the best installed in --detector-dir) with
--align's landmarks (default: MTCNN's O-Net when in --detector-dir: aligned crops, as run_inference.py), face
crops <= 256 px used whole without a detector pass; in a folder, decode/detect/crop/preprocess in --workers
threads feeding the same queues; for one photo, all its faces in both nets' async queues at once; and the
nets run_inference.py loads today (``--now-graph-dir``, default --graph_dir): AgeGenderNet.xml when the folder
holds it (one inference per face), else AgeNet + GenderNet as their INT8 builds on a CPU when those hold.
Beside wall time, the process's CPU time (all threads), which other work on a loaded machine disturbs less. Rounds alternate the two so load changes hit both alike.
Graphs: the compiled graph/AgeNet.xml + GenderNet.xml when present; else stand-ins of the same size
(prototxt/*_deploy.prototxt with random weights, compiled to FP16 IR by `agegender compile`); the first
output line says which. Images: the first --images real UTKFace chips of ../shared (200x200 JPEG), and a
synthetic 1280x960 photo holding three of them. The last line is ``now/before faces per second: X.XX``.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
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

from agegender.deploy import detectors  # noqa: E402
from agegender.deploy.faces import FaceFinder  # noqa: E402
from agegender.deploy.runtime import LATENCY, THROUGHPUT, Classifier  # noqa: E402
from agegender.infer import Nets, _load, load_nets, predict_faces, read_image, stream  # noqa: E402

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


def load_now(graph_dir: Path, device: str, hint: str, cache: Path | str) -> Nets:
    """The nets run_inference.py loads from ``graph_dir`` today: AgeGenderNet.xml when present (one pass for
    both heads), else AgeNet + GenderNet, each as its INT8 build on a CPU when it holds (runtime.pick_ir)."""
    args = argparse.Namespace(graph_dir=str(graph_dir), device=device, cache_dir=str(cache), mean_file=None)
    with contextlib.redirect_stderr(io.StringIO()):  # pick_ir's notices
        return load_nets(args, hint)


def describe(nets: Nets) -> str:
    used = [nets.joint] if nets.joint is not None else [nets.age, nets.gender]
    return ", ".join(f"{net.xml.name} ({net.meta.precision})" for net in used)


def start_ms(graph_dir: Path, device: str, cache: Path | str) -> float:
    """A fresh process's time to read and compile both nets (what a user waits for before the first face)."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from agegender.deploy.runtime import Classifier; "
            "t = time.perf_counter(); "
            "[Classifier(f'{sys.argv[2]}/{n}.xml', sys.argv[3], sys.argv[4]) for n in ('AgeNet', 'GenderNet')]; "
            "print(1000 * (time.perf_counter() - t))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(graph_dir), device, str(cache)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def folder_before(nets: Nets, finder: FaceFinder, paths: list[Path], jobs: int) -> tuple[int, float]:
    """The path before: each image decoded, detected and preprocessed on the calling thread, its faces handed
    to both async queues (run_inference's stream() at d12b715)."""
    start, faces = time.perf_counter(), 0
    with nets.age.pipeline(lambda tag, p: None, jobs) as age_queue, \
            nets.gender.pipeline(lambda tag, p: None, jobs) as gender_queue:
        for path in paths:
            image = read_image(path)
            found = finder.find(image)
            for box in found.boxes:
                x_age, x_gender = nets.inputs(box.crop(image))
                age_queue.submit(x_age, None)
                gender_queue.submit(x_gender, None)
            faces += len(found.boxes)
    return faces, time.perf_counter() - start


def folder_now(nets: Nets, finder: FaceFinder, paths: list[Path], jobs: int, workers: int) -> tuple[int, float]:
    """Folder mode today: run_inference's stream() with its decode/detect/crop workers."""
    start = time.perf_counter()
    sources = ((path.name, functools.partial(_load, path)) for path in paths)
    faces = sum(len(record.results) for record in stream(nets, finder, sources, False, jobs, workers))
    return faces, time.perf_counter() - start


def nets_only(nets: Nets, inputs: np.ndarray, pipelined: bool) -> float:
    """Faces per second through both nets alone (inputs already preprocessed); AgeGenderNet: one pass."""
    start = time.perf_counter()
    if nets.joint is not None:
        if pipelined:
            with nets.joint.pipeline(lambda tag, heads: None, heads=True) as queue:
                for index, x in enumerate(inputs):
                    queue.submit(x[None], index)
        else:
            for x in inputs:
                nets.joint.predict_heads(x[None])
    elif pipelined:
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


def nets_before(nets: Nets, image: np.ndarray, faces) -> None:
    """Before: one face after another, age then gender, one request at a time (LATENCY)."""
    for box in faces.boxes:
        x_age, x_gender = nets.inputs(box.crop(image))
        nets.age.predict(x_age), nets.gender.predict(x_gender)


def per_photo(ways: dict, path: Path, repeats: int) -> dict:
    """Median ms of each step of a single-image run (run_inference --image_path) for each way
    (name -> (nets, finder, run_nets)), the ways alternating run by run: decode, detect, crop + preprocess +
    both nets, and the total."""
    steps = {way: {"decode": [], "detect": [], "nets": [], "total": [], "faces": [], "cpu": []} for way in ways}
    for _ in range(repeats):
        for way, (nets, finder, run_nets) in ways.items():
            cpu = time.process_time()
            t0 = time.perf_counter()
            image = read_image(path)
            t1 = time.perf_counter()
            faces = finder.find(image)
            t2 = time.perf_counter()
            run_nets(nets, image, faces)
            t3 = time.perf_counter()
            cpu = time.process_time() - cpu
            for step, value in zip(steps[way], (t1 - t0, t2 - t1, t3 - t2, t3 - t0, len(faces.boxes) / 1000, cpu)):
                steps[way][step].append(1000 * value)
    return {way: {step: statistics.median(v) for step, v in s.items()} for way, s in steps.items()}


def _stages(m: dict) -> str:
    return (f"{m['total']:.1f} ms (decode {m['decode']:.1f}, detect {m['detect']:.1f}, crop + both nets "
            f"{m['nets']:.1f}; {m['faces']:.0f} face{'s' * (m['faces'] != 1)}; {m['cpu']:.1f} CPU ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="UTKFace chips for folder mode (default 200)")
    parser.add_argument("--device", default="CPU", help="OpenVINO device (default CPU)")
    parser.add_argument("--graph_dir", type=Path, default=ROOT / "graph",
                        help="AgeNet.xml + GenderNet.xml (FP16) for the path before, and by default for now")
    parser.add_argument("--now-graph-dir", type=Path,
                        help="the graph folder of today's path (default: --graph_dir), loaded as run_inference.py "
                             "does: AgeGenderNet.xml when present, INT8 builds on a CPU when they hold")
    parser.add_argument("--detector", choices=tuple(detectors.REGISTRY), help="default: the best installed")
    parser.add_argument("--detector-dir", type=Path, default=SHARED / "caffe-fixtures")
    parser.add_argument("--jobs", type=int, default=0, help="async requests per net (default: the device's optimal)")
    parser.add_argument("--workers", type=int, default=0, help="decode/detect threads (default: one per CPU)")
    parser.add_argument("--repeats", type=int, default=20, help="runs of the single-photo measurement")
    parser.add_argument("--align", choices=detectors.ALIGN_MODES, default="auto",
                        help="now: landmarks for aligned crops, as run_inference.py's --align (default auto)")
    parser.add_argument("--min-face", type=float, help="now: run_inference.py's --min-face (default: the "
                                                       "detector's own; 0: one detector pass per photo)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not UTKFACE.is_dir():
        sys.exit(f"{UTKFACE} is absent: the benchmark reads real UTKFace chips from ../shared")
    paths = sorted(UTKFACE.glob("*.jpg"))[:args.images]
    with tempfile.TemporaryDirectory(prefix="bench_run_inference.") as tmp:
        scratch = Path(tmp)
        graph_dir, which = graphs(args.graph_dir, scratch)
        cache = scratch / "cache"
        detector = detectors.load(args.detector, [args.detector_dir], args.device, cache)
        before = FaceFinder("auto", detectors.load("haar", []), no_detect_side=0)
        landmarker = detectors.load_landmarker(args.align, [args.detector_dir], lambda: (args.device, cache))
        now = FaceFinder("auto", detector, landmarker=landmarker, min_face=args.min_face)
        print(f"graphs: {which}")
        print(f"detectors: before haar, now {detector.name} ({detector.source})"
              + (f" + {landmarker.name} landmarks (aligned crops)" if landmarker else ""))
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
              f"{Classifier(graph_dir / 'AgeNet.xml', args.device, '').device_name}, "
              f"load average {os.getloadavg()[0]:.1f} (other work on the machine slows every figure)")

        starts = {"first start (empty cache)": start_ms(graph_dir, args.device, cache),
                  "second start (model cache)": start_ms(graph_dir, args.device, cache),
                  "start without cache": start_ms(graph_dir, args.device, "")}
        for what, ms in starts.items():
            print(f"{what}: {ms:.0f} ms to compile both nets")

        sync_nets = load(graph_dir, args.device, LATENCY, cache)
        async_nets = load(graph_dir, args.device, THROUGHPUT, cache)
        now_dir = args.now_graph_dir or graph_dir
        now_sync, now_async = (load_now(now_dir, args.device, hint, cache) for hint in (LATENCY, THROUGHPUT))
        print(f"nets before: {describe(async_nets)}; now: {describe(now_async)} (in {now_dir})")
        inputs = np.concatenate([sync_nets.age.preprocess(read_image(p)) for p in paths[:64]])
        folder_before(async_nets, before, paths[:8], args.jobs), folder_now(now_async, now, paths[:8], args.jobs,
                                                                           args.workers)  # warm-up
        nets_sync, nets_async = nets_only(sync_nets, inputs, False), nets_only(async_nets, inputs, True)
        print(f"both nets only, {len(inputs)} faces, before: one request at a time {nets_sync:.1f} faces/s, "
              f"async queue {nets_async:.1f} faces/s")
        now_only = {"sync": nets_only(now_sync, inputs, False), "async": nets_only(now_async, inputs, True)}
        print(f"both heads only, {len(inputs)} faces, now: one request at a time {now_only['sync']:.1f} faces/s, "
              f"async queue {now_only['async']:.1f} faces/s")

        totals = {"before": [0, 0.0, 0.0], "now": [0, 0.0, 0.0]}
        runs = {"before": lambda chunk: folder_before(async_nets, before, chunk, args.jobs),
                "now": lambda chunk: folder_now(now_async, now, chunk, args.jobs, args.workers)}
        for round_ in range(ROUNDS):  # interleaved, so a change in the machine's load hits both alike
            chunk = paths[round_::ROUNDS]
            for what, run in runs.items():
                cpu = time.process_time()
                faces, seconds = run(chunk)
                totals[what][0] += faces
                totals[what][1] += seconds
                totals[what][2] += time.process_time() - cpu
        rates = {what: faces / seconds for what, (faces, seconds, _) in totals.items()}
        cpu_ms = {what: 1000 * cpu / faces for what, (faces, _, cpu) in totals.items()}
        print(f"folder of {len(paths)} UTKFace chips, --faces auto, device {async_nets.age.device}:")
        print(f"  before (Haar on every chip, one thread): {totals['before'][0]} faces in {totals['before'][1]:.2f} s "
              f"= {rates['before']:.1f} faces/s, {cpu_ms['before']:.1f} CPU ms per face")
        print(f"  now (chips skip the detector, workers):  {totals['now'][0]} faces in {totals['now'][1]:.2f} s "
              f"= {rates['now']:.1f} faces/s, {cpu_ms['now']:.1f} CPU ms per face")

        photo_path = photo(paths, scratch / "photo.jpg")
        ways = {"before": (sync_nets, before, nets_before), "now": (now_async, now, predict_faces)}
        per = {"chip": per_photo(ways, paths[0], args.repeats), "photo": per_photo(ways, photo_path, args.repeats)}
        for key, label in (("chip", "200x200 UTKFace chip"), ("photo", "1280x960 photo")):
            b, n = per[key]["before"], per[key]["now"]
            print(f"end to end per photo, {label}: before {_stages(b)}; now {_stages(n)}; "
                  f"before/now {b['total'] / n['total']:.2f}")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        args.json.write_text(json.dumps({
            "graphs": which, "device": args.device, "images": len(paths), "detector": detector.name,
            "start_ms": starts, "nets_only_faces_per_s": {"sync": nets_sync, "async": nets_async},
            "now_nets": describe(now_async), "now_nets_only_faces_per_s": now_only,
            "folder_faces_per_s": rates, "folder_cpu_ms_per_face": cpu_ms, "per_photo_ms": per}, indent=2) + "\n")
    print(f"now/before faces per second: {rates['now'] / rates['before']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
