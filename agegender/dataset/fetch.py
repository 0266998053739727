"""``download.sh [SOURCE]``: a UTKFace archive, folder or URL -> data/UTKFace_AsianOnly/ (one race, or all)."""
from __future__ import annotations

import os
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterator

from agegender.dataset.report import SkipReport
from agegender.dataset.utkface import RACES, parse_name
from agegender.errors import AgegenderError
from agegender.fileio import atomic_directory
from agegender.images import BadImage, check_image_bytes
from agegender.progress import Progress

Member = tuple[str, Callable[[], bytes]]  # (path shown to the user, reader of its bytes)
_MIB = 1 << 20
_READ_ERRORS = (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error)


def _folder_members(folder: Path) -> Iterator[Member]:
    for path in sorted(p for p in folder.rglob("*") if not p.is_dir()):
        yield str(path), path.read_bytes


def _not_a_regular_file() -> bytes:
    raise BadImage("not a regular file (link or device) in the archive")


def _archive_members(archive: Path) -> Iterator[Member]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield f"{archive}:{info.filename}", lambda info=info: zf.read(info)
        return
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if member.isfile():
                yield f"{archive}:{member.name}", lambda member=member: tar.extractfile(member).read()
            elif not member.isdir():
                yield f"{archive}:{member.name}", _not_a_regular_file


def _download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0)
            progress = Progress(-(-size // _MIB), f"downloading {url}", "MiB")
            while chunk := response.read(_MIB):
                out.write(chunk)
                progress.update()
            progress.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AgegenderError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from None


def _members(source: str, scratch: Path) -> Iterator[Member]:
    if "://" in source:
        _download(source, scratch)
        yield from _archive_members(scratch)
        return
    path = Path(source)
    if path.is_dir():
        if not any(path.iterdir()):
            raise AgegenderError(f"UTKFace source folder {source} is empty")
        yield from _folder_members(path)
    elif not path.exists():
        raise AgegenderError(f"UTKFace source not found: {source}; "
                             f"give a UTKFace .tar.gz, a folder of its images or a URL")
    elif tarfile.is_tarfile(path) or zipfile.is_zipfile(path):
        yield from _archive_members(path)
    else:
        raise AgegenderError(f"{source} is neither a folder nor a .tar.gz/.zip archive of UTKFace images")


class _Copier:
    """Copies the members that are UTKFace faces of the wanted race into a folder, reporting the others."""

    def __init__(self, folder: Path, race: int | None, report: SkipReport):
        self.folder, self.race, self.report = folder, race, report
        self.looked_at = self.other_race = 0
        self.names: set[str] = set()

    def copy(self, shown: str, read: Callable[[], bytes]) -> None:
        self.looked_at += 1
        name = os.path.basename(shown)
        try:
            _, _, face_race = parse_name(name)
        except ValueError as exc:
            return self.report.skip(shown, "bad name", str(exc))
        if self.race is not None and face_race != self.race:
            self.other_race += 1
            return None
        if name in self.names:
            return self.report.skip(shown, "duplicate name")
        try:
            data = read()
            check_image_bytes(data)
        except BadImage as exc:
            return self.report.skip(shown, str(exc))
        except _READ_ERRORS as exc:
            return self.report.skip(shown, "unreadable", str(exc))
        try:
            (self.folder / name).write_bytes(data)
        except OSError as exc:
            raise AgegenderError(f"cannot write {self.folder / name}: {exc.strerror}") from None
        self.names.add(name)
        return None


def fetch(source: str, out: Path, race: int | None, report: SkipReport) -> str:
    """Copy the source's images of ``race`` (None: all) into ``out``, replacing it; returns the summary line."""
    scratch = out.parent / f".{out.name}.download.tmp"
    which = "UTKFace image" if race is None else f"UTKFace image of race {race} ({RACES[race]})"
    try:
        with atomic_directory(out) as tmp:
            copier = _Copier(tmp, race, report)
            progress = Progress(0, f"copying UTKFace images into {out}", "files")
            try:
                for shown, read in _members(source, scratch):
                    copier.copy(shown, read)
                    progress.update()
            except _READ_ERRORS as exc:
                raise AgegenderError(f"cannot read {source} after {copier.looked_at} files "
                                     f"(truncated or corrupt archive?): {exc}") from None
            progress.close()
            if not copier.names:
                raise AgegenderError(f"no usable {which} in {source} ({copier.looked_at} files looked at, "
                                     f"{copier.other_race} of other races, {report.describe()})")
    finally:
        scratch.unlink(missing_ok=True)
    left_out = f"{copier.other_race} of other races left out, " if race is not None else ""
    return (f"download: {copier.looked_at} files in, {len(copier.names)} images written to {out}, "
            f"{left_out}{report.describe()}")
