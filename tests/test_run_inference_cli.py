"""run_inference.py / `agegender infer` as a user runs them: every mode (image, photo with several faces,
folder, video, camera) and every bad input, on real UTKFace chips from ../shared and synthetic images."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_run_inference import build_graph, copy_graph, edit_sidecar, mean_image, model_cache, run_inference  # noqa: F401

from agegender.caffe.mean import write_mean

from conftest import FIXTURES, assert_one_line_error, need_shared, run_cli

LINE = {"age": re.compile(r"^Age predicted: (\d+-\d+), (\d+\.\d\d)%$", re.M),
        "gender": re.compile(r"^Gender predicted: (Male|Female), (\d+\.\d\d)%$", re.M),
        "time": re.compile(r"^Execution time: \d+\.\d\d ms$", re.M)}


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> Path:
    return build_graph(tmp_path_factory.mktemp("graph"))


@pytest.fixture(scope="module")
def chips(tmp_path_factory) -> list[Path]:
    from conftest import UTKFACE, need_shared

    return sorted(need_shared(UTKFACE).glob("*.jpg"))[:12]


def infer(graph: Path, *args) -> "subprocess.CompletedProcess":  # noqa: F821
    return run_cli("infer", "--graph_dir", graph, *args)


def group_photo(chips: list[Path], size=(400, 1000)) -> np.ndarray:
    """Three real faces on a plain background: a photo to detect faces in."""
    canvas = np.full((*size, 3), 90, np.uint8)
    for i, chip in enumerate(chips[3:6]):
        canvas[100:300, 50 + i * 320:250 + i * 320] = cv2.imread(str(chip))
    return canvas


def write_video(path: Path, chips: list[Path], frames_per_chip: int = 2) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (200, 200))
    for chip in chips:
        for _ in range(frames_per_chip):
            writer.write(cv2.imread(str(chip)))
    writer.release()
    return path


# ------------------------------------------------------------------------------------------ single image

def test_face_chip_prints_age_gender_and_time_like_the_original(graph, chips):
    proc = run_inference("--mean_file", graph / "age_gender_mean.npy", "--image_path", chips[0], "--graph_dir", graph)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Device: CPU")
    assert len(LINE["age"].findall(proc.stdout)) == 1 and len(LINE["gender"].findall(proc.stdout)) == 1
    assert LINE["time"].search(proc.stdout)
    age, p = LINE["age"].search(proc.stdout).groups()
    assert 0 < float(p) <= 100


def test_auto_uses_a_face_chip_whole_as_in_training(graph, chips):
    """UTKFace chips are what the nets were trained on: auto feeds them whole, like --faces none."""
    auto = json.loads(infer(graph, "--image_path", chips[1], "--json").stdout)
    whole = json.loads(infer(graph, "--image_path", chips[1], "--json", "--faces", "none").stdout)
    assert auto["faces_from"] == "crop" and whole["faces_from"] == "whole" and whole["detected"] is None
    assert auto["faces"][0]["box"] == whole["faces"][0]["box"] == [0, 0, 200, 200]
    assert auto["faces"][0]["age"] == whole["faces"][0]["age"]


def test_photo_with_several_faces_gets_one_prediction_per_face_and_boxes_drawn(graph, chips, tmp_path):
    photo = tmp_path / "group.jpg"
    cv2.imwrite(str(photo), group_photo(chips))
    proc = infer(graph, "--image_path", photo, "--output", tmp_path / "annotated.png")
    assert proc.returncode == 0, proc.stderr
    faces = re.findall(r"^Face \d at x=(\d+) y=(\d+) (\d+)x(\d+):$", proc.stdout, re.M)
    assert len(faces) >= 2
    assert len(LINE["age"].findall(proc.stdout)) == len(faces) == len(LINE["gender"].findall(proc.stdout))
    centres = sorted(int(x) + int(w) // 2 for x, _, w, _ in faces)
    assert all(any(abs(c - (150 + 320 * i)) < 60 for i in range(3)) for c in centres), centres  # on the pasted faces
    drawn = cv2.imread(str(tmp_path / "annotated.png"))
    assert drawn.shape == (400, 1000, 3)
    changed = np.any(drawn != cv2.imread(str(photo)), axis=2)
    assert changed[:100].any(), "labels above the boxes"


def test_grayscale_alpha_16bit_and_very_large_images_work(graph, chips, tmp_path):
    chip = cv2.imread(str(chips[2]))
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY))
    alpha = tmp_path / "alpha.png"
    cv2.imwrite(str(alpha), np.dstack([chip, np.full(chip.shape[:2], 128, np.uint8)]))
    deep = tmp_path / "16bit.png"
    cv2.imwrite(str(deep), chip.astype(np.uint16) * 257)
    large = tmp_path / "large.jpg"
    canvas = np.full((3000, 4000, 3), 90, np.uint8)
    canvas[1000:2200, 1500:2700] = cv2.resize(chip, (1200, 1200))
    cv2.imwrite(str(large), canvas)
    for path in (gray, alpha, deep, large):
        proc = infer(graph, "--image_path", path, "--json")
        assert proc.returncode == 0, (path, proc.stderr)
        result = json.loads(proc.stdout)
        assert len(result["faces"]) >= 1
    box = result["faces"][0]["box"]  # the face in the 4000x3000 photo, found on a downscaled copy
    assert result["faces_from"] == "detected" and 1300 < box[0] + box[2] / 2 < 2900 and box[2] > 600
    assert result["detected"] == len(result["faces"])  # the detector's count, which the wild benchmark reads
    rgba = json.loads(infer(graph, "--image_path", alpha, "--json", "--faces", "none").stdout)
    plain = json.loads(infer(graph, "--image_path", chips[2], "--json", "--faces", "none").stdout)
    assert rgba["faces"][0]["gender"]["probability"] == pytest.approx(plain["faces"][0]["gender"]["probability"],
                                                                        abs=0.02)  # PNG vs JPEG pixels only


def test_no_face_is_exit_code_3_with_one_line(graph, tmp_path):
    blank = tmp_path / "wall.jpg"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 200, np.uint8))
    assert_one_line_error(infer(graph, "--image_path", blank), "no face found in", "--faces none", code=3)
    square = tmp_path / "square.jpg"
    cv2.imwrite(str(square), np.full((200, 200, 3), 200, np.uint8))
    assert_one_line_error(infer(graph, "--image_path", square, "--faces", "haar"), "no face found", code=3)
    assert infer(graph, "--image_path", square).returncode == 0  # auto: looks like a face crop, used whole


def test_no_face_is_also_a_json_record_and_min_face_is_checked_up_front(graph, tmp_path):
    blank = tmp_path / "wall.jpg"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 200, np.uint8))
    out = tmp_path / "out.json"
    out.write_text("an earlier run's\n")
    assert infer(graph, "--image_path", blank, "--json", out).returncode == 3
    record = json.loads(out.read_text())  # not the earlier run's file: scripts read this run's answer
    assert record["detected"] == 0 and record["faces"] == []
    assert_one_line_error(infer(graph, "--image_path", blank, "--min-face", "5"), "--min-face 5", "12 pixels or more")
    cnn = ("--detector-dir", need_shared(FIXTURES), "--detector", "ultraface")
    assert "give --min-face 12" in infer(graph, "--image_path", blank, *cnn).stderr  # smaller faces may be there
    assert "--min-face" not in infer(graph, "--image_path", blank, *cnn, "--min-face", "12").stderr  # none smaller


def test_absent_device_falls_back_to_cpu_with_one_notice(graph, chips):
    proc = infer(graph, "--image_path", chips[0], "--device", "GPU")
    assert proc.returncode == 0
    assert proc.stderr.strip().splitlines() == [
        next(line for line in proc.stderr.splitlines() if "GPU is not available" in line)]
    assert "running on CPU" in proc.stderr and proc.stdout.startswith("Device: CPU")


# ------------------------------------------------------------------------------------------ folder

def test_folder_reports_bad_files_and_goes_on(graph, chips, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for chip in chips[:5]:
        (folder / chip.name).write_bytes(chip.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "cut.jpg").write_bytes(chips[6].read_bytes()[:2000])
    proc = infer(graph, "--image_path", folder, "--json", "--output", tmp_path / "annotated")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["image"] for r in records] == sorted(p.name for p in folder.iterdir())  # input order kept
    assert sorted(r["image"] for r in records if "error" in r) == ["cut.jpg", "empty.jpg", "notes.txt"]
    assert all(len(r["faces"]) == 1 for r in records if "error" not in r)
    assert sum(line.startswith("skipped ") for line in proc.stderr.splitlines()) == 3
    assert re.search(r"5 images, 5 faces, 3 skipped in [\d.]+ s: [\d.]+ images/s, [\d.]+ faces/s on CPU", proc.stderr)
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == sorted(c.name for c in chips[:5])


def test_folder_results_equal_single_image_results(graph, chips, tmp_path):
    """The async pipeline hands every face's probabilities to the right image."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for chip in chips[:6]:
        (folder / chip.name).write_bytes(chip.read_bytes())
    lines = infer(graph, "--image_path", folder, "--json", "--jobs", "3").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    for record in records[::2]:
        single = json.loads(infer(graph, "--image_path", folder / record["image"], "--json").stdout)
        for task in ("age", "gender"):
            assert record["faces"][0][task]["probabilities"] == pytest.approx(
                single["faces"][0][task]["probabilities"], abs=1e-5)
    assert len({r["faces"][0]["age"]["probability"] for r in records}) == len(records)


