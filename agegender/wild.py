"""Scoring age and gender on faces from other cameras (FairFace's in-the-wild dev set, or any labelled folder):
FairFace's age bins on our scale, one face per image, and an image without a face counted wrong.

FairFace labels ages in 9 bins, ``0-2 3-9 10-19 20-29 30-39 40-49 50-59 60-69 70+``; ours (AGE_CLASSES) are
``0-9 10-19 ... 60-69 70-79 80-120``. ``0-2`` and ``3-9`` both lie inside our ``0-9``; ``10-19`` ... ``60-69``
are the same bins; ``70+`` spans our ``70-79`` and ``80-120``, so either answer is exact for it.
1-off ("one bin off", Levi & Hassner's measure) accepts a predicted bin next to a correct one on our scale:
``0-2``/``3-9`` accept ``0-9`` and ``10-19``; ``70+`` accepts ``60-69``, ``70-79`` and ``80-120``.

One prediction per image: when run_inference (or the peer) reports several faces, the largest box is taken
(the labelled person fills FairFace's 448x448 crops; bystanders are smaller). An image where no face was
found, or that could not be read, counts wrong for age and gender alike, and is counted.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from agegender.caffe.listfile import read_list
from agegender.errors import AgegenderError
from agegender.labels import AGE_CLASSES, GENDER_CLASSES, age_bin

FAIRFACE_AGE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
EAST_SOUTHEAST_ASIAN = frozenset({"East Asian", "Southeast Asian"})
FAIRFACE_COLUMNS = ("file", "age", "gender", "race")


def fairface_targets(fairface_bin: str) -> frozenset[int]:
    """Our age labels (indices of AGE_CLASSES) that are exact for a FairFace age bin."""
    if fairface_bin in ("0-2", "3-9"):
        return frozenset({AGE_CLASSES.index("0-9")})
    if fairface_bin == "70+":
        return frozenset({AGE_CLASSES.index("70-79"), AGE_CLASSES.index("80-120")})
    if fairface_bin in FAIRFACE_AGE_BINS:
        return frozenset({AGE_CLASSES.index(fairface_bin)})
    raise ValueError(f"{fairface_bin!r} is not a FairFace age bin ({' '.join(FAIRFACE_AGE_BINS)})")


def age_exact(predicted: int, targets: frozenset[int]) -> bool:
    return predicted in targets


def age_one_off(predicted: int, targets: frozenset[int]) -> bool:
    """Within one bin of a correct bin on our scale (so 70+ accepts 60-69, 70-79 and 80-120)."""
    return any(abs(predicted - target) <= 1 for target in targets)


@dataclass(frozen=True)
class Truth:
    """One labelled image: ``age`` holds the labels that are exact for it."""
    name: str
    age: frozenset[int]
    gender: str
    race: str


@dataclass(frozen=True)
class Guess:
    """What a system said about one image's face; ``age is None`` means no face was found (or no image)."""
    age: int | None = None
    gender: str | None = None
    whole: bool = False  # run_inference fed the whole image (auto mode, no face detected in a face-crop-like image)

    @property
    def found(self) -> bool:
        return self.age is not None


NOT_FOUND = Guess()


def largest_face(faces: Sequence[Mapping]) -> Mapping | None:
    """The face whose ``box`` [x, y, w, h] has the largest area; the first of equals; None for no face."""
    best = None
    for face in faces:
        if best is None or face["box"][2] * face["box"][3] > best["box"][2] * best["box"][3]:
            best = face
    return best


# ---------------------------------------------------------------------------------------------- reading

def read_fairface_labels(path: str | Path) -> list[Truth]:
    """FairFace's ``labels.tsv`` (header ``file age gender race``, tab-separated)."""
    path = Path(path)
    if not path.is_file():
        raise AgegenderError(f"labels file not found: {path} (FairFace's labels.tsv: file, age, gender, race)")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    if not rows or tuple(rows[0]) != FAIRFACE_COLUMNS:
        raise AgegenderError(f"{path}: the first line must be the header {' '.join(FAIRFACE_COLUMNS)} (tab-separated)")
    truths = []
    for number, row in enumerate(rows[1:], 2):
        if len(row) != 4 or row[2] not in GENDER_CLASSES or row[1] not in FAIRFACE_AGE_BINS:
            raise AgegenderError(f"{path} line {number}: expected file, an age bin ({' '.join(FAIRFACE_AGE_BINS)}), "
                                 f"Male or Female, race; got {row}")
        truths.append(Truth(row[0], fairface_targets(row[1]), row[2], row[3]))
    return truths


def read_test_lists(age_list: str | Path, gender_list: str | Path, race: str = "Asian") -> list[Truth]:
    """The dataset stage's ``path label`` lists (data/DEF/age_test.txt and gender_test.txt), the same images in
    the same order; names are the files' base names."""
    ages, genders = read_list(age_list), read_list(gender_list)
    if [p for p, _ in ages] != [p for p, _ in genders]:
        raise AgegenderError(f"{age_list} and {gender_list} do not list the same images in the same order; "
                             f"rebuild them with build_dataset.py")
    return [Truth(Path(path).name, frozenset({age}), GENDER_CLASSES[gender], race)
            for (path, age), (_, gender) in zip(ages, genders)]


def list_images(path: str | Path) -> list[str]:
    """The image paths of a ``path label`` list, in order."""
    return [image for image, _ in read_list(path)]


