"""Data layers fed from LMDB as Caffe's DataLayer feeds them, prepared by background worker processes.

Records are read in key order and wrap around at the end. Batch ``b`` of rank ``r`` (of ``world``) takes
records ``((b * world + r) * batch_size + i) mod N``, so ranks read disjoint consecutive shards and a run
resumed at iteration ``t`` reads exactly what the uninterrupted run read. Several Data layers of one net read
in lockstep (the same positions, so the same keys: refused otherwise), as Caffe's do: a multi-task net takes
each task's labels from its own LMDB, and a Data layer whose image top only feeds a Silence layer reads its
labels alone (its images would be thrown away). Each image goes through Caffe's
DataTransformer (agegender.preprocess.transform): TRAIN takes a random crop offset, TEST the centre crop,
and ``mirror`` flips at random in both phases, as in Caffe. The random draws come from (seed, rank, batch),
so they do not depend on which worker prepared the batch either.
"""
from __future__ import annotations

import signal
from typing import Iterator, Sequence

import numpy as np
import torch
from google.protobuf.message import DecodeError
from torch.utils.data import DataLoader, Dataset

from agegender.caffe import caffe_pb2, datum_to_array, lmdb_size, read_mean
from agegender.caffe.datum import open_lmdb
from agegender.errors import AgegenderError
from agegender.layers.net import Net, Node
from agegender.lmdb_set import check_lmdb_set
from agegender.preprocess import transform


class LmdbRecords:
    """Datums of an LMDB by position in key order. The LMDB is opened for each batch and closed after it:
    py-lmdb allows one open handle per path and process, and handles do not survive fork."""

    def __init__(self, path: str):
        self.path = path
        check_lmdb_set([path])
        if lmdb_size(path) == 0:
            raise AgegenderError(f"LMDB {path} holds no records; rebuild it with `agegender lmdb`")
        with open_lmdb(self.path) as env, env.begin() as txn:
            self.keys = list(txn.cursor().iternext(keys=True, values=False))

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, positions: Sequence[int]) -> Iterator[tuple[np.ndarray, int]]:
        """(CxHxW uint8 image, label) of each position, wrapping around at the end."""
        with open_lmdb(self.path) as env, env.begin() as txn:
            for position in positions:
                key = self.keys[position % len(self.keys)]
                datum = caffe_pb2.Datum()
                try:
                    datum.ParseFromString(txn.get(key))
                    image = datum_to_array(datum)
                except (DecodeError, ValueError) as exc:
                    raise AgegenderError(f"LMDB {self.path}: record {key.decode(errors='replace')} is not a valid "
                                         f"image Datum ({exc or 'truncated'}); "
                                         f"rebuild it with `agegender lmdb`") from None
                yield image, datum.label


    def labels(self, positions: Sequence[int]) -> list[int]:
        """The label of each position, the images left undecoded."""
        with open_lmdb(self.path) as env, env.begin() as txn:
            return [caffe_pb2.Datum.FromString(txn.get(self.keys[p % len(self.keys)])).label for p in positions]


def load_mean(spec, datum_shape: tuple[int, ...], source: str) -> np.ndarray | None:
    """transform_param's mean_file or mean_value as a C x H x W (or C x 1 x 1) array, checked against the data."""
    channels, height, width = datum_shape
    if spec.mean_file:
        mean = read_mean(spec.mean_file)
        if mean.shape[0] != channels or mean.shape[1:] not in ((height, width), (1, 1)):
            raise AgegenderError(f"mean file {spec.mean_file} is {'x'.join(map(str, mean.shape))} but {source} "
                                 f"holds {channels}x{height}x{width} images; rebuild it with `agegender mean`")
        return mean
    if spec.mean_value:
        values = np.asarray(spec.mean_value, dtype=np.float32)
        if values.size not in (1, channels):
            raise AgegenderError(f"{values.size} mean_value(s) for {channels}-channel images in {source}; "
                                 f"give 1 or {channels}")
        return np.broadcast_to(values, (channels,)).copy().reshape(channels, 1, 1)
    return None


