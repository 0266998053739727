"""Atomic outputs: every file or folder agegender writes appears whole or not at all."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from agegender.errors import AgegenderError

_UMASK = os.umask(0)
os.umask(_UMASK)


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` as a Path, or raise a one-line error when it is not a readable file."""
    path = Path(path)
    if not path.exists():
        raise AgegenderError(f"{what} not found: {path}")
    if not path.is_file():
        raise AgegenderError(f"{what} is not a file: {path}")
    return path


def make_parent(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` goes in (one-line error when that fails); returns the folder."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AgegenderError(f"cannot create folder {parent}: {exc.strerror}") from None
    return parent


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    make_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    make_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def newest_snapshot(path: str | os.PathLike, suffix: str = ".caffemodel") -> Path:
    """``path`` itself if it is a file, else the ``*_iter_N<suffix>`` in that folder with the largest N."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise AgegenderError(f"no such snapshot or folder: {path}")
    snapshots = []
    for candidate in path.glob(f"*_iter_*{suffix}"):
        iteration = candidate.name[: -len(suffix)].rsplit("_iter_", 1)[-1]
        if iteration.isdigit():
            snapshots.append((int(iteration), candidate))
    if not snapshots:
        raise AgegenderError(f"no *_iter_N{suffix} snapshot in {path}; "
                             f"train first with `agegender train`")
    return max(snapshots)[1]
