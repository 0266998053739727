"""Dataset stage on synthetic UTKFace-like files: names, bins, split, oversampling, no leak, bad input, atomicity."""
from __future__ import annotations

import hashlib
import io
import math
import re
import tarfile
import zipfile
from collections import Counter
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.dataset import build as build_module
from agegender.dataset.augment import Copy, augment, oversample_plan
from agegender.dataset.report import SkipReport
from agegender.dataset.split import holdout_quotas, stratified_split
from agegender.dataset.utkface import Face, parse_name

from conftest import MALFORMED, ROOT, assert_one_line_error, need_shared, run_cli

# Training+test images per age bin of the synthetic set: unequal, with a tiny bin and a single-image bin.
BIN_SIZES = (14, 4, 22, 8, 5, 3, 3, 2, 1)
BIN_AGES = (5, 15, 25, 35, 45, 55, 65, 75, 90)


def write_face(folder: Path, age: int, gender: int, stamp: int, race: int = 2, size=(30, 26)) -> Path:
    rng = np.random.default_rng(stamp)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    path = folder / f"{age}_{gender}_{race}_{20170101000000000 + stamp}.jpg.chip.jpg"
    path.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    return path


@pytest.fixture
def faces_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "faces"
    folder.mkdir()
    stamp = 0
    for age, count in zip(BIN_AGES, BIN_SIZES):
        for _ in range(count):
            write_face(folder, age, stamp % 2, stamp)
            stamp += 1
    return folder


def build(tmp_path: Path, images: Path, *extra: str):
    """The build stage; without a validation split unless asked (the split and oversampling tests count on it)."""
    val = () if "--val-fraction" in extra else ("--val-fraction", "0")
    return run_cli("dataset", "build", "--images", images, "--lists", tmp_path / "DEF",
                   "--augmented", tmp_path / "aug", *val, *extra)


def read_list(path: Path) -> list[tuple[str, int]]:
    return [(p, int(label)) for p, label in (line.rsplit(" ", 1) for line in path.read_text().splitlines())]


