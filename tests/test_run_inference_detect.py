"""run_inference.py with the CNN face detectors: --detector, --detector-dir, the graph folder's detectors/,
the Haar fallback's one-line hint, face crops that skip the detector, and the decode/detect workers."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_run_inference import build_graph, model_cache  # noqa: F401

from conftest import FIXTURES, UTKFACE, need_shared, run_cli


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> Path:
    return build_graph(tmp_path_factory.mktemp("graph"))


@pytest.fixture(scope="module")
def chips() -> list[Path]:
    return sorted(need_shared(UTKFACE).glob("*.jpg"))[:8]


@pytest.fixture(scope="module")
def photo(chips, tmp_path_factory) -> Path:
    """Three real faces (200x200 chips) on a plain 400x1000 background."""
    canvas = np.full((400, 1000, 3), 90, np.uint8)
    for i, chip in enumerate(chips[3:6]):
        canvas[100:300, 50 + i * 320:250 + i * 320] = cv2.imread(str(chip))
    path = tmp_path_factory.mktemp("photo") / "group.jpg"
    cv2.imwrite(str(path), canvas)
    return path


def infer(graph: Path, *args):
    return run_cli("infer", "--graph_dir", graph, *args)


@pytest.mark.parametrize("detector", [None, "mtcnn", "yunet-ssd", "haar"])
def test_each_detector_finds_the_three_faces_of_a_photo(graph, photo, detector):
    args = ("--detector", detector) if detector else ()
    proc = infer(graph, "--image_path", photo, "--detector-dir", need_shared(FIXTURES), *args)
    assert proc.returncode == 0, proc.stderr
    faces = re.findall(r"^Face \d at x=(\d+) y=(\d+) (\d+)x(\d+):$", proc.stdout, re.M)
    centres = sorted(int(x) + int(w) // 2 for x, _, w, _ in faces)
    assert len(faces) == 3 and all(abs(c - (150 + 320 * i)) < 40 for i, c in enumerate(centres)), proc.stdout
    assert re.search(r"^Face detection: \d+\.\d\d ms$", proc.stdout, re.M)
    assert "notice" not in proc.stderr


def test_json_gives_each_aligned_face_its_landmarks_and_head_turn_and_a_framed_one_neither(graph, photo):
    fixtures = need_shared(FIXTURES)
    aligned = infer(graph, "--image_path", photo, "--detector-dir", fixtures, "--detector", "mtcnn", "--json")
    framed = infer(graph, "--image_path", photo, "--detector-dir", fixtures, "--detector", "ultraface",
                   "--align", "none", "--json")
    assert aligned.returncode == 0 and framed.returncode == 0, aligned.stderr + framed.stderr
    faces = json.loads(aligned.stdout)["faces"]
    assert len(faces) == 3
    for face in faces:
        x, y, w, h = face["box"]
        points = np.array(face["landmarks"])
        assert points.shape == (5, 2)
        assert ((points >= [x, y]) & (points <= [x + w, y + h])).all()  # eyes, nose, mouth inside the face
        assert points[0, 0] < points[1, 0] and points[:2, 1].max() < points[2, 1] < points[3:, 1].min()
        assert 0 <= face["head_turn"] < 0.3  # UTKFace's chips face the camera
    assert all("landmarks" not in f and "head_turn" not in f for f in json.loads(framed.stdout)["faces"])


def test_a_near_profile_face_is_said_to_have_the_least_reliable_age_and_a_frontal_or_framed_one_is_not():
    from agegender.deploy.faces import Box
    from agegender.infer import FaceResult, _turn_note
    frontal = np.array([[60, 58], [138, 58], [99, 105], [66, 140], [132, 140]], np.float64)
    profile = frontal + [[0, 0], [0, 0], [30, 0], [0, 0], [0, 0]]  # nose 0.38 eye distances aside
    assert _turn_note(FaceResult(Box(0, 0, 200, 200), frontal)) == ""
    assert _turn_note(FaceResult(Box(0, 0, 200, 200))) == ""
    assert "near profile" in _turn_note(FaceResult(Box(0, 0, 200, 200), profile))


def test_detector_in_the_graph_folder_is_the_default_and_without_one_haar_says_how_to_get_it(graph, photo, tmp_path):
    plain = infer(graph, "--image_path", photo, "--json")
    assert plain.returncode == 0
    hint = plain.stderr.strip().splitlines()
    assert len(hint) == 1 and hint[0].startswith("notice:") and "download.sh --detector ultraface" in hint[0]
    with_detector = Path(shutil.copytree(graph, tmp_path / "graph"))
    shutil.copytree(need_shared(FIXTURES) / "ultraface", with_detector / "detectors" / "ultraface")
    proc = infer(with_detector, "--image_path", photo, "--json")
    assert proc.returncode == 0
    assert proc.stderr.startswith("notice: faces were cropped without alignment") and proc.stderr.count("\n") == 1
    assert "./download.sh --detector mtcnn" in proc.stderr
    assert json.loads(proc.stdout)["faces_from"] == "detected" and len(json.loads(proc.stdout)["faces"]) == 3
    quiet = infer(with_detector, "--image_path", photo, "--json", "--align", "none")  # asked for: no notice
    assert quiet.returncode == 0 and quiet.stderr == ""
    boxes = [[face["box"] for face in json.loads(p.stdout)["faces"]] for p in (proc, quiet)]
    assert boxes[0] == boxes[1]


def test_a_face_chip_skips_the_detector_but_keeps_its_lines(graph, chips):
    proc = infer(graph, "--image_path", chips[0], "--detector-dir", need_shared(FIXTURES))
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.splitlines()[1] == f"{chips[0]}: 1 face (the image is a face crop: used whole)"
    assert "Face detection" not in proc.stdout  # no detector ran
    forced = infer(graph, "--image_path", chips[0], "--detector-dir", FIXTURES, "--faces", "detect", "--json")
    assert json.loads(forced.stdout)["faces_from"] == "detected"


def test_a_missing_detector_is_one_line_saying_how_to_get_it(graph, photo, tmp_path):
    proc = infer(graph, "--image_path", photo, "--detector", "mtcnn", "--detector-dir", tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "download.sh --detector mtcnn" in proc.stderr and "Traceback" not in proc.stderr


def test_workers_keep_the_input_order_and_the_results(graph, chips, photo, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for chip in chips[:5]:
        shutil.copy(chip, folder / chip.name)
    shutil.copy(photo, folder / "group.jpg")
    (folder / "broken.jpg").write_bytes(b"no image")
    runs = {}
    for workers in ("1", "3"):
        proc = infer(graph, "--image_path", folder, "--json", "--detector-dir", FIXTURES, "--workers", workers)
        assert proc.returncode == 0, proc.stderr
        runs[workers] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["image"] for r in runs["3"]] == sorted(p.name for p in folder.iterdir())
    expected = {"broken.jpg": 0, "group.jpg": 3}
    assert [len(r.get("faces", [])) for r in runs["3"]] == [expected.get(r["image"], 1) for r in runs["3"]]
    for one, three in zip(runs["1"], runs["3"]):
        assert one.get("error") == three.get("error")
        for a, b in zip(one.get("faces", []), three.get("faces", [])):
            assert a["box"] == b["box"] and a["age"]["probabilities"] == pytest.approx(b["age"]["probabilities"], abs=1e-5)


def test_bad_workers_count_is_one_line(graph, photo):
    proc = infer(graph, "--image_path", photo, "--workers", "-1")
    assert proc.returncode == 2 and "--workers must be 0" in proc.stderr


@pytest.mark.parametrize("detector", ["mtcnn", "ultraface"])
def test_cnn_detectors_compile_and_run_with_only_the_edge_requirements(graph, photo, detector, tmp_path):
    """A Pi has requirements-edge.txt only: the detector's Caffe files compile to IR there without torch."""
    from test_run_inference import run_inference

    proc = run_inference("--graph_dir", graph, "--image_path", photo, "--detector", detector, "--detector-dir",
                         need_shared(FIXTURES), "--cache_dir", tmp_path / "cache",
                         blocked=("torch", "lmdb", "PIL", "sklearn", "nncf"))
    assert proc.returncode == 0, proc.stderr
    assert len(re.findall(r"^Face \d at", proc.stdout, re.M)) == 3
    assert "torch" not in proc.imported and list((tmp_path / "cache" / "detectors").glob("*.xml"))
