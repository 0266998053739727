"""The dataset stage on the real 3,434 Asian UTKFace faces: the original's 2,747/687 split (the same 687 test
faces, 24 byte-identical copies of them left out of training, a validation part carved from the rest), equal bins
after oversampling (the default), no test image in training, LMDBs (at 32x32 here, for speed) and the mean."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from agegender.caffe import lmdb_size, read_mean

from conftest import run_cli

TEST_SPLIT_DIGEST = "3c7a0218ce6aa479c33ce73ed6cc174da398023a3f6f17d0bf1b5478d0c56ff6"


def test_real_utkface_split_oversampling_lmdbs_and_mean(utkface, tmp_path):
    proc = run_cli("dataset", "fetch", utkface, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("download: 3434 files in, 3434 images written to data/UTKFace_AsianOnly, "
                                   "0 of other races left out, 0 skipped")
    proc = run_cli("dataset", "build", "--val-fraction", "0", cwd=tmp_path)  # the original protocol
    assert proc.returncode == 0, proc.stderr
    # 2,747 training faces as in the original, less 24 files that are byte-identical copies of test faces
    assert "(seed 42): 2723 train, 687 test\n" in proc.stdout
    train_table = proc.stdout.split("TRAIN SET:")[1].split("TEST SET:")[0]
    after = proc.stdout.split("AFTER OVERSAMPLING:")[1]
    before_counts = [int(n) for n in train_table.strip().splitlines()[3].split("\t")]
    assert sum(before_counts) == 2723 and max(before_counts) == 1047
    after_counts = [int(n) for n in after.strip().splitlines()[3].split("\t")]
    assert after_counts == [1047] * 9
    lists = tmp_path / "data/DEF"
    lines = {name: (lists / f"{name}.txt").read_text().splitlines()
             for name in ("age_train", "age_test", "gender_train", "gender_test")}
    assert len(lines["age_train"]) == len(lines["gender_train"]) == 9 * 1047
    assert len(lines["age_test"]) == len(lines["gender_test"]) == 687
    test_names = sorted(Path(line.rsplit(" ", 1)[0]).name for line in lines["age_test"])
    # the very 687 test faces of the original protocol (digest of their names, taken before any change)
    assert hashlib.sha256("\n".join(test_names).encode()).hexdigest() == TEST_SPLIT_DIGEST
    sources = {re.sub(r"(\.jpg\.chip\.jpg).*", r"\1", Path(line.rsplit(" ", 1)[0]).name) for line in lines["age_train"]}
    assert len(sources) == 2723 and not sources & set(test_names)  # no test image, nor a copy of one, in training
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.endswith(", 24 skipped (24 copy of a held-out face (not used for training))")

    proc = run_cli("lmdb", "--resize", "32", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    counts = {db: lmdb_size(tmp_path / "data/lmdb" / db) for db in
              ("age_train_lmdb", "gender_train_lmdb", "age_test_lmdb", "gender_test_lmdb")}
    assert counts == {"age_train_lmdb": 9423, "gender_train_lmdb": 9423, "age_test_lmdb": 687, "gender_test_lmdb": 687}
    proc = run_cli("mean", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    mean = read_mean(tmp_path / "data/mean/mean.binaryproto")
    assert mean.shape == (3, 32, 32) and 60 < mean.mean() < 200
    assert read_mean(tmp_path / "data/mean/mean.npy").shape == (3, 32, 32)