def test_folder_without_any_image_is_an_error(graph, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(infer(graph, "--image_path", tmp_path / "empty"), "holds no files")


# ------------------------------------------------------------------------------------------ video and camera

def test_video_file_one_line_per_frame_with_live_fps_and_annotated_output(graph, chips, tmp_path):
    video = write_video(tmp_path / "clip.avi", chips[:4])
    proc = infer(graph, "--image_path", video, "--output", tmp_path / "out.avi")
    assert proc.returncode == 0, proc.stderr
    frames = re.findall(r"^frame (\d+)(?: \(([\d.]+) fps\))?: #\d+ (Male|Female) [\d.]+%, \d+-\d+ [\d.]+%$",
                        proc.stdout, re.M)
    assert [int(f[0]) for f in frames] == list(range(8))
    assert all(float(f[1]) > 0 for f in frames[1:])
    assert re.search(r"clip.avi: 8 frames, 8 faces in [\d.]+ s: [\d.]+ frames/s", proc.stdout)
    written = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_video_max_frames_and_json(graph, chips, tmp_path):
    video = write_video(tmp_path / "clip.avi", chips[:4])
    proc = infer(graph, "--image_path", video, "--max_frames", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["image"] for line in proc.stdout.splitlines()] == ["frame 0", "frame 1", "frame 2"]


def test_video_faces_carry_their_track_and_answer_with_its_mean(graph, chips, tmp_path):
    """One person on a fixed camera (the chip's frames, a little noise each): one track; --track 3 answers
    each frame with the mean of its last 3 frames' probabilities (--track 1), --track 0 has no tracks."""
    rng = np.random.default_rng(0)
    video = tmp_path / "one.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (200, 200))
    for _ in range(6):
        noisy = cv2.imread(str(chips[1])).astype(np.int16) + rng.integers(-25, 26, (200, 200, 3))
        writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()
    runs = {}
    for window in ("0", "1", "3"):
        proc = infer(graph, "--image_path", video, "--json", "--track", window)
        assert proc.returncode == 0, proc.stderr
        runs[window] = [json.loads(line)["faces"][0] for line in proc.stdout.splitlines()]
    assert all("track" not in face for face in runs["0"])
    assert [(f["track"], f["frames"]) for f in runs["3"]] == [(1, 1), (1, 2), (1, 3), (1, 3), (1, 3), (1, 3)]
    raw = [np.array(list(f["gender"]["probabilities"].values())) for f in runs["1"]]
    assert raw[4][0] != pytest.approx(raw[5][0], abs=1e-4)  # the noise moves each frame's answer
    for i, face in enumerate(runs["3"]):
        mean = np.mean(raw[max(0, i - 2):i + 1], axis=0)
        np.testing.assert_allclose(list(face["gender"]["probabilities"].values()), mean, atol=2e-6)
    assert_one_line_error(infer(graph, "--image_path", video, "--track", "-1"), "--track must be 0")
    assert_one_line_error(infer(graph, "--image_path", video, "--track", str(2 ** 63)), "--track must be 0")
    assert_one_line_error(infer(graph, "--image_path", video, "--track", "2.5"), "invalid int value", "--help")


def test_camera_frames_go_through_the_same_pipeline(graph, chips, tmp_path, monkeypatch, capsys):
    """No camera in CI: camera 0 is served by a video file through the same cv2.VideoCapture interface."""
    from agegender import infer as infer_module

    video = write_video(tmp_path / "camera.avi", chips[:3], frames_per_chip=3)
    opened = []
    real_capture = cv2.VideoCapture

    def camera(source):
        opened.append(source)
        return real_capture(str(video))

    monkeypatch.setattr(infer_module.cv2, "VideoCapture", camera)
    parser = argparse.ArgumentParser()
    infer_module.add_arguments(parser)
    args = parser.parse_args(["--camera", "0", "--graph_dir", str(graph), "--max_frames", "5",
                              "--output", str(tmp_path / "camera_out.mp4")])
    assert infer_module.run(args) == 0
    out = capsys.readouterr().out
    assert opened == [0]
    assert len(re.findall(r"^frame \d+", out, re.M)) == 5 and "camera 0: 5 frames, 5 faces" in out
    assert (tmp_path / "camera_out.mp4").stat().st_size > 0
    one_pass = infer_module.make_finder(parser.parse_args(["--camera", "0", "--faces", "haar"]))
    assert one_pass.min_face == 0  # a camera keeps one detector pass per frame: its frame rate
    assert infer_module.make_finder(parser.parse_args(["--image_path", "v.mp4", "--faces", "haar"]),
                                    "video").min_face == 0
    assert infer_module.make_finder(parser.parse_args(["--image_path", "x.jpg", "--faces", "haar"])).min_face is None
    asked = parser.parse_args(["--camera", "0", "--faces", "haar", "--min-face", "16"])
    assert infer_module.make_finder(asked).min_face == 16


def test_a_video_that_fails_partway_leaves_no_output(graph, chips, tmp_path, monkeypatch):
    """A failure on frame 3 (not Ctrl-C) must not leave the first frames' video as if it were the whole."""
    from agegender import infer as infer_module

    video = write_video(tmp_path / "clip.avi", chips[:4])
    real_annotated, calls = infer_module.annotated, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("encoder died")
        return real_annotated(*args)

    monkeypatch.setattr(infer_module, "annotated", failing)
    parser = argparse.ArgumentParser()
    infer_module.add_arguments(parser)
    args = parser.parse_args(["--image_path", str(video), "--graph_dir", str(graph),
                              "--output", str(tmp_path / "o.avi")])
    with pytest.raises(RuntimeError, match="encoder died"):
        infer_module.run(args)
    assert not (tmp_path / "o.avi").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_absent_camera_is_one_clear_line(graph):
    assert_one_line_error(infer(graph, "--camera", "57"), "camera 57 cannot be opened")


def test_broken_video_file_is_one_clear_line(graph, chips, tmp_path):
    (tmp_path / "text.avi").write_text("not a video")
    assert_one_line_error(infer(graph, "--image_path", tmp_path / "text.avi"), "is not a video OpenCV can open")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(write_video(tmp_path / "clip.avi", chips[:4]).read_bytes()[:5000])
    assert_one_line_error(infer(graph, "--image_path", cut), "cut.avi is not a video OpenCV can open")


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("content, message", [
    (None, "image path not found"),
    (b"", "is not a usable image: empty file"),
    (b"GIF89a but not really", "is not a usable image: corrupt GIF"),
    (b"plain text, named .jpg", "is not a usable image: not an image file"),
    (b"\xff\xd8\xff\xe0 a JPEG cut short", "is not a usable image: truncated JPEG"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC/HEIF (a phone's photo format) is not readable "
                                                          "by OpenCV: convert it to JPEG or PNG"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", "AVIF is not readable by OpenCV"),
    (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avif", "AVIF is not readable by OpenCV"),
])
def test_bad_image_path_is_one_line_exit_2(graph, tmp_path, content, message):
    path = tmp_path / "image.jpg"
    if content is not None:
        path.write_bytes(content)
    assert_one_line_error(infer(graph, "--image_path", path), message)


def test_missing_graph_or_mean_is_one_line_exit_2(graph, chips, tmp_path):
    assert_one_line_error(infer(tmp_path / "nowhere", "--image_path", chips[0]), "graph folder not found")
    folder = copy_graph(graph, tmp_path / "g")
    (folder / "GenderNet.xml").unlink()
    assert_one_line_error(infer(folder, "--image_path", chips[0]), "graph not found", "GenderNet.xml")
    assert_one_line_error(infer(graph, "--image_path", chips[0], "--mean_file", tmp_path / "mean.npy"),
                          "mean file not found")
    other = write_mean(mean_image() * 0.5, tmp_path / "other_mean.npy")
    assert_one_line_error(infer(graph, "--image_path", chips[0], "--mean_file", other),
                          "does not match the mean the graph was compiled with")


def test_swapped_graphs_are_refused(graph, chips, tmp_path):
    folder = copy_graph(graph, tmp_path / "g")
    for suffix in (".xml", ".bin", ".json"):  # GenderNet's files under AgeNet's names
        (folder / f"AgeNet{suffix}").write_bytes((folder / f"GenderNet{suffix}").read_bytes())
    assert_one_line_error(infer(folder, "--image_path", chips[0]), "is a gender net", "not the age net")


@pytest.mark.parametrize("flag,value,message", [("--jobs", "-1", "--jobs must be 0"),
                                                 ("--max_frames", "0", "--max_frames must be at least 1")])
def test_bad_counts_are_one_line_errors(tmp_path, flag, value, message):
    assert_one_line_error(infer(tmp_path, "--image_path", tmp_path, flag, value), message)


def test_unwritable_output_kind_is_refused_before_any_work(graph, chips, tmp_path):
    assert_one_line_error(infer(graph, "--image_path", chips[0], "--output", tmp_path / "out.xyz"),
                          "OpenCV cannot write .xyz")
    video = write_video(tmp_path / "clip.avi", chips[:1])
    assert_one_line_error(infer(graph, "--image_path", video, "--output", tmp_path / "out.jpg"),
                          "a video is written as .avi or .mp4")


def test_help_lists_the_flags_of_the_original_and_the_new_ones():
    proc = run_cli("infer", "--help")
    assert proc.returncode == 0
    for flag in ("--mean_file", "--image_path", "--graph_dir", "--device", "--faces", "--output", "--json", "--camera"):
        assert flag in proc.stdout


# ------------------------------------------------------------------------------------------ with the real compile stage

def test_graphs_from_the_compile_stage_run_end_to_end(chips, tmp_path):
    """prototxt/*_deploy.prototxt with random weights -> `agegender compile` -> run_inference.py, with the
    original's --mean_file given as the Caffe mean.binaryproto the sidecar's .npy was made from."""
    from agegender.deploy.compile import random_caffemodel
    from agegender.labels import AGE_CLASSES, GENDER_CLASSES
    from agegender.layers.net import Net

    from conftest import FIXTURES, need_shared

    mean = need_shared(FIXTURES) / "levi-hassner" / "mean.binaryproto"
    root = Path(__file__).resolve().parents[1]
    for name, task in (("AgeNet", "age"), ("GenderNet", "gender")):
        prototxt = root / "prototxt" / f"{name}_deploy.prototxt"
        weights = random_caffemodel(Net.from_file(prototxt, "TEST"), tmp_path / f"{name}.caffemodel", seed=3)
        proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--mean", mean,
                       "--output", tmp_path / "graph" / name, "--labels", task, "--check", "none")
        assert proc.returncode == 0, proc.stderr
    proc = run_inference("--mean_file", mean, "--image_path", chips[0], "--graph_dir", tmp_path / "graph", "--json")
    assert proc.returncode == 0, proc.stderr
    face, = json.loads(proc.stdout)["faces"]
    assert face["age"]["label"] in AGE_CLASSES and face["gender"]["label"] in GENDER_CLASSES
    assert sum(face["age"]["probabilities"].values()) == pytest.approx(1, abs=1e-3)


@pytest.mark.skipif(__import__("platform").machine().lower() not in ("x86_64", "amd64"),
                    reason="the INT8 build is used on x86-64 CPUs only")
def test_cpu_answers_with_the_int8_build_when_it_holds_and_other_devices_never_see_it(graph, chips, tmp_path):
    """graph/AgeNet_int8.* (here another tiny net, so its answers differ) answers on CPU; a GPU request
    that falls back to CPU still uses it; the FP16 graph answers once the INT8 sidecar shows a 2-point loss."""
    from test_run_inference import tiny_ir

    folder = copy_graph(graph, tmp_path / "graph")
    tiny_ir(folder / "AgeNet_int8.xml", 9, seed=7)
    sidecar = json.loads((folder / "AgeNet.json").read_text())
    sidecar["verification"] = {"int8_vs_fp32": {"accuracy_drop_points": 0.4}}
    (folder / "AgeNet_int8.json").write_text(json.dumps(sidecar | {"precision": "INT8"}))

    def age(*args) -> dict:
        proc = infer(folder, "--image_path", chips[0], "--json", "--faces", "none", *args)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["faces"][0]["age"]["probabilities"]

    fp16 = json.loads(infer(graph, "--image_path", chips[0], "--json", "--faces", "none").stdout)
    int8 = age("--device", "CPU")
    assert int8 != fp16["faces"][0]["age"]["probabilities"]
    assert age("--device", "GPU") == int8  # no GPU here: it falls back to CPU, where INT8 is the choice
    edit_sidecar(folder / "AgeNet_int8.xml", verification={"int8_vs_fp32": {"accuracy_drop_points": 2.0}})
    assert age("--device", "CPU") == fp16["faces"][0]["age"]["probabilities"]


def test_mirror_averages_each_face_with_its_mirror_image_in_every_path(graph, chips, tmp_path):
    """--mirror: each face's probabilities are the mean of the face's and its left-right mirror's (the
    preprocessed input reversed, as Caffe's mirror), in the async folder path as in one synchronous call."""
    from agegender.deploy.faces import Faces, whole
    from agegender.infer import add_arguments, load_nets, predict_faces

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    folder = tmp_path / "photos"
    folder.mkdir()
    for chip in chips[:4]:
        (folder / chip.name).write_bytes(chip.read_bytes())
    base = ["--graph_dir", str(graph), "--image_path", str(folder), "--device", "CPU"]
    plain = load_nets(parser.parse_args(base), "LATENCY")
    mirror = load_nets(parser.parse_args([*base, "--mirror"]), "LATENCY")
    assert not plain.mirror and mirror.mirror
    proc = infer(graph, "--image_path", folder, "--json", "--mirror")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 4
    for record in records:
        image = cv2.imread(str(folder / record["image"]))
        x_age, x_gender = plain.inputs(image)
        one = plain.predict(x_age, x_gender)
        other = plain.predict(np.ascontiguousarray(x_age[..., ::-1]), np.ascontiguousarray(x_gender[..., ::-1]))
        expected = {"age": (one[0] + other[0]) / 2, "gender": (one[1] + other[1]) / 2}
        assert not np.allclose(one[0], other[0], atol=1e-4)  # the mirror image is another input
        synchronous = dict(zip(("age", "gender"), mirror.predict(x_age, x_gender)))
        queued = predict_faces(mirror, image, Faces([whole(image)], "crop", None))[0]
        for task in ("age", "gender"):
            assert synchronous[task] == pytest.approx(expected[task], abs=1e-5)
            assert getattr(queued, task) == pytest.approx(expected[task], abs=1e-5)
            printed = record["faces"][0][task]["probabilities"]
            assert list(printed.values()) == pytest.approx(expected[task].tolist(), abs=1e-5)


def test_min_gender_confidence_says_unsure_below_it_in_text_json_video_and_pictures(graph, chips, tmp_path):
    """--min-gender-confidence P: a gender below P is printed 'unsure (Male, 61.20%)', marked "sure": false in
    JSON and 'Male?' on the annotated picture; at or above P it is said as before."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for chip in chips[:6]:
        (folder / chip.name).write_bytes(chip.read_bytes())
    plain = [json.loads(line) for line in infer(graph, "--image_path", folder, "--json").stdout.splitlines()]
    p = sorted(record["faces"][0]["gender"]["probability"] for record in plain)
    assert p[0] < p[-1]
    threshold = (p[len(p) // 2 - 1] + p[len(p) // 2]) / 2  # half the faces below, half above
    records = [json.loads(line) for line in
               infer(graph, "--image_path", folder, "--json", "--min-gender-confidence", threshold).stdout.splitlines()]
    for record, before in zip(records, plain):
        gender = record["faces"][0]["gender"]
        assert gender["sure"] == (gender["probability"] >= threshold)
        assert gender["label"] == before["faces"][0]["gender"]["label"]  # the answer itself is unchanged
    assert sum(r["faces"][0]["gender"]["sure"] for r in records) == len(records) // 2
    unsure = next(r for r in records if not r["faces"][0]["gender"]["sure"])
    text = infer(graph, "--image_path", folder / unsure["image"], "--min-gender-confidence", threshold,
                 "--output", tmp_path / "out.png").stdout
    g = unsure["faces"][0]["gender"]
    assert f"Gender predicted: unsure ({g['label']}, {100 * g['probability']:.2f}%)" in text
    assert "Gender predicted: unsure" not in infer(graph, "--image_path", folder / unsure["image"]).stdout
    assert cv2.imread(str(tmp_path / "out.png")) is not None
    video = infer(graph, "--image_path", write_video(tmp_path / "v.avi", [folder / unsure["image"]], 1),
                  "--min-gender-confidence", 1).stdout  # the frame is re-encoded: its probability moves a little
    assert re.search(r"^frame 0: #1 unsure \((Male|Female) \d+\.\d\d%\), \d+-\d+ ", video, re.M)


def test_min_gender_confidence_outside_half_to_one_is_a_one_line_error(graph, chips):
    assert_one_line_error(infer(graph, "--image_path", chips[0], "--min-gender-confidence", "0.3"),
                          "--min-gender-confidence 0.3: give a probability from 0.5")