class DataFeed:
    """One Data layer: batch number -> its tops (images float32 N x C x crop x crop, labels float32 N)."""

    def __init__(self, node: Node, phase: str, seed: int, rank: int = 0, world: int = 1, images: bool = True):
        self.spec, self.tops, self.train, self.images = node.spec, node.tops, phase == "TRAIN", images
        self.seed, self.rank, self.world = seed, rank, world
        self.records = LmdbRecords(self.spec.source)
        self.image_shape = tuple(node.top_shapes[0][1:])
        ((first_image, _),) = self.records.read([0])
        self.datum_shape = tuple(first_image.shape)
        self.mean = load_mean(self.spec, self.datum_shape, self.spec.source)

    @property
    def batch_size(self) -> int:
        return self.spec.batch_size

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        spec = self.spec
        first = (index * self.world + self.rank) * spec.batch_size
        if not self.images:
            return self._labels_only(first)
        rng = np.random.default_rng([self.seed, self.rank, index])
        images = np.empty((spec.batch_size, *self.image_shape), np.float32)
        labels = np.empty(spec.batch_size, np.float32)
        augment = spec.augment if self.train else None
        for i, (chw, labels[i]) in enumerate(self.records.read(range(first, first + spec.batch_size))):
            if augment is not None:
                chw = augment(chw, rng)
            images[i] = transform(chw, self.mean, spec.crop_size, spec.scale, self._offset(chw, rng),
                                  bool(spec.mirror and rng.integers(2)))
        tops = {self.tops[0]: torch.from_numpy(images)}
        if len(self.tops) > 1:
            tops[self.tops[1]] = torch.from_numpy(labels)
        return tops

    def _labels_only(self, first: int) -> dict[str, torch.Tensor]:
        """A silenced image top (zeros, no memory behind them) and the labels."""
        labels = self.records.labels(range(first, first + self.spec.batch_size))
        tops = {self.tops[0]: torch.zeros(()).expand(self.spec.batch_size, *self.image_shape)}
        if len(self.tops) > 1:
            tops[self.tops[1]] = torch.tensor(labels, dtype=torch.float32)
        return tops

    def _offset(self, chw: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
        if chw.shape != self.datum_shape:
            raise AgegenderError(f"LMDB {self.spec.source} mixes image sizes ({'x'.join(map(str, chw.shape))} and "
                                 f"{'x'.join(map(str, self.datum_shape))}); Caffe's Data layer needs one size")
        crop = self.spec.crop_size
        if not (self.train and crop):
            return None  # centre crop (or the whole image)
        return int(rng.integers(chw.shape[1] - crop + 1)), int(rng.integers(chw.shape[2] - crop + 1))


class NetBatches(Dataset):
    """Batch number -> the tops of every Data layer of a net."""

    def __init__(self, feeds: Sequence[DataFeed]):
        self.feeds = list(feeds)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        tops = {}
        for feed in self.feeds:
            tops.update(feed.batch(index))
        return tops


def data_feeds(net: Net, seed: int, rank: int = 0, world: int = 1) -> list[DataFeed]:
    silenced = _silenced_blobs(net)
    feeds = [DataFeed(n, net.phase, seed, rank, world, images=n.tops[0] not in silenced)
             for n in net.nodes if n.type == "Data"]
    _check_lockstep(net, feeds)
    fed = {t for f in feeds for t in f.tops}
    unfed = [n for n in net.nodes if n.type == "Input"]
    if unfed:
        raise AgegenderError(f"{net.source}: {unfed[0].describe()} has no data source in phase {net.phase}; "
                             f"training needs Data layers reading an LMDB")
    if not fed:
        raise AgegenderError(f"{net.source}: phase {net.phase} has no Data layer to read training data from")
    return feeds


def _silenced_blobs(net: Net) -> set[str]:
    """Blobs that only Silence layers read (Caffe's way to drop a Data layer's second copy of the images)."""
    readers: dict[str, set[str]] = {}
    for node in net.nodes:
        for bottom in node.bottoms:
            readers.setdefault(bottom, set()).add(node.type)
    return {blob for blob, types in readers.items() if types == {"Silence"}}


def _check_lockstep(net: Net, feeds: Sequence[DataFeed]) -> None:
    """Data layers of one net pair their records by position: refuse LMDBs whose keys or batches differ."""
    for feed in feeds[1:]:
        if feed.records.keys != feeds[0].records.keys or feed.batch_size != feeds[0].batch_size:
            raise AgegenderError(f"{net.source}: Data layers reading {feeds[0].spec.source} and {feed.spec.source} "
                                 f"(phase {net.phase}) would pair different records (their keys or batch sizes "
                                 f"differ); build both LMDBs from lists naming the same images (create_lmdb.sh)")


def _ignore_interrupts(_worker_id: int) -> None:
    """Workers leave Ctrl-C, SIGTERM and SIGHUP to the trainer, which snapshots before stopping: a terminal,
    systemd or Slurm signals the whole process group, and a worker killed by it would kill the trainer
    before its snapshot. (A worker still exits with the trainer: the DataLoader's watchdog sees it go.)"""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def broadcast(tensor: torch.Tensor) -> bool:
    """A tensor with no memory behind most of its elements (an expanded view, e.g. a silenced top's zeros)."""
    return 0 in tensor.stride()


def pin_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Page-locked copies for fast copies to a GPU, done here rather than by the DataLoader: its pinning
    refuses broadcast tensors ("more than one element ... refers to a single memory location")."""
    return {k: v if broadcast(v) else v.pin_memory() for k, v in batch.items()}


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on ``device``; a broadcast tensor is sent as the values behind it and expanded there, not
    copied in full."""
    return {k: _distinct(v).to(device).expand(v.shape) if broadcast(v) else v.to(device, non_blocking=True)
            for k, v in batch.items()}


def _distinct(tensor: torch.Tensor) -> torch.Tensor:
    """The elements of a broadcast tensor that own memory: index 0 along each expanded (stride 0) axis."""
    return tensor[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in tensor.stride())]


def iterate_batches(feeds: Sequence[DataFeed], start: int, stop: int, workers: int,
                    pin_memory: bool = False, prefetch: int = 4) -> Iterator[dict[str, torch.Tensor]]:
    """Batches ``start`` .. ``stop - 1``, prepared ``prefetch`` batches ahead by ``workers`` processes
    (in this process when 0); a worker's AgegenderError comes back as that one-line error."""
    loader = DataLoader(NetBatches(feeds), batch_size=None, sampler=range(start, stop), num_workers=workers,
                        prefetch_factor=max(1, prefetch // max(workers, 1)) if workers else None,
                        worker_init_fn=_ignore_interrupts if workers else None)
    iterator = iter(loader)
    try:
        while True:
            try:
                batch = next(iterator)
                yield pin_batch(batch) if pin_memory else batch
            except StopIteration:
                return
            except AgegenderError as exc:
                raise AgegenderError(_original_message(str(exc))) from None
    finally:  # the workers ignore SIGTERM (the trainer snapshots first), so they must be told to stop: a
        # worker left to multiprocessing's exit handler (which only sends SIGTERM) would keep the process alive
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def _original_message(message: str) -> str:
    """The worker's own message, without the traceback the DataLoader wraps it in."""
    last = message.strip().splitlines()[-1]
    return last.split("AgegenderError: ", 1)[-1]
