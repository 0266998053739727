"""Whether a decision offset on GenderNet's log-odds would fix its gender errors on FairFace dev (a benchmark, not
a test): accuracy and both recalls for offsets towards Female, and an offset chosen on one half of the faces
scored on the other (2-fold, both ways). Given several runs (other seeds' graphs on the same images), each is
scored alone and then their average probabilities (an ensemble), on which the offsets are then tried.

    .venv/bin/python run_inference.py --image-path ../shared/datasets/fairface-dev/images --graph-dir GRAPH \\
        --detector ultraface --detector-dir ../shared/caffe-fixtures --json RUN.jsonl
    .venv/bin/python benchmarks/gender_offset.py RUN.jsonl [RUN2.jsonl ...]

The largest face of each image is scored, as bench_wild.py does; images without a face are left out here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender import wild  # noqa: E402

OFFSETS = np.round(np.arange(0, 2.01, 0.05), 2)


def female_probabilities(run: Path, truths: dict) -> dict[str, float]:
    """p(Female) of the largest face of every labelled image with a face."""
    out = {}
    for line in run.read_text().splitlines():
        record = json.loads(line)
        face = wild.largest_face(record["faces"])
        if face and record["image"] in truths:
            out[record["image"]] = face["gender"]["probabilities"]["Female"]
    return out


def common_names(runs: list[Path], labels: Path) -> list[str]:
    """The labelled images with a face in every run (in the first run's order)."""
    truths = {t.name: t for t in wild.read_fairface_labels(labels)}
    found = [female_probabilities(run, truths) for run in runs]
    names = [name for name in found[0] if all(name in f for f in found[1:])]
    if not names:
        raise SystemExit(f"gender_offset.py: no image of {labels} has a face in every run; are they "
                         f"run_inference.py --json outputs of FairFace dev's images?")
    return names


def log_odds(runs: list[Path], labels: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(is the face a woman, log p(Female) - log p(Male)) of each of ``names``, p(Female) averaged over the runs."""
    truths = {t.name: t for t in wild.read_fairface_labels(labels)}
    found = [female_probabilities(run, truths) for run in runs]
    p = np.clip(np.array([[f[name] for f in found] for name in names]).mean(1), 1e-9, 1 - 1e-9)
    return np.array([truths[name].gender == "Female" for name in names], bool), np.log(p) - np.log1p(-p)


def accuracy(women: np.ndarray, scores: np.ndarray, offset: float) -> float:
    return float(np.mean((scores + offset > 0) == women))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run_inference.py --json output on FairFace dev's "
                        "images; several: each alone, then their average")
    parser.add_argument("--labels", type=Path, default=ROOT.parent / "shared/datasets/fairface-dev/labels.tsv")
    args = parser.parse_args()
    names = common_names(args.runs, args.labels)  # every run scored on the same faces
    if len(args.runs) > 1:
        for run in args.runs:
            women, scores = log_odds([run], args.labels, names)
            print(f"{run}: accuracy {100 * accuracy(women, scores, 0):.1f}% on {len(women)} faces")
    women, scores = log_odds(args.runs, args.labels, names)
    print(f"{'average of the runs, ' if len(args.runs) > 1 else ''}{len(women)} faces ({women.sum()} women)")
    for offset in (0, 0.25, 0.5, 0.75, 1.0, 1.5):
        female, male = np.mean(scores[women] + offset > 0), np.mean(scores[~women] + offset <= 0)
        print(f"offset {offset:+.2f}: accuracy {100 * accuracy(women, scores, offset):.1f}%, female recall "
              f"{100 * female:.1f}%, male recall {100 * male:.1f}%")
    order = np.random.default_rng(0).permutation(len(women))
    halves = (order[:len(order) // 2], order[len(order) // 2:])
    for fit, held in (halves, halves[::-1]):
        best = max(OFFSETS, key=lambda o: accuracy(women[fit], scores[fit], o))
        chosen, plain = accuracy(women[held], scores[held], best), accuracy(women[held], scores[held], 0)
        print(f"offset chosen on one half: {best:+.2f}; on the other half {100 * chosen:.1f}% vs {100 * plain:.1f}% "
              f"without")


if __name__ == "__main__":
    main()