def guesses_from_run_inference(lines: Iterable[str]) -> dict[str, Guess]:
    """run_inference.py --json lines (one object per image) -> the largest face's age label and gender per image.
    An image with no face or an error line gets NOT_FOUND."""
    guesses = {}
    for line in lines:
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "image" not in record:
            continue
        face = largest_face(record.get("faces", []))
        if face is None:
            guesses[record["image"]] = NOT_FOUND
            continue
        whole = record.get("faces_from") == "crop" and record.get("detected") == 0
        guesses[record["image"]] = Guess(AGE_CLASSES.index(face["age"]["label"]), face["gender"]["label"], whole)
    return guesses


def guesses_from_peer(lines: Iterable[str]) -> dict[str, Guess]:
    """The peer runner's lines, ``{"image", "faces": [{"box", "age": years, "gender": "male"|"female"}]}``:
    ages in years become our bins (labels.age_bin, clipped to 0-120)."""
    guesses = {}
    for line in lines:
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "image" not in record:  # the runner's closing {"seconds": ...}
            continue
        face = largest_face(record.get("faces", []))
        guesses[record["image"]] = NOT_FOUND if face is None else Guess(
            age_bin(min(max(int(face["age"]), 0), 120)), str(face["gender"]).capitalize())
    return guesses


# ---------------------------------------------------------------------------------------------- scoring

def score(truths: Sequence[Truth], guesses: Mapping[str, Guess], found_only: bool = False) -> dict:
    """Counts and fractions of age exact, age 1-off and gender over ``truths``; an image absent from
    ``guesses`` or without a face counts wrong (``found_only``: such images are left out instead)."""
    found = [t for t in truths if guesses.get(t.name, NOT_FOUND).found]
    scored = found if found_only else list(truths)
    counts = {"age_exact": 0, "age_one_off": 0, "gender": 0}
    for truth in scored:
        guess = guesses.get(truth.name, NOT_FOUND)
        if guess.found:
            counts["age_exact"] += age_exact(guess.age, truth.age)
            counts["age_one_off"] += age_one_off(guess.age, truth.age)
            counts["gender"] += guess.gender == truth.gender
    n = len(scored)
    result = {"n": n, "not_found": len(truths) - len(found),
              "whole_image": sum(guesses.get(t.name, NOT_FOUND).whole for t in scored)}
    for key, correct in counts.items():
        result[key] = {"correct": correct, "accuracy": correct / n if n else None}
    return result


def evaluate(truths: Sequence[Truth], guesses: Mapping[str, Guess],
             groups: Mapping[str, frozenset[str]] | None = None) -> dict:
    """Every figure of one system: per group (default: all faces, and the East/Southeast Asian ones) with
    not-found counted wrong, on found faces only, and (``_detected``, when run_inference fed some images
    whole) on faces the detector found only; gender per race, each gender's recall, and (``gender_recall_by_age``)
    each gender's recall per age bin of the labels (age_name)."""
    groups = {"all": frozenset(), "east_southeast_asian": EAST_SOUTHEAST_ASIAN} if groups is None else groups
    result = {}
    for group, races in groups.items():
        members = [t for t in truths if not races or t.race in races]
        if members:
            result[group] = score(members, guesses)
            result[f"{group}_found"] = score(members, guesses, found_only=True)
            if any(guesses.get(t.name, NOT_FOUND).whole for t in members):
                detected = [t for t in members if not guesses.get(t.name, NOT_FOUND).whole]
                result[f"{group}_detected"] = score(detected, guesses, found_only=True)
    result["gender_by_race"] = {race: score([t for t in truths if t.race == race], guesses)["gender"] | {
        "n": sum(t.race == race for t in truths)} for race in sorted({t.race for t in truths})}
    result["gender_recall"] = {gender: score([t for t in truths if t.gender == gender], guesses)["gender"] | {
        "n": sum(t.gender == gender for t in truths)} for gender in GENDER_CLASSES if any(
        t.gender == gender for t in truths)}
    result["gender_recall_by_age"] = {gender: {age_name(age): score(
        [t for t in truths if t.gender == gender and t.age == age], guesses)["gender"] | {
        "n": sum(t.gender == gender and t.age == age for t in truths)} for age in sorted(
        {t.age for t in truths if t.gender == gender}, key=min)} for gender in result["gender_recall"]}
    return result


def age_name(age: frozenset[int]) -> str:
    """A truth's exact bins as one name: ``20-29``; ``70+`` when they run to the last bin (FairFace's 70+ is
    70-79 and 80-120), else ``first-last`` (``20-39``)."""
    low, high = min(age), max(age)
    first = AGE_CLASSES[low].split("-")[0]
    if low == high:
        return AGE_CLASSES[low]
    return f"{first}+" if high == len(AGE_CLASSES) - 1 else f"{first}-{AGE_CLASSES[high].split('-')[1]}"


def _percent(entry: dict) -> str:
    return "n/a" if entry["accuracy"] is None else f"{100 * entry['accuracy']:.1f}%"


def format_score(title: str, result: dict) -> str:
    """One line: ``title (N=145): age exact 29.7% (43), 1-off 54.5% (79), gender 60.0% (87), no face 3``."""
    figures = ", ".join(f"{label} {_percent(result[key])} ({result[key]['correct']})" for key, label in
                        (("age_exact", "age exact"), ("age_one_off", "1-off"), ("gender", "gender")))
    whole = f" (whole image used {result['whole_image']})" if result["whole_image"] else ""
    return f"{title} (N={result['n']}): {figures}, no face {result['not_found']}{whole}"


def format_gender_by_race(by_race: dict, title: str = "gender by race") -> str:
    return f"{title}: " + ", ".join(f"{race} {_percent(entry)} ({entry['correct']}/{entry['n']})"
                                    for race, entry in by_race.items())
