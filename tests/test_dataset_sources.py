"""Several sources, the validation split, the default balanced lists and the no-leak rule (synthetic faces)."""
from __future__ import annotations

import math
import re
import zlib
from pathlib import Path

import cv2
import numpy as np
from test_dataset import BIN_SIZES, build, read_list, write_face
from test_dataset import faces_dir as faces_dir  # noqa: F401 (the fixture)

from agegender.dataset.leak import LeakGuard, dhash, fingerprint

from conftest import assert_one_line_error, run_cli


def names(path: Path) -> set[str]:
    return {Path(p).name for p, _ in read_list(path)}


def sources(path: Path) -> set[str]:
    """The face files a list names, an augmented copy counted as its source."""
    return {re.sub(r"(\.jpg\.chip\.jpg).*", r"\1", name) for name in names(path)}


def test_default_lists_are_the_originals_balanced_set_with_a_validation_part(tmp_path, faces_dir):
    proc = run_cli("dataset", "build", "--images", faces_dir, "--lists", tmp_path / "DEF",
                   "--augmented", tmp_path / "aug")
    assert proc.returncode == 0, proc.stderr
    lists = tmp_path / "DEF"
    n_test = math.ceil(sum(BIN_SIZES) / 5)
    test, val, train = (sources(lists / f"age_{s}.txt") for s in ("test", "val", "train"))
    assert len(test) == n_test and len(val) == math.ceil((sum(BIN_SIZES) - n_test) / 10)
    assert len(train) + len(val) + len(test) == sum(BIN_SIZES) and not (train & val or train & test or val & test)
    ages = [label for _, label in read_list(lists / "age_train.txt")]
    assert len(set(np.bincount(ages).tolist())) == 1  # every age bin equally large: the original's lists
    assert [p for p, _ in read_list(lists / "gender_train.txt")] == [p for p, _ in read_list(lists / "age_train.txt")]
    assert not (lists / "age_pretrain.txt").exists()  # no extra source, no pre-training list
    natural = read_list(lists / "age_train_natural.txt")  # each training face once: compile --prior's frequencies
    assert len(natural) == len(train) and {Path(p).name for p, _ in natural} == train
    assert sorted(natural) == sorted(e for e in read_list(lists / "age_train.txt") if Path(e[0]).name in train)


def test_balanced_none_alone_and_no_extra_source_equal_to_the_main_one(tmp_path, faces_dir):
    assert_one_line_error(build(tmp_path, faces_dir, "--balanced", "none", "age"), "give none alone")
    assert_one_line_error(build(tmp_path, faces_dir, "--extra-images", faces_dir), "the main source itself")


def reencoded(path: Path, out: Path) -> Path:
    """A copy of a face as another source might hold it: resized and re-encoded at another quality."""
    image = cv2.resize(cv2.imread(str(path)), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    out.write_bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    return out


def smooth(folder: Path) -> None:
    """Give the synthetic faces structure at the scale of a face (random noise does not survive re-encoding)."""
    for path in folder.iterdir():
        rng = np.random.default_rng(zlib.crc32(path.name.encode()))
        image = cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)
        path.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())


def test_extra_sources_pretrain_without_any_copy_of_a_test_or_validation_face(tmp_path, faces_dir):
    smooth(faces_dir)
    assert build(tmp_path / "alone", faces_dir, "--val-fraction", "0.1").returncode == 0
    test_before = (tmp_path / "alone/DEF/age_test.txt").read_text()
    held_out = [faces_dir / n for n in sorted(names(tmp_path / "alone/DEF/age_test.txt") |
                                              names(tmp_path / "alone/DEF/age_val.txt"))]
    other = tmp_path / "other"
    other.mkdir()
    extras = [write_face(other, 30 + i, i % 2, 5000 + i, race=i % 5, size=(40, 36)) for i in range(10)]
    (other / "40_0_0_20170101000001001.jpg.chip.jpg").write_bytes(held_out[0].read_bytes())  # byte copy
    reencoded(held_out[1], other / "41_1_3_20170101000001002.jpg.chip.jpg")  # re-encoded copy
    (faces_dir / "99_0_2_20170101000001003.jpg.chip.jpg").write_bytes(held_out[2].read_bytes())  # copy in the source
    proc = build(tmp_path, faces_dir, "--val-fraction", "0.1", "--extra-images", other,
                 "--extra-races", "0", "1", "3")
    assert proc.returncode == 0, proc.stderr
    lists = tmp_path / "DEF"
    assert (lists / "age_test.txt").read_text() == test_before  # the split does not move
    pretrain = names(lists / "age_pretrain.txt")
    assert sources(lists / "age_train.txt") <= pretrain
    wanted = {p.name for p in extras if int(p.name.split("_")[2]) in (0, 1, 3)}
    assert pretrain - sources(lists / "age_train.txt") == wanted  # races 2 and 4 left out, copies dropped
    trained = sources(lists / "age_train.txt") | names(lists / "age_val.txt")
    assert "99_0_2_20170101000001003.jpg.chip.jpg" not in trained
    copies = [line for line in proc.stderr.splitlines() if "copy of a held-out face" in line]
    assert len(copies) == 3, proc.stderr
    paths = {task: [p for p, _ in read_list(lists / f"{task}_pretrain.txt")] for task in ("age", "gender")}
    assert paths["age"] == paths["gender"]


def test_fingerprints_catch_reencoded_copies_not_other_faces(tmp_path):
    faces = [write_face(tmp_path, 20, 0, stamp, size=(64, 64)) for stamp in range(40)]
    smooth(tmp_path)
    guard = LeakGuard([fingerprint(p.read_bytes(), cv2.imread(str(p))) for p in faces[:20]])
    copy = reencoded(faces[3], tmp_path / "copy.jpg")
    assert guard.leaks(fingerprint(copy.read_bytes(), cv2.imread(str(copy))))
    assert not any(guard.leaks(fingerprint(p.read_bytes(), cv2.imread(str(p)))) for p in faces[20:])
    assert dhash(np.zeros((8, 9), np.uint8)) == 0
