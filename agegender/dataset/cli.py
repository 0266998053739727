"""UTKFace dataset: ``fetch`` copies a race's faces from an archive, folder or URL (download.sh); ``build``
splits them 80/20 stratified by age bin, oversamples the training part and writes the lists (build_dataset.py)."""
from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

from agegender.dataset import DEFAULT_NOISE_SIGMA, DEFAULT_SEED
from agegender.dataset.parallel import default_workers
from agegender.dataset.utkface import ASIAN, face_folder_name, race_code
from agegender.errors import non_negative_int
from agegender.tasks import TASKS

DATA = Path("data")


def _race(text: str) -> int | None:
    try:
        return race_code(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        value = Fraction(-1)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, e.g. 0.2, got {text!r}")
    return value


def _default_augmented(images: Path) -> Path:
    """IMAGES_augmented beside a face folder of data/; under data/ for a folder elsewhere (never beside a
    read-only or shared source)."""
    if images.resolve().parent == DATA.resolve():
        return images.with_name(images.name + "_augmented")
    return DATA / (images.name + "_augmented")


def _fraction_or_zero(text: str) -> Fraction:
    return Fraction(0) if text.strip() in ("0", "0.0") else _fraction(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="step", metavar="step", required=True)
    fetch = sub.add_parser("fetch", help="copy UTKFace images of one race into data/ (download.sh)",
                           description="Copy the UTKFace images of one race from an archive, a folder or a URL.")
    fetch.add_argument("source", nargs="?", help="UTKFace .tar.gz/.zip archive, folder of its images, or URL of an "
                       "archive (downloaded only then); e.g. ../shared/datasets/utkface-asian")
    fetch.add_argument("--race", type=_race, default=ASIAN, metavar="RACE",
                       help="0 White, 1 Black, 2 Asian (default), 3 Indian, 4 Others, or all")
    fetch.add_argument("--out", type=Path,
                       help="output folder (default data/UTKFace_AsianOnly, data/UTKFace for all, ...)")
    build = sub.add_parser("build",
                           help="split 80/20, oversample the training part, write the lists (build_dataset.py)",
                           description="Split the faces 80/20 stratified by age bin, oversample the training part "
                                       "by flipping and Gaussian noise into balanced age bins, write the lists.")
    build.add_argument("--images", type=Path, default=DATA / face_folder_name(ASIAN),
                       help="face folder from download.sh (default data/UTKFace_AsianOnly)")
    build.add_argument("--lists", type=Path, default=DATA / "DEF", help="list folder (default data/DEF)")
    build.add_argument("--augmented", type=Path,
                       help="folder of the augmented copies (default data/<IMAGES name>_augmented)")
    build.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED,
                       help=f"split and noise seed (default {DEFAULT_SEED})")
    build.add_argument("--test-fraction", type=_fraction, default=Fraction(1, 5), help="test share (default 0.2)")
    build.add_argument("--noise-sigma", type=float, default=DEFAULT_NOISE_SIGMA,
                       help=f"std of the added Gaussian noise, 0-255 scale (default {DEFAULT_NOISE_SIGMA:g})")
    build.add_argument("--balanced", nargs="+", choices=[*TASKS, "none"], default=list(TASKS),
                       metavar="TASK", help="tasks whose training list is the age-balanced oversampled set "
                       "(default: every task, the original's lists); none: each training list names each training "
                       "face once (the natural distribution)")
    build.add_argument("--val-fraction", type=_fraction_or_zero, default=Fraction(1, 10),
                       help="share of the training part kept for validation lists, *_val.txt, that the solvers' "
                            "test passes read (default 0.1; 0: none)")
    build.add_argument("--extra-images", type=Path, nargs="+", default=[], metavar="DIR",
                       help="more UTKFace folders (e.g. ../shared/datasets/utkface-other): all their faces go to "
                            "*_pretrain.txt with the training faces, never to the test or validation lists")
    build.add_argument("--extra-races", type=_race, nargs="+", metavar="RACE",
                       help="only these races of --extra-images (default: all)")
    build.add_argument("--workers", type=int, default=default_workers(), help="threads (default: CPU cores)")


def run(args: argparse.Namespace) -> int:
    from agegender.dataset.report import SkipReport

    report = SkipReport()
    if args.step == "fetch":
        from agegender.dataset.fetch import fetch
        from agegender.errors import AgegenderError

        if not args.source:
            raise AgegenderError("no SOURCE: give a UTKFace .tar.gz, a folder of its images or a URL "
                                 "(UTKFace: https://susanqq.github.io/UTKFace/), "
                                 "e.g. agegender dataset fetch UTKFace.tar.gz")
        print(fetch(args.source, args.out or DATA / face_folder_name(args.race), args.race, report))
        return 0
    from agegender.dataset.build import build

    augmented = args.augmented or _default_augmented(args.images)
    balanced = () if "none" in args.balanced else tuple(args.balanced)
    if "none" in args.balanced and len(args.balanced) > 1:
        from agegender.errors import AgegenderError
        raise AgegenderError(f"--balanced {' '.join(args.balanced)}: give none alone, or tasks (age gender)")
    races = None if not args.extra_races or None in args.extra_races else set(args.extra_races)
    print(build(args.images, args.lists, augmented, args.seed, args.test_fraction, args.noise_sigma, args.workers,
                report, balanced, args.extra_images, races, args.val_fraction))
    return 0
