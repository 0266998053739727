"""Which lists an LMDB was built from, so LMDBs of different splits are never used together.

create_lmdb.sh writes ``agegender.json`` into each LMDB folder (Caffe's readers only open data.mdb) with the
sha256 of the four lists of the run. The mean, train and test stages refuse an LMDB whose stamp differs from
its siblings' (the other ``*_lmdb`` folders beside it) or from the other LMDBs of the net: a training LMDB of
a new split beside the test LMDB of the old one would put test images into training without a word.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

from agegender.errors import AgegenderError

STAMP = "agegender.json"


def lists_digest(lists: Iterable[Path]) -> str:
    """sha256 over the names and contents of the lists (a missing list counts as empty)."""
    digest = hashlib.sha256()
    for path in sorted(lists, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()


def write_stamp(folder: Path, lists_sha256: str, lists: Path) -> None:
    (folder / STAMP).write_text(json.dumps({"lists_sha256": lists_sha256, "lists": str(lists)}) + "\n")


def read_stamp(lmdb: Path) -> str | None:
    """The lists' sha256 the LMDB was built from; None for an LMDB without a stamp (built elsewhere)."""
    try:
        return str(json.loads((Path(lmdb) / STAMP).read_text())["lists_sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_lmdb_set(lmdbs: Iterable[str | os.PathLike]) -> None:
    """One-line error when the given LMDBs, or the ``*_lmdb`` siblings of any of them, were built from
    different lists (another split): e.g. a create_lmdb.sh interrupted after a re-split."""
    stamps: dict[Path, str] = {}
    for lmdb in map(Path, lmdbs):
        siblings = [p for p in lmdb.parent.glob("*_lmdb") if p.is_dir()] if lmdb.parent.is_dir() else []
        for path in [lmdb, *siblings]:
            stamp = read_stamp(path)
            if stamp is not None:
                stamps.setdefault(path, stamp)
    if len(set(stamps.values())) > 1:
        (first, a), *others = stamps.items()
        second, b = next((path, stamp) for path, stamp in others if stamp != a)
        raise AgegenderError(f"LMDBs from different splits: {first} was built from lists {a[:12]} but {second} "
                             f"from lists {b[:12]} (an interrupted create_lmdb.sh after a re-split?); run "
                             f"create_lmdb.sh again so all LMDBs come from the same lists")
