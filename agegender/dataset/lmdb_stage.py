"""Build data/lmdb/{age,gender}_{train,test}_lmdb from the lists, as Caffe's ``convert_imageset --shuffle
--resize_height=256 --resize_width=256`` did: raw Datums (uint8, BGR, CHW), keys ``%08d_<path>`` in a seeded
shuffled order. When the age and gender lists of a split name the same images (build_dataset.py's do), both
LMDBs are written in one pass: each image is decoded once, and the two LMDBs get the same keys."""
from __future__ import annotations

import argparse
import functools
import queue
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from agegender.caffe import caffe_pb2, listfile
from agegender.caffe.datum import fill_lmdb
from agegender.dataset import DEFAULT_SEED
from agegender.dataset.parallel import default_workers, parallel_map
from agegender.dataset.report import SkipReport
from agegender.deploy import detectors
from agegender.deploy.faces import FACE_MODES, FaceFinder, largest, make_finder
from agegender.errors import AgegenderError, non_negative_int
from agegender.fileio import StagedFolders, atomic_directories, crash_point
from agegender.images import BadImage, read_image
from agegender.lmdb_set import lists_digest, write_stamp
from agegender.preprocess import resize_like_lmdb
from agegender.progress import Progress
from agegender.tasks import TASKS

SPLITS = ("train", "val", "test", "pretrain")
REQUIRED_SPLITS = ("train", "test")  # val and pretrain are built when build_dataset.py wrote their lists
Record = tuple[bytes, caffe_pb2.Datum]
MAX_RESIZE = 4096


@dataclass(frozen=True)
class ListEntry:
    path: str  # as written in the list; the LMDB key holds it
    label: int


def read_list(path: Path, report: SkipReport) -> list[ListEntry]:
    """``path label`` lines (agegender.caffe.listfile); bad lines go into the skip report instead of stopping."""
    if not path.is_file():
        raise AgegenderError(f"image list not found: {path}; run `agegender dataset build` first")

    def bad(where: str, line: str) -> None:
        report.skip(where, "bad list line", f"expected 'path label', got {line!r}")

    return [ListEntry(image, label) for image, label in listfile.read_list(path, on_bad=bad)]


def shuffle_order(count: int, seed: int) -> np.ndarray:
    """List index of each LMDB line id, as convert_imageset --shuffle permutes the lines before writing."""
    return np.random.default_rng(seed).permutation(count)


def _encode_record(path: str, size: tuple[int, int] | None = None,
                   finder: FaceFinder | None = None) -> tuple[tuple[int, ...], bytes] | str:
    """(CHW shape, uint8 CHW BGR bytes) of one image, or the reason it is unusable. With a face finder, the
    image's largest face, cropped as run_inference.py crops it (agegender.deploy.faces)."""
    try:
        image = read_image(path)
    except BadImage as exc:
        return str(exc)
    if finder is not None:
        faces = finder.find(image)
        index = largest(faces)
        if index is None:
            return "no face found (--faces none takes the whole image)"
        image = faces.crop(image, index)
    if size:
        image = resize_like_lmdb(image, *size)
    chw = image.transpose(2, 0, 1)
    return chw.shape, chw.tobytes()


def image_records(lists: Sequence[Sequence[ListEntry]], root: Path, size: tuple[int, int] | None, seed: int,
                  workers: int, report: SkipReport, name: str,
                  finder: FaceFinder | None = None) -> Iterator[tuple[bytes, list[caffe_pb2.Datum]]]:
    """(key, one Datum per list) in shuffled order for lists naming the same images (labels may differ);
    each image decoded (and its face found and cropped by ``finder``) once, on ``workers`` threads; unusable
    images reported and skipped."""
    entries = lists[0]
    order = shuffle_order(len(entries), seed)
    jobs = [str(root / entries[i].path) for i in order]
    progress = Progress(len(jobs), f"writing {name}", "images")
    lmdb_shape, first_path = None, ""
    written = 0
    encode = functools.partial(_encode_record, size=size, finder=finder)
    for line_id, (i, path, result) in enumerate(zip(order, jobs, parallel_map(encode, jobs, workers))):
        progress.update()
        if isinstance(result, str):
            report.skip(path, result)
            continue
        shape, data = result
        if lmdb_shape is None:
            lmdb_shape, first_path = shape, path
        elif shape != lmdb_shape:
            raise AgegenderError(f"{path} is {shape[1]}x{shape[2]} but the LMDB's images are {lmdb_shape[1]}x"
                                 f"{lmdb_shape[2]} (as {first_path}); give --resize HxW to make them one size")
        written += 1
        datums = [caffe_pb2.Datum(channels=shape[0], height=shape[1], width=shape[2], data=data, label=e[i].label)
                  for e in lists]
        yield f"{line_id:08d}_{entries[i].path}".encode(), datums
    progress.close()
    if not written:
        raise AgegenderError(f"no usable image for {name} ({report.describe()})")


