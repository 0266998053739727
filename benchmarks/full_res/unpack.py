"""Rebuild the LMDBs pack.py packed (on the GPU machine): raw 256x256 Datums of the same keys, order and
labels, data/lmdb/{age,gender}_{pretrain,val}_lmdb with their agegender.json stamps.

    python benchmarks/full_res/unpack.py PACK_DIR
"""
from __future__ import annotations

import gzip
import io
import json
import sys
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from agegender.caffe.datum import array_to_datum, write_lmdb  # noqa: E402
from agegender.lmdb_set import write_stamp  # noqa: E402

BLOB: bytes = b""


def _load(path: str) -> None:
    global BLOB
    BLOB = Path(path).read_bytes()


def decode(job: tuple[int, int, int]) -> bytes:
    offset, length, size = job
    image = np.array(Image.open(io.BytesIO(BLOB[offset:offset + length])).convert("RGB"))[:, :, ::-1]
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(image.transpose(2, 0, 1)).tobytes()


def main() -> int:
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "pack.json.gz").is_file():
        sys.exit("usage: unpack.py PACK_DIR (a folder holding pack.py's pack.bin and shrink.py's pack.json.gz)")
    pack = Path(sys.argv[1])
    meta = json.loads(gzip.decompress((pack / "pack.json.gz").read_bytes()))
    size = meta["size"]
    for split in meta["stamps"]:
        for task in ("age", "gender"):
            if Path(f"data/lmdb/{task}_{split}_lmdb").exists():
                sys.exit(f"unpack.py: data/lmdb/{task}_{split}_lmdb exists; unpack only in a fresh checkout on the "
                         f"GPU machine (it would replace real LMDBs with the lossy pack)")
    for split, stamp in meta["stamps"].items():
        rows = [r for r in meta["records"] if r[0] == split]
        with Pool(min(16, max(1, len(rows) // 500 + 1)), initializer=_load, initargs=(str(pack / "pack.bin"),)) as pool:
            images = pool.map(decode, [(r[4], r[5], size) for r in rows], chunksize=64)
        for task, column in (("age", 2), ("gender", 3)):
            target = Path(f"data/lmdb/{task}_{split}_lmdb")
            records = ((r[1].encode(), array_to_datum(np.frombuffer(img, np.uint8).reshape(3, size, size), r[column]))
                       for r, img in zip(rows, images))
            count = write_lmdb(target, records)
            write_stamp(target, stamp, Path(f"(unpacked from {pack})"))
            print(f"{target}: {count} faces", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
