"""How many faces run_inference.py answers, and how often rightly, at each --min-gender-confidence (a benchmark,
not a test): the gender of the largest face of each image against its label, for the faces whose gender
probability reaches the threshold.

    .venv/bin/python run_inference.py --image-path FOLDER --graph-dir GRAPH [...] --json RUN.jsonl
    .venv/bin/python benchmarks/gender_coverage.py RUN.jsonl [--labels labels.tsv | --list data/DEF/gender_test.txt]

FairFace dev's labels by default; ``--list`` takes a convert_imageset gender list instead (UTKFace's test split:
the images named by their file names, 0 Male, 1 Female). Images without a face are left out here.
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
from agegender.caffe.listfile import read_list  # noqa: E402
from agegender.labels import GENDER_CLASSES  # noqa: E402

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def truths(labels: Path | None, gender_list: Path | None) -> dict[str, str]:
    if gender_list is not None:
        return {Path(path).name: GENDER_CLASSES[label] for path, label in read_list(gender_list)}
    return {t.name: t.gender for t in wild.read_fairface_labels(labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run_inference.py --json output")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--labels", type=Path, default=ROOT.parent / "shared/datasets/fairface-dev/labels.tsv")
    source.add_argument("--list", type=Path, help="a gender list (path label) instead of FairFace's labels")
    args = parser.parse_args()
    truth = truths(args.labels, args.list)
    confidence, right = [], []
    for line in args.run.read_text().splitlines():
        record = json.loads(line)
        face = wild.largest_face(record.get("faces", []))
        if face and Path(record["image"]).name in truth:
            confidence.append(face["gender"]["probability"])
            right.append(face["gender"]["label"] == truth[Path(record["image"]).name])
    if not right:
        raise SystemExit(f"gender_coverage.py: no labelled image with a face in {args.run}")
    confidence, right = np.array(confidence), np.array(right)
    print(f"{len(right)} faces with a label")
    for threshold in THRESHOLDS:
        said = confidence >= threshold
        print(f"--min-gender-confidence {threshold:.2f}: answered {100 * said.mean():.1f}% ({said.sum()}), "
              f"right {100 * right[said].mean():.1f}% of those, unsure {(~said).sum()}")


if __name__ == "__main__":
    main()
