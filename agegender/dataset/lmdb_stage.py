"""Build data/lmdb/{age,gender}_{train,test}_lmdb from the lists, as Caffe's ``convert_imageset --shuffle
--resize_height=256 --resize_width=256`` did: raw Datums (uint8, BGR, CHW), keys ``%08d_<path>`` in a seeded
shuffled order. When the age and gender lists of a split name the same images, each image is decoded once and
the gender LMDB is the age LMDB's records with the gender labels."""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from agegender.caffe import caffe_pb2, read_lmdb, write_lmdb
from agegender.dataset import DEFAULT_SEED
from agegender.dataset.images import BadImage, read_image
from agegender.dataset.parallel import default_workers, parallel_map
from agegender.dataset.report import SkipReport
from agegender.errors import AgegenderError
from agegender.preprocess import resize_like_lmdb
from agegender.progress import Progress

TASKS = ("age", "gender")
SPLITS = ("train", "test")
Record = tuple[bytes, caffe_pb2.Datum]


@dataclass(frozen=True)
class ListEntry:
    path: str  # as written in the list; the LMDB key holds it
    label: int


def read_list(path: Path, report: SkipReport) -> list[ListEntry]:
    """``path label`` lines (the path may hold spaces: the label is after the last one); bad lines reported."""
    if not path.is_file():
        raise AgegenderError(f"image list not found: {path}; run build_dataset.py first")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        image, _, label = line.strip().rpartition(" ")
        if not image or not label.isdigit():
            report.skip(f"{path}:{number}", "bad list line", f"expected 'path label', got {line.strip()!r}")
            continue
        entries.append(ListEntry(image, int(label)))
    return entries


def shuffle_order(count: int, seed: int) -> np.ndarray:
    """List index of each LMDB line id, as convert_imageset --shuffle permutes the lines before writing."""
    return np.random.default_rng(seed).permutation(count)


def _encode_record(job: tuple[str, tuple[int, int] | None]) -> tuple[tuple[int, ...], bytes] | str:
    """(CHW shape, uint8 CHW BGR bytes) of one image, or the reason it is unusable."""
    path, size = job
    try:
        image = read_image(path)
    except BadImage as exc:
        return str(exc)
    if size:
        image = resize_like_lmdb(image, *size)
    chw = image.transpose(2, 0, 1)
    return chw.shape, chw.tobytes()


def image_records(entries: Sequence[ListEntry], root: Path, size: tuple[int, int] | None, seed: int,
                  workers: int, report: SkipReport, name: str) -> Iterator[Record]:
    """The Datum records of one list in shuffled order, decoded by a process pool; unusable images skipped."""
    order = shuffle_order(len(entries), seed)
    jobs = [(str(root / entries[i].path), size) for i in order]
    progress = Progress(len(jobs), f"writing {name}", "images")
    lmdb_shape, first_path = None, ""
    written = 0
    for line_id, (i, (path, _), result) in enumerate(zip(order, jobs, parallel_map(_encode_record, jobs, workers))):
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
        datum = caffe_pb2.Datum(channels=shape[0], height=shape[1], width=shape[2], data=data,
                                label=entries[i].label)
        yield f"{line_id:08d}_{entries[i].path}".encode(), datum
    progress.close()
    if not written:
        raise AgegenderError(f"no usable image for {name} ({report.describe()})")


def relabelled(source: Path, entries: Sequence[ListEntry], seed: int) -> Iterator[Record]:
    """The records of ``source`` (written from a list naming the same images in the same order) with the
    labels of ``entries``: the key's line id gives the list line through the same shuffle."""
    order = shuffle_order(len(entries), seed)
    for key, datum in read_lmdb(source):
        datum.label = entries[order[int(key.split(b"_", 1)[0])]].label
        yield key, datum


def build_split(lists: Path, out: Path, split: str, root: Path, size: tuple[int, int] | None, seed: int,
                workers: int, report: SkipReport) -> tuple[int, list[str]]:
    """The age and gender LMDBs of one split; returns (list lines in, 'NAME COUNT' parts for the summary)."""
    entries = {task: read_list(lists / f"{task}_{split}.txt", report) for task in TASKS}
    done: dict[str, Path] = {}
    parts = []
    for task in TASKS:
        target = out / f"{task}_{split}_lmdb"
        twin = next((t for t in done if [e.path for e in entries[t]] == [e.path for e in entries[task]]), None)
        if twin:  # same images in the same order: same keys, only the labels differ
            count = write_lmdb(target, relabelled(done[twin], entries[task], seed))
            print(f"{target.name}: the {count} records of {done[twin].name} with {task} labels", file=sys.stderr)
        else:
            count = write_lmdb(target, image_records(entries[task], root, size, seed, workers, report, target.name))
        done[task] = target
        parts.append(f"{target.name} {count}")
    return sum(len(e) for e in entries.values()), parts


def _size(text: str) -> tuple[int, int] | None:
    """--resize: N (NxN), HxW, or 0 to keep the images' size."""
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected N, HxW or 0, got {text!r}")
    height, width = int(match[1]), int(match[2] or match[1])
    if (height == 0) != (width == 0):
        raise argparse.ArgumentTypeError("give both sides, or 0 for no resizing")
    return (height, width) if height else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lists", type=Path, default=Path("data/DEF"),
                        help="folder of {age,gender}_{train,test}.txt from build_dataset.py (default data/DEF)")
    parser.add_argument("--out", type=Path, default=Path("data/lmdb"), help="LMDB folder (default data/lmdb)")
    parser.add_argument("--resize", type=_size, default=(256, 256), metavar="N|HxW|0",
                        help="resize every image to NxN or HxW (default 256); 0 keeps the size, which must then be one")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="folder the list paths are relative to (default: the current folder)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="default: train test")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"shuffle seed (default {DEFAULT_SEED})")
    parser.add_argument("--workers", type=int, default=default_workers(), help="decoding processes (default: CPU cores)")


def run(args: argparse.Namespace) -> int:
    report = SkipReport()
    lines_in, parts = 0, []
    for split in args.splits:
        lines, split_parts = build_split(args.lists, args.out, split, args.root, args.resize, args.seed,
                                         args.workers, report)
        lines_in, parts = lines_in + lines, parts + split_parts
    size = "x".join(map(str, args.resize)) if args.resize else "original size"
    print(f"lmdb: {lines_in} list lines in, records written ({size}): {', '.join(parts)} in {args.out}, "
          f"{report.describe()}")
    return 0
