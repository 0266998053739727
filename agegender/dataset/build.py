"""``build_dataset.py``: split the faces 80/20 stratified by age bin, oversample the training part, write lists.

Outputs, each replaced atomically: ``<lists>/{age,gender}_{train,test}.txt`` (``path label`` per line, as
convert_imageset reads them) and the augmented copies in ``<augmented>/``. The gender lists hold the same
age-balanced training images as the age lists, with their gender labels, as the original project did.
"""
from __future__ import annotations

import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from agegender.dataset.augment import Copy, augment, encode_jpeg, oversample_plan
from agegender.dataset.parallel import parallel_map
from agegender.dataset.report import SkipReport
from agegender.dataset.split import stratified_split
from agegender.dataset.utkface import Face, scan_faces
from agegender.errors import AgegenderError
from agegender.fileio import atomic_directory
from agegender.images import BadImage, read_image
from agegender.labels import AGE_CLASSES
from agegender.progress import Progress
from agegender.tasks import TASKS


@dataclass(frozen=True)
class Entry:
    """One line of a list: an image file and the face it shows (its own, or its source's for a copy)."""
    path: str
    face: Face

    def label(self, task: str) -> int:
        return TASKS[task].label(self.face)


def count_table(entries: Sequence[Entry]) -> str:
    """The original's per-class tables, one per task: age bins, then genders."""
    tables = (task.count_table([e.label(task.name) for e in entries]) for task in TASKS.values())
    return "\n".join(line for table in tables for line in table)


def list_text(entries: Sequence[Entry], task: str) -> str:
    return "".join(f"{e.path} {e.label(task)}\n" for e in entries)


def _check_image(path: str) -> str | None:
    try:
        read_image(path)
    except BadImage as exc:
        return str(exc)
    return None


def usable_faces(faces: Sequence[Face], workers: int, report: SkipReport) -> list[Face]:
    """The faces whose files decode; the others reported and skipped."""
    usable = []
    progress = Progress(len(faces), "checking images", "images")
    for face, problem in zip(faces, parallel_map(_check_image, [f.path for f in faces], workers)):
        progress.update()
        if problem:
            report.skip(face.path, problem)
        else:
            usable.append(face)
    progress.close()
    return usable


def _write_copies(job: tuple[str, list[Copy], str, int, float]) -> str | None:
    """Decode one source once and write all its copies; the reason when the source no longer decodes."""
    source, copies, folder, seed, sigma = job
    try:
        image = read_image(source)
    except BadImage as exc:
        return f"{source}: {exc}"
    for copy in copies:
        Path(folder, copy.name).write_bytes(encode_jpeg(augment(image, copy, seed, sigma)))
    return None


def write_copies(copies: Sequence[Copy], folder: Path, seed: int, sigma: float, workers: int) -> None:
    by_source: dict[str, list[Copy]] = defaultdict(list)
    for copy in copies:
        by_source[copy.source.path].append(copy)
    jobs = [(source, group, str(folder), seed, sigma) for source, group in by_source.items()]
    progress = Progress(len(copies), "oversampling (flip, noise)", "images")
    for job, problem in zip(jobs, parallel_map(_write_copies, jobs, workers)):
        if problem:
            raise AgegenderError(f"source image changed while building: {problem}; run `agegender dataset build` again")
        progress.update(len(job[1]))
    progress.close()


def build(images: Path, lists: Path, augmented: Path, seed: int, fraction: Fraction, sigma: float,
          workers: int, report: SkipReport, balanced: Sequence[str] = ()) -> str:
    """The whole build stage; prints the tables and returns the summary line. The training lists of the
    ``balanced`` tasks hold the age-balanced oversampled set, the others each training face once."""
    faces = scan_faces(images, report)
    files_in = len(faces) + report.count
    usable = usable_faces(faces, workers, report)
    if not usable:
        raise AgegenderError(f"no usable image in {images} ({files_in} files, {report.describe()})")
    train, test = stratified_split(usable, fraction, seed, len(AGE_CLASSES))
    copies = oversample_plan(train, len(AGE_CLASSES), seed) if balanced else []  # no list would name them
    for label in sorted({f.age_label for f in usable} - {f.age_label for f in train}):
        print(f"warning: age bin {AGE_CLASSES[label]} has no training image, so it stays empty", file=sys.stderr)
    print(f"Split {float(1 - fraction):.0%}/{float(fraction):.0%} stratified by age bin (seed {seed}): "
          f"{len(train)} train, {len(test)} test")
    faces_once = [Entry(f.path, f) for f in train]
    print(f"TRAIN SET:\n{count_table(faces_once)}\nTEST SET:\n{count_table([Entry(f.path, f) for f in test])}")
    with atomic_directory(lists) as lists_tmp, atomic_directory(augmented) as copies_tmp:
        if copies:
            write_copies(copies, copies_tmp, seed, sigma, workers)
        oversampled = faces_once + [Entry(str(augmented / c.name), c.source)
                                    for c in sorted(copies, key=lambda c: c.name)]
        for task in TASKS.values():
            entries = oversampled if task.name in balanced else faces_once
            (lists_tmp / task.list_name("train")).write_text(list_text(entries, task.name))
            (lists_tmp / task.list_name("test")).write_text(list_text([Entry(f.path, f) for f in test], task.name))
        shutil.rmtree(lists, ignore_errors=True)  # old lists must not outlive the copies they name
    if balanced:
        print(f"\nAFTER OVERSAMPLING:\n{count_table(oversampled)}")
    lines = ", ".join(f"{task} {len(oversampled) if task in balanced else len(faces_once)}" for task in TASKS)
    return (f"dataset: {files_in} files in, {len(usable)} images used ({len(train)} train, {len(test)} test), "
            f"{len(copies)} augmented copies written to {augmented}, training lines {lines} and {len(test)} "
            f"test lines each in {lists}/{{{','.join(TASKS)}}}_{{train,test}}.txt, {report.describe()}")
