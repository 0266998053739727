"""Everything ``caffe train`` sets up before Solve: device, ranks, seed, nets, weights, data, solver, resume."""
from __future__ import annotations

import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from agegender.caffe import caffe_pb2, read_caffemodel, read_solver
from agegender.errors import AgegenderError
from agegender.fileio import newest_snapshot
from agegender.layers.net import Net
from agegender.layers.torch_net import TorchNet
from agegender.limits import check_net_memory
from agegender.train.data import data_feeds
from agegender.train.log import setup_logging
from agegender.train.solvers import make_solver, solver_type
from agegender.train.trainer import Distributed, TestPass, Trainer, restore, solver_nets

log = logging.getLogger("agegender.train")


@dataclass
class Options:
    solver: str
    weights: str | None = None
    snapshot: str | None = None
    device: str = "auto"
    max_iter: int | None = None
    workers: int | None = None


def choose_device(kind: str, local_rank: int) -> torch.device:
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise AgegenderError("--device cuda, but PyTorch sees no CUDA GPU (is this the CPU build of torch?); "
                                 "use --device cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_kind: str) -> Distributed:
    """Join the torchrun job when WORLD_SIZE > 1: NCCL between GPUs, gloo between CPUs, gloo for signals."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    cuda = device_kind == "cuda" or (device_kind == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    torch.distributed.init_process_group(backend)
    control = torch.distributed.new_group(backend="gloo") if backend != "gloo" else None
    return Distributed(torch.distributed.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")), control)


def choose_seed(param: caffe_pb2.SolverParameter, dist: Distributed) -> int:
    """random_seed, or a fresh one (logged, so the run can be repeated) shared by every rank."""
    seed = param.random_seed if param.random_seed >= 0 else secrets.randbits(31)
    if dist.world > 1:
        shared = [seed]
        torch.distributed.broadcast_object_list(shared, src=0)
        seed = shared[0]
    if param.random_seed < 0:
        log.info("random_seed is not set; using %d (put random_seed: %d in the solver to repeat this run)", seed, seed)
    return seed


def default_workers(device: torch.device, dist: Distributed) -> int:
    """One prefetching worker on CPU (compute needs the cores); on GPU enough to keep it fed."""
    if device.type == "cpu":
        return 1
    per_rank = (os.cpu_count() or 2) // int(os.environ.get("LOCAL_WORLD_SIZE", dist.world))
    return max(1, min(8, per_rank - 1))


def check_snapshot_prefix(prefix: str) -> None:
    """Fail now, not hours later at the first snapshot, when snapshots cannot be written."""
    folder = Path(prefix).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{Path(prefix).name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise AgegenderError(f"cannot write snapshots to snapshot_prefix '{prefix}' ({exc.strerror}); make "
                             f"{folder} writable or change snapshot_prefix in the solver") from None


def label_limits(net: Net) -> dict[str, int]:
    """Data tops used as labels, with the number of classes of the layers reading them."""
    fed = {t for n in net.nodes if n.type == "Data" for t in n.tops}
    limits: dict[str, int] = {}
    for node in net.nodes:
        if node.type in ("SoftmaxWithLoss", "Accuracy") and node.bottoms[1] in fed and node.spec.ignore_label is None:
            scores = node.bottom_shapes[0]
            classes = scores[node.spec.axis % len(scores)]
            limits[node.bottoms[1]] = min(limits.get(node.bottoms[1], classes), classes)
    return limits


def copy_weights(train: TorchNet, tests: list[TorchNet], paths: list[str]) -> None:
    """Caffe's CopyLayers for --weights: layers copied by name into every net, one line saying what was and was not."""
    for path in map(newest_snapshot, paths):
        model = read_caffemodel(path)
        copied = train.load_weights(train.net.weights_from(model, strict=False, model_name=path))
        for test in tests:
            test.load_weights(test.net.weights_from(model, strict=False, model_name=path))
        if not copied:
            log.warning("%s shares no layer name with the net; nothing was copied", path)
            continue
        fresh = [n.name for n in train.nodes if n.blob_shapes and n.name not in copied]
        log.info("Copied weights of %d layer(s) from %s: %s%s", len(copied), path, ", ".join(copied),
                 f"; initialised by fillers: {', '.join(fresh)}" if fresh else "")


def load_solver(options: Options) -> caffe_pb2.SolverParameter:
    param = read_solver(options.solver)
    if options.max_iter is not None:
        if options.max_iter < 0:
            raise AgegenderError(f"--max-iter must be >= 0, got {options.max_iter}")
        param.max_iter = options.max_iter
    if param.snapshot_format == caffe_pb2.SolverParameter.HDF5:
        raise AgegenderError("snapshot_format: HDF5 is not supported; remove it (snapshots are binary protos)")
    if param.iter_size < 1:
        raise AgegenderError(f"iter_size must be >= 1, got {param.iter_size}")
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = str(Path(options.solver).with_suffix(""))
    return param


def build_trainer(options: Options) -> Trainer:
    if options.weights and options.snapshot:
        raise AgegenderError("give --snapshot to resume training or --weights to fine-tune, not both")
    if options.workers is not None and options.workers < 0:
        raise AgegenderError(f"--workers must be >= 0 (0 reads in the training process), got {options.workers}")
    dist = init_distributed(options.device)
    setup_logging(dist.rank == 0)
    device = choose_device(options.device, dist.local_rank)
    param = load_solver(options)
    if dist.rank == 0:
        check_snapshot_prefix(param.snapshot_prefix)
    seed = choose_seed(param, dist)
    torch.manual_seed(seed)
    train_source, test_sources = solver_nets(param)
    log.info(train_source.description)
    train_def = train_source.build()
    check_net_memory(train_def, True, "batch_size or num_output")
    train_net = TorchNet(train_def)
    tests = []
    for source, iterations in zip(test_sources, param.test_iter):
        log.info(source.description)
        test_def = source.build()
        check_net_memory(test_def, False, "batch_size or num_output")
        tests.append(TestPass(TorchNet(test_def), data_feeds(test_def, seed), iterations))
    weights = options.weights.split(",") if options.weights else list(param.weights)
    copy_weights(train_net, [t.net for t in tests], weights)
    for test in tests:
        test.net.share_blobs_from(train_net)
        test.net.to(device)
    train_net.to(device)
    for blob in train_net.learnable_blobs():
        blob.param.requires_grad_(blob.lr_mult != 0)
    solver = make_solver(param, train_net.learnable_blobs())
    if options.snapshot:
        restore(train_net, solver, options.snapshot)
    model = train_net
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            train_net, device_ids=[dist.local_rank] if device.type == "cuda" else None)
    workers = options.workers if options.workers is not None else default_workers(device, dist)
    feeds = data_feeds(train_def, seed, dist.rank, dist.world)
    log.info("Solver %s on %s%s, %d data worker(s), random_seed %d, %s learnable parameters; Solver scaffolding done.",
             solver_type(param), device, f" x {dist.world} ranks" if dist.world > 1 else "", workers, seed,
             f"{sum(b.param.numel() for b in train_net.learnable_blobs() if b.lr_mult):,}")
    return Trainer(param, train_net, model, solver, feeds, tests, device, seed, param.snapshot_prefix, workers,
                   dist, label_limits(train_def))
