"""Pack the pre-training and validation LMDBs for a GPU machine that only ~64 MiB can reach (a benchmark's
helper, never the test split): each 256x256 face is stored at 200x200 in AVIF (quality 60, ~2.5 KB; 41.6 dB
PSNR against the LMDB's image after unpack.py's upscale, measured on 200 of them), with its age and gender
labels and its LMDB key. unpack.py rebuilds raw-Datum LMDBs of the same keys, order and labels.

    python benchmarks/full_res/pack.py OUT_DIR [--stored 200] [--quality 60]
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from agegender.caffe.datum import datum_to_array, read_lmdb  # noqa: E402
from agegender.lmdb_set import read_stamp  # noqa: E402

SPLITS = {"pretrain": "data/lmdb/{}_pretrain_lmdb", "val": "data/lmdb/{}_val_lmdb"}  # never the test split


def encode(job: tuple[bytes, int, int]) -> bytes:
    data, stored, quality = job
    from agegender.caffe import caffe_pb2
    datum = caffe_pb2.Datum.FromString(data)
    image = datum_to_array(datum).transpose(1, 2, 0)
    small = cv2.resize(image, (stored, stored), interpolation=cv2.INTER_AREA)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(small[:, :, ::-1])).save(buffer, "AVIF", quality=quality)
    return buffer.getvalue()


def records(split: str):
    age = read_lmdb(SPLITS[split].format("age"))
    gender = read_lmdb(SPLITS[split].format("gender"))
    for (key, datum), (gkey, gdatum) in zip(age, gender, strict=True):
        if key != gkey:
            sys.exit(f"pack.py: {split}: age and gender LMDB keys differ at {key!r} / {gkey!r}")
        if (datum.height, datum.width) != (256, 256):
            sys.exit(f"pack.py: {split}: {key!r} is {datum.height}x{datum.width}, expected 256x256")
        yield key, datum.label, gdatum.label, datum.SerializeToString()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--stored", type=int, default=200)
    parser.add_argument("--quality", type=int, default=60)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    index, offset = [], 0
    with open(args.out / "pack.bin", "wb") as blob, Pool(2) as pool:
        for split in SPLITS:
            rows = list(records(split))
            jobs = ((data, args.stored, args.quality) for *_, data in rows)
            for n, ((key, age, gender, _), encoded) in enumerate(zip(rows, pool.imap(encode, jobs, chunksize=64))):
                blob.write(encoded)
                index.append([split, key.decode(), age, gender, offset, len(encoded)])
                offset += len(encoded)
                if n % 2000 == 0:
                    print(f"{split}: {n}/{len(rows)}, {offset / 2**20:.1f} MiB", flush=True)
    stamps = {split: read_stamp(Path(SPLITS[split].format("age"))) for split in SPLITS}  # the lists' sha256
    meta = {"stored": args.stored, "quality": args.quality, "size": 256, "stamps": stamps, "records": index}
    (args.out / "pack.json").write_text(json.dumps(meta))
    print(f"{len(index)} faces, {offset / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
