"""Whether a decision offset on GenderNet's log-odds would fix its gender errors on FairFace dev (a benchmark, not
a test): accuracy and both recalls for offsets towards Female, and an offset chosen on one half of the faces
scored on the other (2-fold, both ways).

    .venv/bin/python run_inference.py --image-path ../shared/datasets/fairface-dev/images --graph-dir GRAPH \\
        --detector ultraface --detector-dir ../shared/caffe-fixtures --json RUN.jsonl
    .venv/bin/python benchmarks/gender_offset.py RUN.jsonl

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


def log_odds(run: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """(is the face a woman, log p(Female) - log p(Male)) of every image with a face."""
    truths = {t.name: t for t in wild.read_fairface_labels(labels)}
    women, scores = [], []
    for line in run.read_text().splitlines():
        record = json.loads(line)
        face = wild.largest_face(record["faces"])
        if face and record["image"] in truths:
            p = face["gender"]["probabilities"]
            women.append(truths[record["image"]].gender == "Female")
            scores.append(np.log(max(p["Female"], 1e-9)) - np.log(max(p["Male"], 1e-9)))
    return np.array(women), np.array(scores)


def accuracy(women: np.ndarray, scores: np.ndarray, offset: float) -> float:
    return float(np.mean((scores + offset > 0) == women))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run_inference.py --json output on FairFace dev's images")
    parser.add_argument("--labels", type=Path, default=ROOT.parent / "shared/datasets/fairface-dev/labels.tsv")
    args = parser.parse_args()
    women, scores = log_odds(args.run, args.labels)
    print(f"{len(women)} faces ({women.sum()} women)")
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
