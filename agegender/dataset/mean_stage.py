"""Mean image of a training LMDB, as Caffe's ``compute_image_mean``: the per-pixel mean over every record,
written as data/mean/mean.binaryproto (1x3xHxW, legacy num/channels/height/width) and data/mean/mean.npy."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from agegender.caffe import datum_to_array, lmdb_size, read_lmdb, write_mean
from agegender.errors import AgegenderError
from agegender.lmdb_set import check_lmdb_set
from agegender.progress import Progress


def compute_mean(path: Path) -> tuple[np.ndarray, int]:
    """(float32 CxHxW mean, record count); every record must have the first record's shape."""
    check_lmdb_set([path])
    size = lmdb_size(path)
    if not size:
        raise AgegenderError(f"LMDB {path} has no records; rebuild it with `agegender lmdb`")
    total, count, shape = None, 0, None
    progress = Progress(size, f"mean of {path}", "records")
    for key, datum in read_lmdb(path):
        try:
            image = datum_to_array(datum)
        except ValueError as exc:
            raise AgegenderError(f"LMDB {path}: record {key.decode(errors='replace')}: {exc}") from None
        if total is None:
            shape, total = image.shape, np.zeros(image.shape, np.float64)
        elif image.shape != shape:
            raise AgegenderError(f"LMDB {path}: record {key.decode(errors='replace')} is "
                                 f"{'x'.join(map(str, image.shape))} but the first is {'x'.join(map(str, shape))}; "
                                 f"rebuild the LMDB with `agegender lmdb --resize`")
        total += image
        count += 1
        progress.update()
    progress.close()
    return (total / count).astype(np.float32), count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lmdb", type=Path, default=Path("data/lmdb/age_train_lmdb"),
                        help="training LMDB (default data/lmdb/age_train_lmdb; the gender one holds the same images)")
    parser.add_argument("--out", type=Path, default=Path("data/mean"),
                        help="folder for mean.binaryproto and mean.npy (default data/mean)")


def run(args: argparse.Namespace) -> int:
    mean, count = compute_mean(args.lmdb)
    for channel, value in enumerate(mean.reshape(len(mean), -1).mean(axis=1)):
        name = f" ({'BGR'[channel]})" if len(mean) == 3 else ""
        print(f"mean_value channel [{channel}]{name}: {value:.4f}")
    binaryproto = write_mean(mean, args.out / "mean.binaryproto")
    write_mean(mean, args.out / "mean.npy")
    print(f"mean: {count} records in, mean 1x{'x'.join(map(str, mean.shape))} written to {binaryproto} and "
          f"{args.out / 'mean.npy'}, 0 skipped")
    return 0