def tree_digest(*folders: Path) -> dict[str, str]:
    return {str(p.relative_to(f.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
            for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


# --- names and bins ---------------------------------------------------------------------------------------------

def test_parse_name_reads_age_gender_race():
    assert parse_name("100_1_2_20170105174847679.jpg.chip.jpg") == (100, 1, 2)
    assert parse_name("1_0_0_20161219140623097.jpg.chip.jpg") == (1, 0, 0)


@pytest.mark.parametrize("name,why", [
    ("39_1_20170116174525125.jpg.chip.jpg", "fields"),  # race missing, as in ../shared/datasets/utkface-malformed
    ("_missing-fields.jpg.chip.jpg", "fields"),
    ("x_1_2_20170116174525125.jpg.chip.jpg", "fields"),
    ("130_1_2_20170116174525125.jpg.chip.jpg", "age 130"),
    ("30_2_2_20170116174525125.jpg.chip.jpg", "gender 2"),
    ("30_1_7_20170116174525125.jpg.chip.jpg", "race 7"),
    ("30_1_2_20170116174525125.jpg", "does not end in .jpg.chip.jpg"),
])
def test_parse_name_says_what_is_wrong(name, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_name(name)


@pytest.mark.parametrize("age,label", [(0, 0), (9, 0), (10, 1), (19, 1), (20, 2), (79, 7), (80, 8), (116, 8), (120, 8)])
def test_age_bins(age, label):
    assert Face(f"{age}_0_2_1.jpg.chip.jpg", age, 0, 2).age_label == label


# --- split --------------------------------------------------------------------------------------------------------

def test_quotas_give_the_originals_687_of_3434():
    sizes = [929, 96, 1329, 527, 157, 115, 95, 84, 102]  # the Asian UTKFace faces per age bin
    quotas = holdout_quotas(sizes, Fraction(1, 5))
    assert sum(quotas) == 687 and sum(sizes) - sum(quotas) == 2747
    assert all(abs(q - n / 5) < 1 for q, n in zip(quotas, sizes))


@pytest.mark.parametrize("seed", range(5))
def test_quotas_total_is_ceil_and_every_bin_keeps_a_training_image(seed):
    sizes = np.random.default_rng(seed).integers(1, 40, 9).tolist()
    quotas = holdout_quotas(sizes, Fraction(1, 5))
    assert sum(quotas) == math.ceil(sum(sizes) / 5)
    assert all(0 <= q < n and abs(q - n / 5) < 1 for q, n in zip(quotas, sizes))
    assert holdout_quotas([1, 1, 5], Fraction(1, 5)) == [0, 0, 2]  # single-image bins stay in training


def synthetic_faces() -> list[Face]:
    faces, stamp = [], 0
    for age, count in zip(BIN_AGES, BIN_SIZES):
        for _ in range(count):
            faces.append(Face(f"f/{age}_{stamp % 2}_2_{stamp}.jpg.chip.jpg", age, stamp % 2, 2))
            stamp += 1
    return faces


def test_split_is_stratified_disjoint_and_seeded():
    faces = synthetic_faces()
    train, test = stratified_split(faces, Fraction(1, 5), 7, 9)
    assert not set(train) & set(test) and set(train) | set(test) == set(faces)
    assert Counter(f.age_label for f in test) == Counter(
        {b: q for b, q in enumerate(holdout_quotas(list(BIN_SIZES), Fraction(1, 5))) if q})
    assert stratified_split(faces, Fraction(1, 5), 7, 9) == (train, test)
    assert stratified_split(list(reversed(faces)), Fraction(1, 5), 7, 9) == (train, test)  # input order is irrelevant
    assert stratified_split(faces, Fraction(1, 5), 8, 9)[1] != test


# --- oversampling -------------------------------------------------------------------------------------------------

def test_oversampling_fills_every_bin_to_the_largest():
    train, _ = stratified_split(synthetic_faces(), Fraction(1, 5), 0, 9)
    copies = oversample_plan(train, 9, 0)
    before = Counter(f.age_label for f in train)
    after = before + Counter(c.source.age_label for c in copies)
    assert set(after.values()) == {max(before.values())} and len(after) == 9
    assert len({c.name for c in copies}) == len(copies)
    assert {c.source for c in copies} <= set(train)
    for copy in copies:
        assert copy.name.startswith(copy.source.name + "_") and copy.name.endswith(".jpg")
    assert [Copy(train[0], v).suffix for v in range(5)] == ["flip", "noise1", "flip_noise1", "noise2", "flip_noise2"]


def test_augmented_pixels_flip_and_seeded_noise():
    image = np.random.default_rng(0).integers(40, 200, (30, 20, 3), dtype=np.uint8)
    face = Face("a/20_0_2_1.jpg.chip.jpg", 20, 0, 2)
    np.testing.assert_array_equal(augment(image, Copy(face, 0), 1, 10.0), image[:, ::-1])
    noisy = augment(image, Copy(face, 1), 1, 10.0)
    assert 8 < np.std(noisy.astype(float) - image) < 12
    np.testing.assert_array_equal(noisy, augment(image, Copy(face, 1), 1, 10.0))
    assert not np.array_equal(noisy, augment(image, Copy(face, 1), 2, 10.0))
    flipped_noisy = augment(image, Copy(face, 2), 1, 10.0)
    assert 8 < np.std(flipped_noisy.astype(float) - image[:, ::-1]) < 12


# --- the build stage end to end -----------------------------------------------------------------------------------

def test_build_writes_balanced_lists_without_leaking_test_images(tmp_path, faces_dir):
    proc = build(tmp_path, faces_dir, "--seed", "3", "--balanced", "age", "gender")  # the original's lists
    assert proc.returncode == 0, proc.stderr
    n, n_test = sum(BIN_SIZES), math.ceil(sum(BIN_SIZES) / 5)
    assert f"{n - n_test} train, {n_test} test" in proc.stdout
    assert ("Number of image per age class:\n0-9\t10-19\t20-29\t30-39\t40-49\t50-59\t60-69\t70-79\t80-120\n"
            in proc.stdout)
    after = proc.stdout.split("AFTER OVERSAMPLING:")[1]
    assert f"\n{chr(9).join([str(max(BIN_SIZES) - round(max(BIN_SIZES) / 5))] * 9)}\n" in after
    assert proc.stdout.strip().splitlines()[-1].startswith(f"dataset: {n} files in, {n} images used")
    lists = {f"{task}_{split}": read_list(tmp_path / "DEF" / f"{task}_{split}.txt")
             for task in ("age", "gender") for split in ("train", "test")}
    test_names = {Path(p).name for p, _ in lists["age_test"]}
    assert len(test_names) == n_test
    for path, label in lists["age_train"]:
        source = Path(path).name.split(".jpg.chip.jpg")[0] + ".jpg.chip.jpg"
        assert source not in test_names, path  # neither a test image nor a copy of one
        assert label == Face(source, parse_name(source)[0], 0, 2).age_label
        assert Path(path).is_file()
    for split in ("train", "test"):
        age, gender = lists[f"age_{split}"], lists[f"gender_{split}"]
        assert [p for p, _ in age] == [p for p, _ in gender]
        assert all(g == parse_name(Path(p).name.split(".jpg.chip.jpg")[0] + ".jpg.chip.jpg")[1] for p, g in gender)
    counts = Counter(label for _, label in lists["age_train"])
    assert len(counts) == 9 and len(set(counts.values())) == 1
    copies = sorted((tmp_path / "aug").iterdir())
    assert len(copies) == len(lists["age_train"]) - (n - n_test)
    assert all(re.search(r"\.jpg\.chip\.jpg_(flip|noise\d+|flip_noise\d+)\.jpg$", c.name) for c in copies)


@pytest.mark.parametrize("balanced", [["age"], ["gender"], ["none"]])
def test_tasks_left_out_of_balanced_list_each_training_face_once(tmp_path, faces_dir, balanced):
    proc = build(tmp_path, faces_dir, "--balanced", *balanced)
    assert proc.returncode == 0, proc.stderr
    n_train = sum(BIN_SIZES) - math.ceil(sum(BIN_SIZES) / 5)
    for task in ("age", "gender"):
        train = read_list(tmp_path / "DEF" / f"{task}_train.txt")
        if task in balanced:
            assert len(train) == 9 * (max(BIN_SIZES) - round(max(BIN_SIZES) / 5))
        else:
            assert len(train) == n_train and all("/aug/" not in path for path, _ in train)
            assert len({path for path, _ in train}) == n_train
    tests = [[path for path, _ in read_list(tmp_path / f"DEF/{task}_test.txt")] for task in ("age", "gender")]
    assert tests[0] == tests[1]  # the test lists never change


def test_build_is_reproducible_byte_for_byte(tmp_path, faces_dir):
    balanced = ("--balanced", "age", "gender")  # with the augmented copies, whose noise must repeat too
    assert build(tmp_path, faces_dir, *balanced).returncode == 0
    first = tree_digest(tmp_path / "DEF", tmp_path / "aug")
    assert build(tmp_path, faces_dir, *balanced, "--workers", "1").returncode == 0
    assert tree_digest(tmp_path / "DEF", tmp_path / "aug") == first
    assert build(tmp_path, faces_dir, *balanced, "--seed", "9").returncode == 0
    assert tree_digest(tmp_path / "DEF")["DEF/age_test.txt"] != first["DEF/age_test.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def bad_files(folder: Path) -> dict[str, str]:
    """Unusable files in a face folder -> the reason the build must give for each."""
    good = write_face(folder, 30, 1, 9001).read_bytes()
    (folder / "31_0_2_20170101000000001.jpg.chip.jpg").write_bytes(good[: len(good) // 2])
    (folder / "32_0_2_20170101000000002.jpg.chip.jpg").write_bytes(good[:300] + b"\x00" * 40 + good[-2:])
    (folder / "33_0_2_20170101000000003.jpg.chip.jpg").write_text("<html>not an image</html>")
    (folder / "34_1_2_20170101000000004.jpg.chip.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("hello")
    (folder / "subfolder").mkdir()
    return {"31_0_2_20170101000000001.jpg.chip.jpg": "truncated JPEG",
            "32_0_2_20170101000000002.jpg.chip.jpg": "corrupt JPEG",
            "33_0_2_20170101000000003.jpg.chip.jpg": "not an image file",
            "34_1_2_20170101000000004.jpg.chip.jpg": "empty file",
            "notes.txt": "bad name", "subfolder": "not a file"}


def test_build_reports_and_skips_every_bad_file(tmp_path, faces_dir):
    expected = bad_files(faces_dir)
    malformed = need_shared(MALFORMED)
    for path in malformed.iterdir():
        (faces_dir / path.name).write_bytes(path.read_bytes())
        expected[path.name] = "bad name"
    proc = build(tmp_path, faces_dir)
    assert proc.returncode == 0, proc.stderr
    skipped = {line.split(": ")[0].removeprefix("skipped "): line for line in proc.stderr.splitlines()
               if line.startswith("skipped ")}
    assert {Path(p).name for p in skipped} == set(expected)
    for path, line in skipped.items():
        assert line.startswith(f"skipped {faces_dir / Path(path).name}: {expected[Path(path).name]}"), line
    summary = proc.stdout.strip().splitlines()[-1]
    n = sum(BIN_SIZES) + 1  # the good face bad_files() adds
    assert summary.startswith(f"dataset: {n + len(expected)} files in, {n} images used")
    assert f"{len(expected)} skipped (" in summary and "1 truncated JPEG (no end-of-image marker)" in summary
    listed = "".join((tmp_path / "DEF" / f).read_text() for f in ("age_train.txt", "age_test.txt"))
    assert not [name for name in expected if name in listed]


def test_build_stops_with_one_line_when_nothing_is_usable(tmp_path):
    assert_one_line_error(build(tmp_path, tmp_path / "absent"), "face folder not found", "absent",
                          "agegender dataset fetch")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(build(tmp_path, empty), "no UTKFace image in", str(empty))
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    bad_files(only_bad)
    (only_bad / "30_1_2_20170101000009001.jpg.chip.jpg").unlink()
    proc = build(tmp_path, only_bad)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        "agegender dataset: error: no usable image in")
    assert not (tmp_path / "DEF").exists()


def test_interrupted_build_keeps_the_previous_lists_and_copies(tmp_path, faces_dir, monkeypatch):
    assert build(tmp_path, faces_dir, "--balanced", "age", "gender").returncode == 0
    before = tree_digest(tmp_path / "DEF", tmp_path / "aug")
    calls = []

    def dies_after_five(*args):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return augment(*args)

    monkeypatch.setattr(build_module, "augment", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        build_module.build(faces_dir, tmp_path / "DEF", tmp_path / "aug", 11, Fraction(1, 5), 10.0, 1,
                           SkipReport(io.StringIO()), balanced=("age", "gender"))
    assert tree_digest(tmp_path / "DEF", tmp_path / "aug") == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- download.sh --------------------------------------------------------------------------------------------------

def mixed_races(folder: Path) -> None:
    folder.mkdir()
    for stamp in range(6):
        write_face(folder, 20 + stamp, stamp % 2, stamp, race=2 if stamp < 4 else 0)


def test_fetch_from_folder_tar_zip_and_url_keeps_one_race(tmp_path):
    mixed_races(tmp_path / "src")
    archive = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src", arcname="UTKFace")
    zipped = tmp_path / "UTKFace.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for path in (tmp_path / "src").iterdir():
            zf.write(path, f"UTKFace/{path.name}")
    for source in (tmp_path / "src", archive, archive.as_uri(), zipped):
        out = tmp_path / "out"
        proc = run_cli("dataset", "fetch", source, "--out", out)
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "src").glob("*_2_*"))
        assert proc.stdout.strip() == (f"download: 6 files in, 4 images written to {out}, 2 of other races left out, "
                                       f"0 skipped")
    proc = run_cli("dataset", "fetch", archive, "--out", tmp_path / "all", "--race", "all")
    assert proc.returncode == 0 and len(list((tmp_path / "all").iterdir())) == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_fetch_default_folder_is_utkface_asian_only(tmp_path):
    mixed_races(tmp_path / "src")
    proc = run_cli("dataset", "fetch", tmp_path / "src", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "data/UTKFace_AsianOnly").iterdir())) == 4
    assert run_cli("dataset", "fetch", tmp_path / "src", "--race", "White", cwd=tmp_path).returncode == 0
    assert len(list((tmp_path / "data/UTKFace_WhiteOnly").iterdir())) == 2


def test_fetch_reports_bad_files_and_stops_when_nothing_is_left(tmp_path):
    malformed = need_shared(MALFORMED)
    proc = run_cli("dataset", "fetch", malformed, "--out", tmp_path / "out")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert sorted(line.split(": bad name: ")[0] for line in lines if line.startswith("skipped")) == \
        sorted(f"skipped {p}" for p in malformed.iterdir())
    assert lines[-1].startswith(f"agegender dataset: error: no usable UTKFace image of race 2 (Asian) in {malformed}")
    assert "4 skipped (4 bad name)" in lines[-1] and not (tmp_path / "out").exists()


def test_fetch_skips_links_in_archives(tmp_path):
    mixed_races(tmp_path / "src")
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "src", arcname="UTKFace")
        link = tarfile.TarInfo("UTKFace/40_0_2_20170101000000077.jpg.chip.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    proc = run_cli("dataset", "fetch", archive, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert f"skipped {archive}:{link.name}: not a regular file (link or device) in the archive" in proc.stderr
    assert len(list((tmp_path / "out").iterdir())) == 4
    assert proc.stdout.strip().endswith("1 skipped (1 not a regular file (link or device) in the archive)")


def test_fetch_fails_in_one_line_on_bad_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    mixed_races(tmp_path / "src")
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src", arcname="UTKFace")
    data = (tmp_path / "a.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) * 2 // 3])
    for args, fragments in [((tmp_path / "nowhere",), ("UTKFace source not found", "nowhere")),
                            ((tmp_path / "empty",), ("UTKFace source folder", "is empty")),
                            ((tmp_path / "notes.txt",), ("neither a folder nor a .tar.gz",)),
                            (("file:///no/such/UTKFace.tar.gz",), ("cannot download", "UTKFace.tar.gz")),
                            ((), ("no SOURCE",))]:
        assert_one_line_error(run_cli("dataset", "fetch", *args, cwd=tmp_path), *fragments)
    proc = run_cli("dataset", "fetch", tmp_path / "cut.tar.gz", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        f"agegender dataset: error: cannot read {tmp_path / 'cut.tar.gz'} after ")
    assert "(truncated or corrupt archive?)" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("data/*"))


def test_download_sh_door_passes_arguments(tmp_path):
    import subprocess

    mixed_races(tmp_path / "src")
    proc = subprocess.run([str(ROOT / "download.sh"), str(tmp_path / "src"), "--race", "0"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "data/UTKFace_WhiteOnly").iterdir())) == 2
