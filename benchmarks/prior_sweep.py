"""The class prior's weight, swept on the validation faces (a benchmark, not a test): how docs/compile.md chose
AgeNet's W = 0.5. The IR's probabilities are taken back to the net as trained (a prior already folded in, as its
sidecar records, is divided out) and re-weighted by ``(f_natural / f_trained) ** W`` for each W: the same
arithmetic compile --prior folds into the last bias.

    .venv/bin/python benchmarks/prior_sweep.py --ir data/seeds/42/graph/AgeNet.xml --lmdb data/lmdb/age_val_lmdb \\
        [--natural data/DEF/age_train_natural.txt --trained-on data/DEF/age_train.txt]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender.deploy.prior import label_frequencies  # noqa: E402
from agegender.evaluate import _ir_predictor  # noqa: E402
from agegender.scoring import evaluate  # noqa: E402

WEIGHTS = (0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ir", type=Path, required=True, help="an age IR (with or without a folded prior)")
    parser.add_argument("--lmdb", required=True, help="the LMDB to score on: the validation faces, never the test")
    parser.add_argument("--natural", default="data/DEF/age_train_natural.txt")
    parser.add_argument("--trained-on", default="data/DEF/age_train.txt")
    args = parser.parse_args()
    predict, crop, mean, (task, classes) = _ir_predictor(args.ir, "CPU", None)
    from agegender.deploy.metadata import read_metadata

    folded = np.array(read_metadata(args.ir).prior.get("bias_added", np.zeros(len(classes))), np.float64)
    shift = np.log(label_frequencies(args.natural, len(classes))) - np.log(label_frequencies(args.trained_on,
                                                                                              len(classes)))
    print(f"{args.ir}: prior folded in {folded.round(2).tolist()} (divided out first)")
    for weight in WEIGHTS:
        def reweighted(batch, weight=weight):
            logp = np.log(np.maximum(predict(batch), 1e-12)) - folded + weight * shift
            p = np.exp(logp - logp.max(axis=1, keepdims=True))
            return p / p.sum(axis=1, keepdims=True)
        scores = evaluate(reweighted, args.lmdb, mean, crop, classes, False).to_dict(task)
        print(f"W = {weight:<4}: exact {100 * scores['accuracy']:.1f}%, macro-F1 {scores['macro_f1']:.3f}, "
              f"1-off {100 * scores['one_off']:.1f}%", flush=True)


if __name__ == "__main__":
    main()