_END, _ABORT = object(), object()


class _Aborted(Exception):
    """Raised inside a background writer's records so that it stops writing."""


class BackgroundWriter:
    """``fill_lmdb(folder, ...)`` on a thread of its own, fed one record at a time (LMDB writes release the GIL)."""

    def __init__(self, path: Path):
        self.queue: queue.Queue = queue.Queue(maxsize=32)
        self.error: BaseException | None = None
        self.count = 0
        self.thread = threading.Thread(target=self._write, args=(path,), daemon=True)
        self.thread.start()

    def _records(self) -> Iterator[Record]:
        while (item := self.queue.get()) is not _END:
            if item is _ABORT:
                raise _Aborted
            yield item

    def _write(self, path: Path) -> None:
        try:
            self.count = fill_lmdb(path, self._records())
        except BaseException as exc:  # noqa: BLE001 - handed to the feeding thread
            self.error = exc

    def put(self, item) -> None:
        while self.thread.is_alive():
            try:
                return self.queue.put(item, timeout=0.2)
            except queue.Full:
                continue
        if item is not _ABORT:
            raise self.error or RuntimeError("LMDB writer thread stopped")

    def close(self, ok: bool) -> int:
        """Finish the LMDB (``ok``: its own error, if it had one, is raised here) or abandon it."""
        self.put(_END if ok else _ABORT)
        self.thread.join()
        if ok and self.error:
            raise self.error
        return self.count


def write_lmdbs(targets: Sequence[Path], records: Iterator[tuple[bytes, list[caffe_pb2.Datum]]]) -> list[int]:
    """Write (key, [Datum per target]) records into several new LMDBs (empty folders) at once."""
    others = [BackgroundWriter(target) for target in targets[1:]]
    ok = False

    def first() -> Iterator[Record]:
        for key, datums in records:
            for writer, datum in zip(others, datums[1:]):
                writer.put((key, datum))
            yield key, datums[0]

    try:
        count = fill_lmdb(targets[0], first())
        ok = True
    finally:
        counts = [writer.close(ok) for writer in others]
    return [count, *counts]


def build_split(lists: Path, out: Path, split: str, root: Path, size: tuple[int, int] | None, seed: int,
                workers: int, report: SkipReport, staged: StagedFolders, stamp: str,
                finder: FaceFinder | None = None) -> tuple[int, list[str]]:
    """Every task's LMDB of one split, written into ``staged`` folders stamped with the lists' ``stamp``;
    returns (list lines in, 'NAME COUNT' parts for the summary). Lists naming the same images in the same order
    share one decoding pass (and so their keys)."""
    entries = {task: read_list(lists / TASKS[task].list_name(split), report) for task in TASKS}
    groups: dict[tuple[str, ...], list[str]] = {}
    for task in TASKS:
        groups.setdefault(tuple(e.path for e in entries[task]), []).append(task)
    parts = []
    for tasks in groups.values():
        targets = [out / TASKS[task].lmdb_name(split) for task in tasks]
        folders = [staged.folder(target) for target in targets]
        for folder in folders:
            write_stamp(folder, stamp, lists)
        records = image_records([entries[t] for t in tasks], root, size, seed, workers, report,
                                " + ".join(t.name for t in targets), finder)
        parts += [f"{t.name} {n}" for t, n in zip(targets, write_lmdbs(folders, records))]
    return sum(len(e) for e in entries.values()), parts


