"""UTKFace file names, ``[age]_[gender]_[race]_[datetime].jpg.chip.jpg``, and the face folder's contents."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agegender.dataset.report import SkipReport
from agegender.errors import AgegenderError
from agegender.labels import age_bin

SUFFIX = ".jpg.chip.jpg"
NAME_PATTERN = "[age]_[gender]_[race]_[datetime].jpg.chip.jpg"
RACES = ("White", "Black", "Asian", "Indian", "Others")  # UTKFace race codes 0-4
ASIAN = 2


@dataclass(frozen=True)
class Face:
    path: str  # as written into the lists: relative when the folder was given relative
    age: int
    gender: int  # 0 male, 1 female
    race: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def age_label(self) -> int:
        return age_bin(self.age)


def parse_name(name: str) -> tuple[int, int, int]:
    """(age, gender, race) from a UTKFace file name; ValueError saying what is wrong."""
    if not name.endswith(SUFFIX):
        raise ValueError(f"name does not end in {SUFFIX}")
    fields = name[: -len(SUFFIX)].split("_")
    if len(fields) != 4 or not all(f.isdigit() for f in fields):
        raise ValueError(f"name has fields {fields}, expected 4 numbers as in {NAME_PATTERN}")
    age, gender, race = (int(f) for f in fields[:3])
    if not 0 <= age <= 120:
        raise ValueError(f"age {age} is outside 0-120")
    if gender not in (0, 1):
        raise ValueError(f"gender {gender} is neither 0 (male) nor 1 (female)")
    if not 0 <= race < len(RACES):
        raise ValueError(f"race {race} is not a UTKFace race code 0-{len(RACES) - 1}")
    return age, gender, race


def race_code(text: str) -> int | None:
    """--race value: a code 0-4, a race name, or ``all`` (None)."""
    if text.lower() == "all":
        return None
    names = [r.lower() for r in RACES]
    if text.lower() in names:
        return names.index(text.lower())
    if text.isdigit() and int(text) < len(RACES):
        return int(text)
    raise ValueError(f"race must be 0-{len(RACES) - 1}, one of {', '.join(RACES)}, or all")


def face_folder_name(race: int | None) -> str:
    """data/ folder of a race, as the original named the Asian one: UTKFace_AsianOnly; all races: UTKFace."""
    return "UTKFace" if race is None else f"UTKFace_{RACES[race]}Only"


def scan_faces(folder: Path, report: SkipReport) -> list[Face]:
    """The parseable faces in ``folder`` sorted by name; others reported and skipped."""
    if not folder.is_dir():
        raise AgegenderError(f"face folder not found: {folder} (run `agegender dataset fetch SOURCE` first)")
    faces = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = os.path.join(str(folder), entry.name)
        if not entry.is_file():
            report.skip(path, "not a file")
            continue
        try:
            age, gender, race = parse_name(entry.name)
        except ValueError as exc:
            report.skip(path, "bad name", str(exc))
            continue
        faces.append(Face(path, age, gender, race))
    if not faces:
        raise AgegenderError(f"no UTKFace image in {folder} ({report.describe()}); "
                             f"expected files named {NAME_PATTERN}")
    return faces
