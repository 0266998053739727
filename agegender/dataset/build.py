"""``build_dataset.py``: split the faces 80/20 stratified by age bin, oversample the training part, write lists.

Outputs, each replaced atomically: ``<lists>/{age,gender}_{train,val,test}.txt`` (``path label`` per line, as
convert_imageset reads them) and the augmented copies in ``<augmented>/``. By default, as the original project
did, both training lists hold the age-balanced oversampled set (flipped and noisy copies until every age bin is as
large as the largest), with their age or gender labels; ``{age,gender}_train_natural.txt`` name each training
face once (the natural class frequencies a balanced net's prior is moved back to: compile --prior). ``val`` is
carved from the training part (stratified, each face once) so recipes are chosen without reading the test split.
With extra sources (``--extra-images``: e.g. the other UTKFace races), ``{age,gender}_pretrain.txt`` name every
training face of every source once, for a pre-training run; the test split is unchanged and no test face, nor a
copy of one (agegender.dataset.leak), ever reaches a training, pre-training or validation list.
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
from agegender.dataset.leak import Fingerprint, LeakGuard, fingerprint
from agegender.dataset.parallel import parallel_map
from agegender.dataset.report import SkipReport
from agegender.dataset.split import stratified_split
from agegender.dataset.utkface import Face, scan_faces
from agegender.errors import AgegenderError
from agegender.fileio import atomic_directory
from agegender.images import BadImage, decode_image, read_bytes, read_image
from agegender.labels import AGE_CLASSES
from agegender.progress import Progress
from agegender.tasks import TASKS

BALANCED_DEFAULT = tuple(TASKS)  # the original's lists: every task's training list balanced by age


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


def _check_image(path: str) -> Fingerprint | str:
    """The image's fingerprint, or the reason it is unusable."""
    try:
        data = read_bytes(path)
        return fingerprint(data, decode_image(data))
    except BadImage as exc:
        return str(exc)


def usable_faces(faces: Sequence[Face], workers: int, report: SkipReport,
                 what: str = "checking images") -> dict[Face, Fingerprint]:
    """The faces whose files decode, with their fingerprints; the others reported and skipped."""
    usable = {}
    progress = Progress(len(faces), what, "images")
    for face, result in zip(faces, parallel_map(_check_image, [f.path for f in faces], workers)):
        progress.update()
        if isinstance(result, str):
            report.skip(face.path, result)
        else:
            usable[face] = result
    progress.close()
    return usable


def extra_faces(folders: Sequence[Path], races: set[int] | None, workers: int,
                report: SkipReport) -> dict[Face, Fingerprint]:
    """The usable faces of the extra sources, of the chosen races (all when None)."""
    found: dict[Face, Fingerprint] = {}
    for folder in folders:
        faces = [f for f in scan_faces(folder, report) if races is None or f.race in races]
        found.update(usable_faces(faces, workers, report, f"checking {folder}"))
    return found


def without_leaks(faces: dict[Face, Fingerprint], guard: LeakGuard, report: SkipReport, role: str) -> list[Face]:
    kept = []
    for face, fp in faces.items():
        if guard.leaks(fp):
            report.skip(face.path, f"copy of a held-out face (not used for {role})")
        else:
            kept.append(face)
    return sorted(kept, key=lambda f: f.name)


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
          workers: int, report: SkipReport, balanced: Sequence[str] = BALANCED_DEFAULT,
          extra: Sequence[Path] = (), extra_races: set[int] | None = None,
          val_fraction: Fraction = Fraction(1, 10)) -> str:
    """The whole build stage; prints the tables and returns the summary line. The training lists of the
    ``balanced`` tasks hold the age-balanced oversampled set, the others each training face once."""
    if any(Path(folder).resolve() == Path(images).resolve() for folder in extra):
        raise AgegenderError(f"--extra-images names {images}, the main source itself; give only other folders "
                             f"(e.g. ../shared/datasets/utkface-other)")
    faces = scan_faces(images, report)
    files_in = len(faces) + report.count
    usable = usable_faces(faces, workers, report)
    if not usable:
        raise AgegenderError(f"no usable image in {images} ({files_in} files, {report.describe()})")
    train, test = stratified_split(list(usable), fraction, seed, len(AGE_CLASSES))
    guard = LeakGuard([usable[f] for f in test])
    train = without_leaks({f: usable[f] for f in train}, guard, report, "training")
    train, val = stratified_split(train, val_fraction, seed + 1, len(AGE_CLASSES)) if val_fraction else (train, [])
    copies = oversample_plan(train, len(AGE_CLASSES), seed) if balanced else []  # no list would name them
    pretrain = []
    if extra:
        guard = LeakGuard([usable[f] for f in test + val])
        pretrain = sorted(train + without_leaks(extra_faces(extra, extra_races, workers, report), guard, report,
                                                "pre-training"), key=lambda f: f.name)
    for label in sorted({f.age_label for f in usable} - {f.age_label for f in train}):
        print(f"warning: age bin {AGE_CLASSES[label]} has no training image, so it stays empty", file=sys.stderr)
    print(f"Split {float(1 - fraction):.0%}/{float(fraction):.0%} stratified by age bin (seed {seed}): "
          f"{len(train) + len(val)} train, {len(test)} test"
          + (f" (the train part: {len(train)} training, {len(val)} validation)" if val else ""))
    once = {name: [Entry(f.path, f) for f in part] for name, part in
            (("train", train), ("val", val), ("test", test), ("pretrain", pretrain))}
    print(f"TRAIN SET:\n{count_table(once['train'])}\nTEST SET:\n{count_table(once['test'])}")
    if pretrain:
        print(f"PRE-TRAINING SET (all sources):\n{count_table(once['pretrain'])}")
    with atomic_directory(lists) as lists_tmp, atomic_directory(augmented) as copies_tmp:
        if copies:
            write_copies(copies, copies_tmp, seed, sigma, workers)
        oversampled = once["train"] + [Entry(str(augmented / c.name), c.source)
                                       for c in sorted(copies, key=lambda c: c.name)]
        for task in TASKS.values():
            entries = oversampled if task.name in balanced else once["train"]
            (lists_tmp / task.list_name("train")).write_text(list_text(entries, task.name))
            # each training face once: the natural class frequencies (compile --prior; agegender.deploy.prior)
            (lists_tmp / task.list_name("train_natural")).write_text(list_text(once["train"], task.name))
            for split in ("val", "test", "pretrain"):
                if once[split]:
                    (lists_tmp / task.list_name(split)).write_text(list_text(once[split], task.name))
        shutil.rmtree(lists, ignore_errors=True)  # old lists must not outlive the copies they name
    if balanced:
        print(f"\nAFTER OVERSAMPLING:\n{count_table(oversampled)}")
    lines = ", ".join(f"{task} {len(oversampled) if task in balanced else len(train)}" for task in TASKS)
    extra_note = f", {len(pretrain)} pre-training lines (all sources)" if pretrain else ""
    return (f"dataset: {files_in} files in, {len(usable)} images used ({len(train)} train, {len(val)} validation, "
            f"{len(test)} test), {len(copies)} augmented copies written to {augmented}, training lines {lines}, "
            f"{len(val)} validation and {len(test)} test lines each{extra_note} in {lists}, {report.describe()}")
