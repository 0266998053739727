"""Atomic outputs: every file or folder agegender writes appears whole or not at all.

Temporaries are hidden siblings named ``.<name>.<pid>.<random>.tmp`` (their writer's process id inside), so
the next write of the same output removes those of runs that were killed (kill -9, power loss) and leaves
those of a run still going. Folders and files get the permissions of the umask, like any other output.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Iterator

from agegender.errors import AgegenderError

_UMASK = os.umask(0)
os.umask(_UMASK)


def broken_link(path: Path) -> str | None:
    """"broken or looping symbolic link (-> TARGET)" when ``path`` is a link that leads to no file, else None."""
    if path.is_symlink() and not path.exists():
        return f"broken or looping symbolic link (-> {os.readlink(path)})"
    return None


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` as a Path, or raise a one-line error when it is not a readable file."""
    path = Path(path)
    if broken_link(path):
        raise AgegenderError(f"{what} {path} is a {broken_link(path)}")
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


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail before any work when ``path`` could not be written: its folder is created and probed with a
    temporary file (the way every output is written: a temporary beside it, then a rename)."""
    path = Path(path)
    if path.is_dir():
        raise AgegenderError(f"{what} {path} is a folder; give a file name")
    folder = make_parent(path)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise AgegenderError(f"cannot write {what} {path} ({exc.strerror}); make {folder} writable or choose "
                             f"another path") from None
    return path


def crash_point(name: str) -> None:
    """Tests signal the process here when AGEGENDER_CRASH_AT is ``name`` (SIGKILL, as kill -9 or a power loss)
    or ``name:SIGTERM`` (any signal name)."""
    point, _, sig = os.environ.get("AGEGENDER_CRASH_AT", "").partition(":")
    if point == name:
        os.kill(os.getpid(), getattr(signal, sig or "SIGKILL"))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_prefix(path: Path) -> str:
    """``.<name>.<pid>.``: the start of every temporary written for ``path`` by this process."""
    return f".{path.name}.{os.getpid()}."


_TEMPORARY = re.compile(r"\..+\.(\d+)\.(?:\w+\.)?tmp(?:\.\w+)?")  # .NAME.PID[.RANDOM].tmp[.SUFFIX]
_FRESH: set[Path] = set()  # temporary folders this process made: nothing stale in them, no need to look


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries left by killed runs (their process id is gone) in ``path``'s folder, and finish
    a folder swap a kill cut in two (``.<name>.old`` back in place when ``path`` is missing); returns what
    was removed."""
    path = Path(path)
    folder = path.parent
    old = path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists():
        os.replace(old, path)
    if folder in _FRESH or not folder.is_dir():
        return []
    removed = []
    for sibling in folder.iterdir():
        match = _TEMPORARY.fullmatch(sibling.name)
        if match and not _alive(int(match[1])):
            _remove(sibling)
            removed.append(sibling)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    make_parent(path)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
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


def partial_path(path: str | os.PathLike) -> Path:
    """Where an interrupted run's output goes, beside the complete one's name: results.json -> results.partial.json."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def temporary_directory(path: str | os.PathLike) -> Path:
    """A new empty hidden folder beside ``path`` (stale ones removed first), with the umask's permissions."""
    path = Path(path)
    make_parent(path)
    clean_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700: other users and services could not read the output
    _FRESH.add(tmp)
    return tmp


def _swap_in(tmp: Path, path: Path) -> None:
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


class StagedFolders:
    """Folders written beside their targets and switched in together, once all of them are complete
    (e.g. the four LMDBs of a split: a run stopped anywhere before the end leaves the old set whole)."""

    def __init__(self):
        self.staged: list[tuple[Path, Path]] = []

    def folder(self, path: str | os.PathLike) -> Path:
        """The temporary folder to write ``path``'s contents into."""
        tmp = temporary_directory(path)
        self.staged.append((tmp, Path(path)))
        return tmp

    def commit(self) -> None:
        for number, (tmp, path) in enumerate(self.staged):
            if number:
                crash_point("swap")
            _swap_in(tmp, path)
        self.staged.clear()

    def discard(self) -> None:
        for tmp, _ in self.staged:
            shutil.rmtree(tmp, ignore_errors=True)
        self.staged.clear()


@contextlib.contextmanager
def _committed(staged):
    """Yield ``staged`` (StagedFolders or StagedFiles); commit it on success, discard it on any failure."""
    try:
        yield staged
    except BaseException:
        staged.discard()
        raise
    staged.commit()


def atomic_directories() -> contextlib.AbstractContextManager[StagedFolders]:
    """A StagedFolders; on success every staged folder replaces its target, on failure all are removed."""
    return _committed(StagedFolders())


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``, on failure it is removed."""
    with atomic_directories() as staged:
        yield staged.folder(path)


class StagedFiles:
    """Files written into a hidden temporary folder beside ``folder`` and moved into ``folder`` only when all
    are written: a run killed midway leaves no output that looks complete (the temporary goes at the next run)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder, self.tmp = Path(folder), None

    def path(self, name: str) -> Path:
        if self.tmp is None:
            self.tmp = temporary_directory(self.folder)
        else:
            crash_point("staged-file")
        return self.tmp / name

    def commit(self) -> None:
        if self.tmp is None:
            return
        if not self.folder.exists():
            os.replace(self.tmp, self.folder)
        else:
            for file in self.tmp.iterdir():
                os.replace(file, self.folder / file.name)
            self.tmp.rmdir()
        self.tmp = None

    def discard(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_files(folder: str | os.PathLike | None) -> Iterator[StagedFiles | None]:
    """A StagedFiles committed on success and discarded on failure; None when ``folder`` is None."""
    if folder is None:
        yield None
        return
    with _committed(StagedFiles(folder)) as staged:
        yield staged


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
