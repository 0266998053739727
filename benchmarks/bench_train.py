"""Training throughput of the engine on AgeNet vs a hand-written torch.nn AgeNet, same batch, same process.

The engine runs prototxt/AgeNet_train_test.prototxt with prototxt/AgeNet_solver.prototxt exactly as
`python -m agegender train` does: LMDB records decoded and transformed (random 227 crop of the 256 image,
mirror, mean) by its background worker, Caffe's update rule. The hand-written net is the same architecture
in torch.nn with the matching torch.optim optimiser (SGD or Adam), fed one batch already in memory, so the
ratio shows what the engine costs on top of PyTorch itself. Iterations alternate (engine, hand-written,
engine, ...) so that load from other processes hits both alike; medians are compared. By default the LMDB is
synthetic (random 256x256 images); --lmdb and --mean use real ones.
The last line is ``engine/handwritten throughput ratio: X.XX``.

    .venv/bin/python benchmarks/bench_train.py [--iterations 12] [--device cpu|cuda] [--lmdb L --mean M]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender.caffe import array_to_datum, caffe_pb2, write_lmdb, write_mean  # noqa: E402
from agegender.train.log import setup_logging  # noqa: E402
from agegender.train.session import Options, build_trainer  # noqa: E402
from agegender.train.solvers import solver_type  # noqa: E402

BATCH = 50


def synthetic_data(folder: Path, records: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    write_lmdb(folder / "lmdb", ((f"{i:08d}".encode(),
                                  array_to_datum(rng.integers(0, 256, (3, 256, 256), np.uint8), i % 9))
                                 for i in range(records)))
    write_mean(np.full((3, 256, 256), 110, np.float32), folder / "mean.binaryproto")
    return folder / "lmdb", folder / "mean.binaryproto"


def engine_solver(folder: Path, lmdb: Path, mean: Path) -> Path:
    net = (ROOT / "prototxt/AgeNet_train_test.prototxt").read_text()
    net = net.replace("data/lmdb/age_train_lmdb", str(lmdb)).replace("data/mean/mean.binaryproto", str(mean))
    (folder / "net.prototxt").write_text(net)
    solver = (ROOT / "prototxt/AgeNet_solver.prototxt").read_text()
    solver = solver.replace("prototxt/AgeNet_train_test.prototxt", str(folder / "net.prototxt"))
    solver = solver.replace('"models/AgeNet/AgeNet"', f'"{folder}/snap/AgeNet"')
    solver = "\n".join(line for line in solver.splitlines() if not line.startswith(("test_iter", "test_interval")))
    (folder / "solver.prototxt").write_text(solver + "\n")
    return folder / "solver.prototxt"


def handwritten_agenet(classes: int = 9) -> nn.Module:
    """Levi & Hassner's AgeNet written directly in torch.nn, as one would without a prototxt, with the
    prototxt's pool0 (2x2 average: 227 -> 114) in front."""
    return nn.Sequential(
        nn.AvgPool2d(2, 2, ceil_mode=True),
        nn.Conv2d(3, 96, 7, stride=4), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(5, 1e-4, 0.75),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(5, 1e-4, 0.75),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Flatten(), nn.Linear(384 * 3 * 3, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(512, classes))


class Engine:
    def __init__(self, solver: Path, device: str, total_iterations: int):
        self.trainer = build_trainer(Options(str(solver), device=device))
        self.trainer.open_data(0, total_iterations)
        self.reset()

    def reset(self) -> None:
        self.compute = self.update = self.trainer.data_seconds = 0.0

    def iteration(self) -> None:
        began = time.perf_counter()
        loss, _ = self.trainer.forward_backward()
        float(loss.detach())
        middle = time.perf_counter()
        self.trainer.solver.apply_update()
        synchronise(self.trainer.device)
        self.compute += middle - began
        self.update += time.perf_counter() - middle


def torch_optimiser(param: caffe_pb2.SolverParameter, params) -> torch.optim.Optimizer:
    """torch.optim's counterpart of the solver (its own update rule, its fused multi-tensor implementation)."""
    kind = solver_type(param)
    if kind == "Adam":
        return torch.optim.Adam(params, lr=param.base_lr, betas=(param.momentum, param.momentum2), eps=param.delta,
                                weight_decay=param.weight_decay)
    if kind in ("SGD", "Nesterov"):
        return torch.optim.SGD(params, lr=param.base_lr, momentum=param.momentum, weight_decay=param.weight_decay,
                               nesterov=kind == "Nesterov")
    raise SystemExit(f"bench_train: no torch.optim counterpart wired up for solver type {kind}")


class Handwritten:
    def __init__(self, device: str, solver: caffe_pb2.SolverParameter):
        self.device = torch.device(device)
        self.model = handwritten_agenet().to(self.device).train()
        self.optimiser = torch_optimiser(solver, self.model.parameters())
        generator = torch.Generator().manual_seed(0)
        self.images = (torch.rand(BATCH, 3, 227, 227, generator=generator) * 255 - 110).to(self.device)
        self.labels = torch.randint(0, 9, (BATCH,), generator=generator).to(self.device)
        self.loss = nn.CrossEntropyLoss()

    def iteration(self) -> None:
        self.optimiser.zero_grad(set_to_none=True)
        loss = self.loss(self.model(self.images), self.labels)
        loss.backward()
        float(loss.detach())
        self.optimiser.step()
        synchronise(self.device)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(step) -> float:
    began = time.perf_counter()
    step()
    return time.perf_counter() - began


def data_only_rate(engine: Engine, batches: int) -> float:
    """Images/s the data feed alone produces in this process (what a worker does per batch)."""
    feeds = engine.trainer.feeds
    began = time.perf_counter()
    for index in range(batches):
        for feed in feeds:
            feed.batch(index)
    return batches * BATCH / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=12,
                        help="measured iterations of each, alternating (default 12)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lmdb", help="a real AgeNet training LMDB (default: 120 synthetic 256x256 records)")
    parser.add_argument("--mean", help="its mean.binaryproto (with --lmdb)")
    args = parser.parse_args()
    setup_logging(False)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, batch {BATCH}, "
          f"{args.iterations} iterations each, alternating, after {args.warmup} warm-up", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lmdb, mean = (Path(args.lmdb), Path(args.mean)) if args.lmdb else synthetic_data(folder, 120)
        total = args.warmup + args.iterations
        engine = Engine(engine_solver(folder, lmdb.resolve(), mean.resolve()), args.device, total + 1)
        handwritten = Handwritten(args.device, engine.trainer.param)
        for _ in range(args.warmup):
            timed(engine.iteration), timed(handwritten.iteration)
        engine.reset()
        engine_times, handwritten_times = [], []
        for _ in range(args.iterations):  # alternating, so load from other processes hits both alike
            engine_times.append(timed(engine.iteration))
            handwritten_times.append(timed(handwritten.iteration))
        data_rate = data_only_rate(engine, 3)
    engine_rate = BATCH / statistics.median(engine_times)
    handwritten_rate = BATCH / statistics.median(handwritten_times)
    measured = len(engine_times)
    kind = solver_type(engine.trainer.param)
    print(f"solver {kind} (prototxt/AgeNet_solver.prototxt); "
          f"the hand-written net uses torch.optim.{type(handwritten.optimiser).__name__}")
    print(f"engine (LMDB + workers, Caffe update):  {engine_rate:7.1f} images/s  "
          f"(median {statistics.median(engine_times):.3f} s/iteration, min {min(engine_times):.3f}, "
          f"max {max(engine_times):.3f})")
    print(f"handwritten torch.nn (batch in memory): {handwritten_rate:7.1f} images/s  "
          f"(median {statistics.median(handwritten_times):.3f} s/iteration, min {min(handwritten_times):.3f}, "
          f"max {max(handwritten_times):.3f})")
    data_wait = engine.trainer.data_seconds
    print(f"engine time per iteration: waiting for data {1000 * data_wait / measured:.1f} ms, forward+backward "
          f"{1000 * (engine.compute - data_wait) / measured:.1f} ms, Caffe {kind} update "
          f"{1000 * engine.update / measured:.1f} ms")
    print(f"data feed alone (one process): {data_rate:.0f} images/s = {1000 * BATCH / data_rate:.0f} ms of CPU "
          f"per batch, done by the worker while the net trains")
    print(f"engine/handwritten throughput ratio: {engine_rate / handwritten_rate:.2f}")


if __name__ == "__main__":
    main()