def _size(text: str) -> tuple[int, int] | None:
    """--resize: N (NxN), HxW, or 0 to keep the images' size."""
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected N, HxW or 0, got {text!r}")
    height, width = int(match[1]), int(match[2] or match[1])
    if (height == 0) != (width == 0):
        raise argparse.ArgumentTypeError("give both sides, or 0 for no resizing")
    if max(height, width) > MAX_RESIZE:
        raise argparse.ArgumentTypeError(f"{height}x{width} is larger than {MAX_RESIZE}x{MAX_RESIZE} (the nets take "
                                         f"256x256; each record would take {3 * height * width / 2**20:,.0f} MiB)")
    return (height, width) if height else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lists", type=Path, default=Path("data/DEF"),
                        help=f"folder of {{{','.join(TASKS)}}}_{{train,test}}.txt from build_dataset.py "
                             f"(default data/DEF)")
    parser.add_argument("--out", type=Path, default=Path("data/lmdb"), help="LMDB folder (default data/lmdb)")
    parser.add_argument("--resize", type=_size, default=(256, 256), metavar="N|HxW|0",
                        help="resize every image to NxN or HxW (default 256); 0 keeps the size, which must then be one")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="folder the list paths are relative to (default: the current folder)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS,
                        help="default: train and test, and val and pretrain when their lists exist")
    parser.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED,
                        help=f"shuffle seed (default {DEFAULT_SEED})")
    parser.add_argument("--workers", type=int, default=default_workers(), help="decoding threads (default: CPU cores)")
    parser.add_argument("--faces", choices=FACE_MODES, default="auto",
                        help="the face each record holds, found and cropped as run_inference.py does: auto (the "
                             "default) uses an image that is already a face crop, such as a UTKFace chip, whole and "
                             "crops the largest detected face of any other; detect|haar always detect; none: the "
                             "whole image")
    parser.add_argument("--detector", choices=tuple(detectors.REGISTRY), metavar="|".join(detectors.REGISTRY),
                        help="face detector (default: the best installed, else haar), as run_inference.py's")
    parser.add_argument("--detector-dir", dest="detector_dir", metavar="DIR",
                        help="folder of the CNN detectors' Caffe files (default: graph/detectors)")
    parser.add_argument("--align", choices=detectors.ALIGN_MODES, default="auto",
                        help="landmarks for detected faces without, to align their crops, as run_inference.py's")
    parser.add_argument("--min-face", dest="min_face", type=float, metavar="PX",
                        help="smallest face searched for in a photo, as run_inference.py's (default: the detector's, "
                             f"{detectors.MIN_FACE_DEFAULT:g} px with a CNN; 0: one pass)")


def run(args: argparse.Namespace) -> int:
    report = SkipReport()
    lines_in, parts = 0, []
    listed = [s for s in SPLITS if all((args.lists / t.list_name(s)).is_file() for t in TASKS.values())]
    splits = args.splits or [s for s in SPLITS if s in REQUIRED_SPLITS or s in listed]
    stamp = lists_digest(args.lists / task.list_name(split) for task in TASKS.values() for split in SPLITS)
    detectors.check_min_face(args.min_face)
    finder = make_finder(args.faces, args.detector, detectors.search_dirs(args.detector_dir, "graph"),
                         align=args.align, min_face=args.min_face)
    with atomic_directories() as staged:  # the LMDBs of a run replace the old ones together, at the end
        for split in splits:
            crash_point(f"lmdb-{split}")
            lines, split_parts = build_split(args.lists, args.out, split, args.root, args.resize, args.seed,
                                             args.workers, report, staged, stamp, finder)
            lines_in, parts = lines_in + lines, parts + split_parts
    if finder.hint and finder.detected_any:
        print(f"notice: {finder.hint}", file=sys.stderr)
    size = "x".join(map(str, args.resize)) if args.resize else "original size"
    print(f"lmdb: {lines_in} list lines in, records written ({size}): {', '.join(parts)} in {args.out}, "
          f"{report.describe()}")
    return 0
