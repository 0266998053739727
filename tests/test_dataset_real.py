"""The dataset stage on the real 3,434 Asian UTKFace faces: the original's 2,747/687 split, equal bins after
oversampling, no test image in training, LMDBs (at 32x32 here, for speed) and the mean's shape."""
from __future__ import annotations

import re
from pathlib import Path

from agegender.caffe import lmdb_size, read_mean

from conftest import run_cli


def test_real_utkface_split_oversampling_lmdbs_and_mean(utkface, tmp_path):
    proc = run_cli("dataset", "fetch", utkface, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("download: 3434 files in, 3434 images written to data/UTKFace_AsianOnly, "
                                   "0 of other races left out, 0 skipped")
    proc = run_cli("dataset", "build", "--balanced", "age", "gender", cwd=tmp_path)  # the original protocol
    assert proc.returncode == 0, proc.stderr
    assert "(seed 42): 2747 train, 687 test" in proc.stdout
    train_table = proc.stdout.split("TRAIN SET:")[1].split("TEST SET:")[0]
    after = proc.stdout.split("AFTER OVERSAMPLING:")[1]
    before_counts = [int(n) for n in train_table.strip().splitlines()[3].split("\t")]
    assert sum(before_counts) == 2747 and max(before_counts) == 1063
    after_counts = [int(n) for n in after.strip().splitlines()[3].split("\t")]
    assert after_counts == [1063] * 9
    lists = tmp_path / "data/DEF"
    lines = {name: (lists / f"{name}.txt").read_text().splitlines()
             for name in ("age_train", "age_test", "gender_train", "gender_test")}
    assert len(lines["age_train"]) == len(lines["gender_train"]) == 9 * 1063
    assert len(lines["age_test"]) == len(lines["gender_test"]) == 687
    test_names = {Path(line.rsplit(" ", 1)[0]).name for line in lines["age_test"]}
    sources = {re.sub(r"(\.jpg\.chip\.jpg).*", r"\1", Path(line.rsplit(" ", 1)[0]).name) for line in lines["age_train"]}
    assert len(sources) == 2747 and not sources & test_names  # no test image, nor a copy of one, in training
    assert proc.stdout.strip().splitlines()[-1].endswith(", 0 skipped")

    proc = run_cli("lmdb", "--resize", "32", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    counts = {db: lmdb_size(tmp_path / "data/lmdb" / db) for db in
              ("age_train_lmdb", "gender_train_lmdb", "age_test_lmdb", "gender_test_lmdb")}
    assert counts == {"age_train_lmdb": 9567, "gender_train_lmdb": 9567, "age_test_lmdb": 687, "gender_test_lmdb": 687}
    proc = run_cli("mean", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    mean = read_mean(tmp_path / "data/mean/mean.binaryproto")
    assert mean.shape == (3, 32, 32) and 60 < mean.mean() < 200
    assert read_mean(tmp_path / "data/mean/mean.npy").shape == (3, 32, 32)
