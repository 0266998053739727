"""Fit pack.py's pack under a byte budget: the largest faces are re-encoded (from their AVIF) one quality step
lower until pack.bin fits, and the index is gzipped (pack.json -> pack.json.gz).

    python benchmarks/full_res/shrink.py PACK_DIR BUDGET_BYTES [--quality 50]
"""
from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

from PIL import Image


def main() -> int:
    if len(sys.argv) not in (3, 5) or (len(sys.argv) == 5 and sys.argv[3] != "--quality") \
            or not (Path(sys.argv[1]) / "pack.json").is_file():
        sys.exit("usage: shrink.py PACK_DIR BUDGET_BYTES [--quality Q] (PACK_DIR holds pack.py's pack.json, "
                 "not yet shrunk)")
    pack, budget = Path(sys.argv[1]), int(sys.argv[2])
    quality = int(sys.argv[4]) if len(sys.argv) == 5 else 50
    meta = json.loads((pack / "pack.json").read_text())
    blob = (pack / "pack.bin").read_bytes()
    records = meta["records"]
    chunks = [blob[r[4]:r[4] + r[5]] for r in records]
    total = sum(map(len, chunks))
    order = sorted(range(len(records)), key=lambda i: -len(chunks[i]))
    redone = 0
    for i in order:
        if total <= budget:
            break
        buffer = io.BytesIO()
        Image.open(io.BytesIO(chunks[i])).convert("RGB").save(buffer, "AVIF", quality=quality)
        if len(buffer.getvalue()) < len(chunks[i]):
            total -= len(chunks[i]) - len(buffer.getvalue())
            chunks[i] = buffer.getvalue()
            redone += 1
    offset = 0
    for record, chunk in zip(records, chunks):
        record[4], record[5] = offset, len(chunk)
        offset += len(chunk)
    meta["requantised"] = {"quality": quality, "faces": redone}
    (pack / "pack.bin").write_bytes(b"".join(chunks))
    (pack / "pack.json.gz").write_bytes(gzip.compress(json.dumps(meta).encode()))
    (pack / "pack.json").unlink()
    print(f"{redone} faces re-encoded at quality {quality}; pack.bin {offset} bytes (budget {budget})")
    return 0 if offset <= budget else 1


if __name__ == "__main__":
    sys.exit(main())
