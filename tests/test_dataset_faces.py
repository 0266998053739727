"""One face geometry from training to inference: the LMDB stage finds and crops each image's face with the
same face pipeline as run_inference.py (agegender.deploy.faces), so the same image gives the same crop."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from agegender.caffe import datum_to_array, read_lmdb
from agegender.deploy.faces import largest
from agegender.infer import make_finder
from agegender.preprocess import resize_like_lmdb

from conftest import FIXTURES, UTKFACE, need_shared, run_cli


def chip_in_photo(chip: np.ndarray) -> np.ndarray:
    """A UTKFace chip enlarged 1.6x in a 1280x960 grey photo (a face that must be detected)."""
    canvas = np.full((960, 1280, 3), 100, np.uint8)
    canvas[300:620, 480:800] = cv2.resize(chip, (320, 320), interpolation=cv2.INTER_CUBIC)
    return canvas


def write_set(folder: Path) -> dict[str, np.ndarray]:
    """A chip, the chip in a photo and a faceless photo, listed for train and test; the images by list path."""
    chip = cv2.imread(str(sorted(need_shared(UTKFACE).glob("*.jpg"))[3]))
    images = {"chip.png": chip, "photo.png": chip_in_photo(chip), "wall.png": np.full((600, 800, 3), 90, np.uint8)}
    for name, image in images.items():
        cv2.imwrite(str(folder / name), image)
    (folder / "DEF").mkdir()
    for task in ("age", "gender"):
        (folder / "DEF" / f"{task}_train.txt").write_text("".join(f"{name} 1\n" for name in images))
        (folder / "DEF" / f"{task}_test.txt").write_text("chip.png 1\n")
    return images


def records(lmdb: Path) -> dict[str, np.ndarray]:
    """HxWx3 BGR image of each record, by list path (keys are %08d_<path>)."""
    return {key.decode().split("_", 1)[1]: datum_to_array(datum).transpose(1, 2, 0) for key, datum in read_lmdb(lmdb)}


def test_the_lmdb_stage_crops_each_face_as_run_inference_does(tmp_path):
    images = write_set(tmp_path)
    detector = ["--detector", "ultraface", "--detector-dir", str(need_shared(FIXTURES))]
    proc = run_cli("lmdb", "--lists", tmp_path / "DEF", "--out", tmp_path / "lmdb", "--root", tmp_path, *detector)
    assert proc.returncode == 0, proc.stderr
    assert "no face found" in proc.stdout + proc.stderr  # the faceless photo is reported, not trained on
    train = records(tmp_path / "lmdb" / "age_train_lmdb")
    assert sorted(train) == ["chip.png", "photo.png"]

    args = argparse.Namespace(faces="auto", detector="ultraface", detector_dir=str(FIXTURES), graph_dir="graph",
                              align="auto", device="CPU", cache_dir="")
    finder = make_finder(args)  # run_inference.py's
    for name in ("chip.png", "photo.png"):
        image = cv2.imread(str(tmp_path / name))
        faces = finder.find(image)
        assert faces.source == ("crop" if name == "chip.png" else "detected")
        if name == "photo.png":  # O-Net is in FIXTURES: the detected face is aligned, in both stages alike
            assert faces.landmarks[0] is not None
        crop = faces.crop(image, largest(faces))
        assert np.array_equal(train[name], resize_like_lmdb(crop, 256, 256)), name
    assert np.array_equal(train["chip.png"], resize_like_lmdb(images["chip.png"], 256, 256))  # a chip is used whole
    face = finder.find(images["photo.png"]).boxes[0]
    assert 440 < face.x < 540 and 260 < face.y < 380 and 240 < face.w < 400  # framed around the pasted chip


def test_faces_none_keeps_the_whole_image(tmp_path):
    images = write_set(tmp_path)
    proc = run_cli("lmdb", "--lists", tmp_path / "DEF", "--out", tmp_path / "lmdb", "--root", tmp_path,
                   "--faces", "none", "--splits", "train")
    assert proc.returncode == 0, proc.stderr
    train = records(tmp_path / "lmdb" / "gender_train_lmdb")
    assert sorted(train) == sorted(images)
    assert np.array_equal(train["photo.png"], resize_like_lmdb(images["photo.png"], 256, 256))


def test_the_lmdb_stage_finds_small_faces_as_run_inference_does_and_min_face_0_does_not(tmp_path):
    """A 40-px face in a 1280x960 photo: under one pass's 48-px floor, found by the default --min-face (24)."""
    chip = cv2.imread(str(sorted(need_shared(UTKFACE).glob("*.jpg"))[3]))
    photo = np.full((960, 1280, 3), 100, np.uint8)
    photo[500:540, 700:740] = cv2.resize(chip, (40, 40), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "small.png"), photo)
    (tmp_path / "DEF").mkdir()
    for task in ("age", "gender"):
        (tmp_path / "DEF" / f"{task}_train.txt").write_text("small.png 1\n")
        (tmp_path / "DEF" / f"{task}_test.txt").write_text("small.png 1\n")
    common = ["--lists", tmp_path / "DEF", "--root", tmp_path, "--splits", "train", "--detector", "ultraface",
              "--detector-dir", str(need_shared(FIXTURES))]
    proc = run_cli("lmdb", *common, "--out", tmp_path / "lmdb")
    assert proc.returncode == 0, proc.stderr
    assert sorted(records(tmp_path / "lmdb" / "age_train_lmdb")) == ["small.png"]
    proc = run_cli("lmdb", *common, "--out", tmp_path / "lmdb0", "--min-face", "0")
    assert "no face found" in proc.stdout + proc.stderr  # one pass: the face is under its floor
    for bad in ("5", "nan", "inf"):
        proc = run_cli("lmdb", *common, "--out", tmp_path / "lmdb5", "--min-face", bad)
        assert proc.returncode == 2 and f"--min-face {bad}: give 12 pixels or more" in proc.stderr, bad
