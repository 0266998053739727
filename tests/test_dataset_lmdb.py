"""create_lmdb.sh and create_mean.sh on synthetic faces: Datum records like convert_imageset, mean like
compute_image_mean, bad listed files, mixed sizes, atomic replacement."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
from test_dataset import BIN_AGES, BIN_SIZES, write_face

from agegender.caffe import caffe_pb2, datum_to_array, lmdb_size, read_lmdb, read_mean, write_lmdb
from agegender.dataset.lmdb_stage import write_lmdbs
from agegender.fileio import atomic_directories

from conftest import ROOT, assert_one_line_error, run_cli

SPLITS = ("train", "test")
LMDBS = [f"{task}_{split}_lmdb" for split in SPLITS for task in ("age", "gender")]


def assert_fails(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, no traceback, and the last stderr line (after any progress lines) is the error with every fragment."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert re.match(r"agegender \w+: error: ", last) and all(f in last for f in fragments), last
    return last


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A built synthetic dataset: faces/, aug/, DEF/ lists (absolute paths) and lmdb/ at 20x16."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "faces").mkdir()
    stamp = 0
    for age, count in zip(BIN_AGES, BIN_SIZES):
        for _ in range(count):
            write_face(root / "faces", age, stamp % 2, stamp)
            stamp += 1
    proc = run_cli("dataset", "build", "--images", root / "faces", "--lists", root / "DEF", "--augmented", root / "aug")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("lmdb", "--lists", root / "DEF", "--out", root / "lmdb", "--resize", "20x16")
    assert proc.returncode == 0, proc.stderr
    return root


def list_entries(path: Path) -> list[tuple[str, int]]:
    return [(p, int(label)) for p, label in (line.rsplit(" ", 1) for line in path.read_text().splitlines())]


@pytest.mark.parametrize("name", LMDBS)
def test_lmdb_holds_every_listed_image_as_a_resized_bgr_datum(dataset, name):
    task, split, _ = name.split("_")
    entries = list_entries(dataset / "DEF" / f"{task}_{split}.txt")
    records = list(read_lmdb(dataset / "lmdb" / name))
    assert len(records) == len(entries) == lmdb_size(dataset / "lmdb" / name)
    keys = [key.decode() for key, _ in records]
    assert all(re.fullmatch(r"\d{8}_.+", k) for k in keys)
    assert sorted(int(k[:8]) for k in keys) == list(range(len(entries)))
    assert [k[9:] for k in keys] != [p for p, _ in entries]  # shuffled, not in list order
    labels = dict(entries)
    assert {k[9:]: d.label for k, (_, d) in zip(keys, records)} == labels
    for key, datum in records[:5]:
        assert (datum.channels, datum.height, datum.width, datum.encoded) == (3, 20, 16, False)
        expected = cv2.resize(cv2.imread(key.decode()[9:]), (16, 20), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(datum_to_array(datum), expected.transpose(2, 0, 1))


@pytest.mark.parametrize("split", SPLITS)
def test_gender_lmdb_has_the_age_lmdbs_images_with_gender_labels(dataset, split):
    age = list(read_lmdb(dataset / "lmdb" / f"age_{split}_lmdb"))
    gender = list(read_lmdb(dataset / "lmdb" / f"gender_{split}_lmdb"))
    assert [k for k, _ in age] == [k for k, _ in gender]
    assert all(a.data == g.data for (_, a), (_, g) in zip(age, gender))
    gender_of = {int(Path(k.decode()[9:]).name.split("_")[1]) for k, _ in gender}
    assert gender_of == {0, 1}
    for key, datum in gender:
        assert datum.label == int(Path(key.decode()[9:]).name.split("_")[1])


def test_lmdb_shuffle_is_seeded(dataset, tmp_path):
    proc = run_cli("lmdb", "--lists", dataset / "DEF", "--out", tmp_path, "--resize", "20x16", "--splits", "test")
    assert proc.returncode == 0, proc.stderr
    assert [k for k, _ in read_lmdb(tmp_path / "age_test_lmdb")] == \
        [k for k, _ in read_lmdb(dataset / "lmdb" / "age_test_lmdb")]
    proc = run_cli("lmdb", "--lists", dataset / "DEF", "--out", tmp_path, "--resize", "20x16", "--splits", "test",
                   "--seed", "5")
    assert [k for k, _ in read_lmdb(tmp_path / "age_test_lmdb")] != \
        [k for k, _ in read_lmdb(dataset / "lmdb" / "age_test_lmdb")]


def test_mean_is_the_per_pixel_mean_of_the_training_records(dataset, tmp_path):
    proc = run_cli("mean", "--lmdb", dataset / "lmdb" / "age_train_lmdb", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    images = np.stack([datum_to_array(d) for _, d in read_lmdb(dataset / "lmdb" / "age_train_lmdb")])
    expected = images.astype(np.float64).mean(axis=0)
    blob = caffe_pb2.BlobProto.FromString((tmp_path / "mean.binaryproto").read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 20, 16)
    np.testing.assert_allclose(read_mean(tmp_path / "mean.binaryproto"), expected, rtol=1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "mean.npy"), read_mean(tmp_path / "mean.binaryproto"))
    logged = re.findall(r"mean_value channel \[(\d)\] \(([BGR])\): ([\d.]+)", proc.stdout)
    assert [(int(c), n) for c, n, _ in logged] == [(0, "B"), (1, "G"), (2, "R")]
    np.testing.assert_allclose([float(v) for *_, v in logged], expected.mean(axis=(1, 2)), atol=2e-4)
    assert proc.stdout.strip().splitlines()[-1].startswith(f"mean: {len(images)} records in, mean 1x3x20x16 written")


def test_lmdb_reports_and_skips_missing_and_corrupt_listed_files(tmp_path):
    good = [write_face(tmp_path, 20 + i, i % 2, i) for i in range(4)]
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good[0].read_bytes()[:200])
    lines = [f"{p} {i}" for i, p in enumerate(good)] + [f"{tmp_path / 'gone.jpg'} 1", f"{truncated} 2", "no-label-line"]
    (tmp_path / "DEF").mkdir()
    for name in ("age_train.txt", "gender_train.txt"):
        (tmp_path / "DEF" / name).write_text("\n".join(lines) + "\n")
    proc = run_cli("lmdb", "--lists", tmp_path / "DEF", "--out", tmp_path / "lmdb", "--resize", "8",
                   "--splits", "train")
    assert proc.returncode == 0, proc.stderr
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipped")]
    assert f"skipped {tmp_path / 'gone.jpg'}: file not found" in skipped
    assert f"skipped {truncated}: truncated JPEG (no end-of-image marker)" in skipped
    assert any(line.startswith(f"skipped {tmp_path / 'DEF' / 'age_train.txt'}:7: bad list line") for line in skipped)
    assert lmdb_size(tmp_path / "lmdb/age_train_lmdb") == lmdb_size(tmp_path / "lmdb/gender_train_lmdb") == 4
    assert "lmdb: 12 list lines in" in proc.stdout and "age_train_lmdb 4, gender_train_lmdb 4" in proc.stdout


def test_images_of_another_size_are_an_error_naming_the_file_and_the_old_lmdb_stays(tmp_path):
    same = [write_face(tmp_path, 20 + i, 0, i, size=(12, 10)) for i in range(3)]
    odd = write_face(tmp_path, 30, 1, 99, size=(14, 10))
    (tmp_path / "DEF").mkdir()
    for name in ("age_train.txt", "gender_train.txt"):
        (tmp_path / "DEF" / name).write_text("".join(f"{p} 1\n" for p in same))
    args = ("lmdb", "--lists", tmp_path / "DEF", "--out", tmp_path / "lmdb", "--resize", "0", "--splits", "train",
            "--faces", "none")  # whole images: too small to be found as faces
    assert run_cli(*args).returncode == 0
    before = [(tmp_path / f"lmdb/{task}_train_lmdb/data.mdb").read_bytes() for task in ("age", "gender")]
    for name in ("age_train.txt", "gender_train.txt"):
        (tmp_path / "DEF" / name).write_text("".join(f"{p} 1\n" for p in [*same, odd]))
    last = assert_fails(run_cli(*args), str(odd), "--resize")
    assert re.search(r"is (14x10 but the LMDB's images are 12x10|12x10 but the LMDB's images are 14x10)", last)
    assert [(tmp_path / f"lmdb/{task}_train_lmdb/data.mdb").read_bytes() for task in ("age", "gender")] == before
    assert not [p for p in (tmp_path / "lmdb").iterdir() if p.name.startswith(".")]


def test_a_failing_background_writer_stops_the_pass_and_leaves_nothing_half_written(tmp_path):
    (tmp_path / "blocker").write_text("a file where the second LMDB's folder should go")
    datum = caffe_pb2.Datum(channels=3, height=2, width=2, data=bytes(12), label=0)
    records = ((f"{i:08d}_x".encode(), [datum, datum]) for i in range(5000))
    with pytest.raises((lmdb.Error, OSError)), atomic_directories() as staged:
        write_lmdbs([staged.folder(tmp_path / "first"), tmp_path / "blocker" / "second"], records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_mean_of_mixed_sizes_or_empty_lmdb_is_a_one_line_error(tmp_path):
    datum = lambda h, w: caffe_pb2.Datum(channels=3, height=h, width=w, data=bytes(3 * h * w), label=0)  # noqa: E731
    write_lmdb(tmp_path / "mixed", [(b"00000000_a.jpg", datum(4, 4)), (b"00000001_b.jpg", datum(5, 4))])
    assert_fails(run_cli("mean", "--lmdb", tmp_path / "mixed", "--out", tmp_path / "m"),
                 "record 00000001_b.jpg is 3x5x4 but the first is 3x4x4")
    write_lmdb(tmp_path / "empty", [])
    assert_one_line_error(run_cli("mean", "--lmdb", tmp_path / "empty", "--out", tmp_path / "m"), "has no records")
    assert_one_line_error(run_cli("mean", "--lmdb", tmp_path / "absent"), "LMDB not found", "absent")
    assert not (tmp_path / "m").exists()


def test_lmdb_without_lists_says_to_build_them(tmp_path):
    assert_one_line_error(run_cli("lmdb", "--lists", tmp_path / "DEF", "--out", tmp_path / "lmdb"),
                          "image list not found", "age_train.txt", "agegender dataset build")
    assert run_cli("lmdb", "--resize", "12x").returncode == 2


@pytest.mark.parametrize("door,args", [("create_lmdb.sh", ("--lists",)), ("create_mean.sh", ("--lmdb",))])
def test_shell_doors_pass_their_arguments(tmp_path, door, args):
    proc = subprocess.run([str(ROOT / door), *args, str(tmp_path / "absent")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert_one_line_error(proc, "not found", "absent")
