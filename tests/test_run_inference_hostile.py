"""run_inference.py on what a user's own machine holds: images whose headers hide their size, multi-page and
float TIFFs, names OpenCV cannot write, a photo too large for the --min-face asked in a folder of good ones, an
interrupted run, and flags that would fail late (--json, --cache-dir, --jobs, an empty --image_path)."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image
from test_run_inference import build_graph, run_inference  # noqa: F401
from test_run_inference_cli import infer, write_video

from agegender import images, imagesize
from agegender.deploy import detectors

from conftest import ROOT, assert_one_line_error


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return build_graph(tmp_path_factory.mktemp("graph"))


@pytest.fixture(scope="module")
def chips():
    from conftest import UTKFACE, need_shared

    return sorted(need_shared(UTKFACE).glob("*.jpg"))[:6]


def tiff_bytes(size, pages=1, mode="1", **save) -> bytes:
    buffer = io.BytesIO()
    first = Image.new(mode, size, 1)
    first.save(buffer, "TIFF", save_all=pages > 1, append_images=[Image.new(mode, size, 0)] * (pages - 1), **save)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ headers

def handmade_tiff(order: str, sizes: list[tuple[int, int]]) -> bytes:
    """A classic TIFF header and one directory per size (ImageWidth as LONG, ImageLength as SHORT), chained."""
    import struct

    out = bytearray((b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8))
    for k, (width, height) in enumerate(sizes):
        start = len(out)
        following = start + 2 + 2 * 12 + 4 if k + 1 < len(sizes) else 0
        out += struct.pack(order + "H", 2)
        out += struct.pack(order + "HHII", 256, 4, 1, width)
        out += struct.pack(order + "HHIHH", 257, 3, 1, height, 0)
        out += struct.pack(order + "I", following)
    return bytes(out)


@pytest.mark.parametrize("order", ["<", ">"])
def test_tiff_sizes_and_pages_come_from_its_directories(order):
    data = handmade_tiff(order, [(300, 200), (10, 10), (40000, 40000)])
    assert imagesize.image_size(data, "TIFF") == (300, 200)  # the first page: the one OpenCV reads
    assert imagesize.pages(data, "TIFF") == 3
    looped = bytearray(handmade_tiff(order, [(300, 200), (10, 10)]))
    looped[-4:] = (8).to_bytes(4, "little" if order == "<" else "big")  # the last directory points at the first
    assert imagesize.pages(bytes(looped), "TIFF") == 2
    real = tiff_bytes((300, 200), pages=3, mode="RGB")  # as Pillow writes them
    assert (imagesize.image_size(real, "TIFF"), imagesize.pages(real, "TIFF"), imagesize.pages(real, "JPEG")) == \
        ((300, 200), 3, 1)


def test_a_hostile_tiff_chain_is_read_in_bounded_time():
    """1,000 overlapping directories of 65,535 entries each in 790 KB: only the first directory's entries are read
    (for its size), the others' counts and next offsets (for the pages), each at most once."""
    import struct
    import time

    span = 2 + 12 * 0xFFFF
    data = bytearray(b"II" + struct.pack("<HI", 42, 8) + bytes(8 + 4 * 1000 + span + 8))
    for k in range(1000):
        offset = 8 + 4 * k
        data[offset:offset + 2] = struct.pack("<H", 0xFFFF)
        following = offset + 4 if k < 999 else 0
        data[offset + span:offset + span + 4] = struct.pack("<I", following)
    start = time.perf_counter()
    assert imagesize.pages(bytes(data), "TIFF") == 1000 and imagesize.image_size(bytes(data), "TIFF") is None
    assert time.perf_counter() - start < 2


def test_bigtiff_is_a_tiff_left_to_opencvs_limit():
    assert images.image_format(b"II+\x00\x08\x00\x00\x00") == images.image_format(b"MM\x00+\x00\x08") == "TIFF"
    assert imagesize.image_size(b"II+\x00\x08\x00\x00\x00" + bytes(32), "TIFF") is None


def test_a_tiff_bomb_is_refused_from_its_header_without_decoding():
    data = tiff_bytes((20000, 20000), compression="group4")  # 25 KB that would decode to 1.1 GiB of BGR
    assert len(data) < 100_000
    with pytest.raises(images.BadImage, match="20000x20000 pixels is over the 100 MP limit"):
        images.decode_image(data)


def test_junk_between_jpeg_segments_does_not_hide_the_size():
    """libjpeg skips bytes that are no marker (with a warning) and decodes the file: the size check must too."""
    ok, encoded = cv2.imencode(".jpg", np.full((90, 120, 3), 128, np.uint8))
    data = encoded.tobytes()
    app0_end = 4 + int.from_bytes(data[4:6], "big")
    junk = data[:app0_end] + b"\x00\x00" + data[app0_end:]
    assert cv2.imdecode(np.frombuffer(junk, np.uint8), cv2.IMREAD_COLOR).shape == (90, 120, 3)
    assert imagesize.image_size(junk, "JPEG") == (120, 90)
    # FF00 is a stuffed zero, not a segment with a length: a fake frame header after it must not be read
    fake_sof = b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03" + bytes(9)
    comment = b"\xff\xfe" + (2 + len(fake_sof)).to_bytes(2, "big") + fake_sof
    tricky = data[:app0_end] + b"\xff\x00\x00\x04" + comment + data[app0_end:]
    assert cv2.imdecode(np.frombuffer(tricky, np.uint8), cv2.IMREAD_COLOR).shape == (90, 120, 3)
    assert imagesize.image_size(tricky, "JPEG") == (120, 90)


def test_opencv_gets_the_pixel_limit_before_it_loads():
    """OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS once, when it loads: agegender sets it first, so an image whose
    size no header told (here decoded by OpenCV directly) is refused by OpenCV too."""
    code = ("import agegender, cv2, numpy as np, sys\n"
            "data = np.frombuffer(sys.stdin.buffer.read(), np.uint8)\n"
            "try:\n    cv2.imdecode(data, cv2.IMREAD_COLOR)\n"
            "except cv2.error as exc:\n    print('refused', 'CV_IO_MAX_IMAGE_PIXELS' in str(exc))\n")
    proc = subprocess.run([sys.executable, "-c", code], input=tiff_bytes((12000, 9000), compression="group4"),
                          capture_output=True, cwd=ROOT, timeout=120)
    assert proc.stdout.decode().strip() == "refused True", proc.stderr.decode()[-500:]


def test_an_endless_stream_that_is_no_image_is_refused_from_its_first_bytes():
    with pytest.raises(images.BadImage, match="not an image file"):
        images.read_bytes("/dev/zero")


def test_a_file_larger_than_any_photo_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "huge.jpg"
    path.write_bytes(b"\xff\xd8\xff" + bytes(2000))
    with pytest.raises(images.BadImage, match="more than any photo"):
        images.read_bytes(str(path))


# ------------------------------------------------------------------------------------------ --min-face defaults

def test_the_default_min_face_never_makes_a_photo_fail_only_a_given_one_does():
    ultraface = detectors.REGISTRY["ultraface"]
    for height, width in ((100, 30000), (4696, 8000), (20000, 20000)):
        default = detectors.default_min_face(ultraface, height, width)
        assert len(detectors.windows(height, width, default)) <= detectors.MAX_WINDOWS + 1
    assert detectors.default_min_face(ultraface, 100, 30000) > detectors.MIN_FACE_DEFAULT  # grown for the strip
    with pytest.raises(detectors.AgegenderError, match="needs over 1024 detector passes"):
        detectors.windows(100, 30000, 24)


def test_window_boxes_are_marked_and_o_net_drops_those_it_does_not_call_faces():
    """A small window shows the detector hands and shirts: what only a window found goes to O-Net, and a box it
    scores under MIN_WINDOW_FACE_SCORE is dropped; boxes of the pass over the whole photo are kept."""
    def centre_box(bgr, min_face):  # a "face" in the middle of whatever it is shown
        h, w = bgr.shape[:2]
        return [detectors.Detection((w * 0.45, h * 0.45, w * 0.55, h * 0.55), 0.9)]

    detector = detectors.Detector(detectors.REGISTRY["ultraface"], centre_box, "test")
    found = detector.detect(np.zeros((1000, 1000, 3), np.uint8), 24)
    whole = [d for d in found if not d.windowed]
    assert len(whole) == 1 and whole[0].box == pytest.approx((450, 450, 550, 550)) and len(found) > 1

    def onet(bgr, boxes):  # scores: 0.05 for every box
        return np.zeros((len(boxes), 5, 2), np.float32), np.full(len(boxes), 0.05, np.float32)

    landmarker = detectors.Landmarker(detectors.LANDMARKERS["onet"], onet, "test")
    kept = landmarker.add(np.zeros((1000, 1000, 3), np.uint8), found)
    assert kept == whole and kept[0].landmarks is None  # not a face to O-Net, but the whole photo's pass found it

    photo = np.zeros((1000, 1000, 3), np.uint8)
    photo[280:330, 280:330] = 255

    def white_square(bgr, min_face):  # the same face, scored higher in a window than in the whole photo
        ys, xs = np.nonzero(bgr[..., 0])
        if not len(xs):
            return []
        return [detectors.Detection((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1),
                                    0.9 if bgr.shape == photo.shape else 0.95)]

    found = detectors.Detector(detectors.REGISTRY["ultraface"], white_square, "test").detect(photo, 24)
    assert len(found) == 1 and found[0].box == pytest.approx((280, 280, 330, 330), abs=2) and found[0].score == 0.95
    assert not found[0].windowed and landmarker.add(photo, found) == found  # the whole pass saw it: kept


# ------------------------------------------------------------------------------------------ folders

def test_a_folder_goes_on_past_a_photo_too_large_for_the_min_face_asked_and_names_it(graph, chips, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for chip in chips[:2]:
        (folder / chip.name).write_bytes(chip.read_bytes())
    cv2.imwrite(str(folder / "wide.jpg"), np.full((4696, 8000, 3), 90, np.uint8))
    proc = infer(graph, "--image_path", folder, "--detector", "haar", "--min-face", "12", "--json")
    assert proc.returncode == 0, proc.stderr
    records = {r["image"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert "wide.jpg: --min-face 12 on a 8000x4696 photo needs over 1024" in records["wide.jpg"]["error"]
    assert all(len(records[chip.name]["faces"]) == 1 for chip in chips[:2])
    for chip in chips[:2]:
        (folder / chip.name).unlink()
    proc = infer(graph, "--image_path", folder, "--detector", "haar", "--min-face", "12")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "could be used (JPEG, PNG, BMP, GIF, TIFF or WebP); the first skipped: wide.jpg: --min-face 12 on a " \
           "8000x4696 photo" in proc.stderr.splitlines()[-1]


def test_annotated_copies_of_images_opencv_cannot_write_get_jpg_added(graph, chips, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, chip in zip(("a.jpg", "no_suffix", "phone.jfif", "IMG", "IMG.jpg"), chips):
        (folder / name).write_bytes(chip.read_bytes())
    proc = infer(graph, "--image_path", folder, "--output", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["IMG.1.jpg", "IMG.jpg", "a.jpg", "no_suffix.jpg",
                                                                    "phone.jfif.jpg"]
    assert cv2.imread(str(tmp_path / "out" / "IMG.jpg")).shape == cv2.imread(str(chips[4])).shape


def test_only_the_first_tiff_page_is_read_and_the_user_is_told(graph, chips, tmp_path):
    path = tmp_path / "scan.tiff"
    chip = Image.open(chips[0]).convert("RGB")
    chip.save(path, save_all=True, append_images=[chip, chip])
    proc = infer(graph, "--image_path", path, "--faces", "none")
    assert proc.returncode == 0, proc.stderr
    assert "scan.tiff holds 3 images (TIFF pages); only the first is read" in proc.stderr


def test_a_float_tiff_is_named_as_such_not_called_corrupt(graph, chips, tmp_path):
    path = tmp_path / "float.tiff"
    cv2.imwrite(str(path), cv2.imread(str(chips[0])).astype(np.float32) / 255)
    assert_one_line_error(infer(graph, "--image_path", path), "samples it cannot read, such as 32-bit floats")


# ------------------------------------------------------------------------------------------ interruption

def test_an_interrupted_folder_keeps_the_earlier_json_and_writes_its_records_beside_it(graph, chips, tmp_path,
                                                                                      monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for chip in chips[:4]:
        (folder / chip.name).write_bytes(chip.read_bytes())
    results = tmp_path / "results.json"
    assert infer(graph, "--image_path", folder, "--json", results).returncode == 0
    complete = results.read_text()
    assert len(complete.splitlines()) == 4
    monkeypatch.setenv("AGEGENDER_CRASH_AT", "infer-record:SIGTERM")  # SIGTERM after the first record
    proc = infer(graph, "--image_path", folder, "--json", results)
    assert proc.returncode == 143 and "terminated" in proc.stderr
    assert results.read_text() == complete
    partial = (tmp_path / "results.partial.json").read_text().splitlines()
    assert 1 <= len(partial) < 4 and json.loads(partial[0]) == json.loads(complete.splitlines()[0])
    assert f"{results} left as it was" in proc.stderr


def test_an_interrupted_video_file_is_not_exit_0_and_its_output_is_marked_partial(graph, chips, tmp_path,
                                                                                monkeypatch):
    video = write_video(tmp_path / "clip.avi", chips[:3])
    monkeypatch.setenv("AGEGENDER_CRASH_AT", "infer-frame:SIGINT")
    proc = infer(graph, "--image_path", video, "--output", tmp_path / "out.avi", "--json", tmp_path / "v.json")
    assert proc.returncode == 130, proc.stderr
    assert not (tmp_path / "out.avi").exists() and not (tmp_path / "v.json").exists()
    assert (tmp_path / "out.partial.avi").stat().st_size > 0
    assert len((tmp_path / "v.partial.json").read_text().splitlines()) >= 1


# ------------------------------------------------------------------------------------------ flags checked first

@pytest.mark.parametrize("args, message", [
    (["--json", ""], "--json needs a file name"),
    (["--json", "{tmp}"], "is a folder; give a file name"),
    (["--json", "/proc/agegender/results.json"], "cannot create folder /proc/agegender"),
    (["--jobs", "100000"], "--jobs must be 0 (the device's optimal number) to 256"),
    (["--workers", "100000"], "--workers must be 0 (one per CPU) to 256"),
    (["--cache-dir", "{chip}"], "cannot be used"),
    (["--detector-dir", "{tmp}/nowhere"], "no such folder"),
    (["--output", "{tmp}"], "is a folder; for one image give a file name"),
    (["--json", "{chip}"], "is the input image itself"),
    (["--json", "{tmp}/same.jpg", "--output", "{tmp}/same.jpg"], "is also the --output file"),
])
def test_flags_that_would_fail_late_are_refused_before_any_work(graph, chips, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, chip=chips[0]) for a in args]
    assert_one_line_error(infer(graph, "--image_path", chips[0], *args), message)


def test_an_empty_image_path_is_refused_not_read_as_the_current_folder(graph):
    assert_one_line_error(infer(graph, "--image_path", ""), "--image_path is empty")


def test_bad_flags_create_no_folders(graph, tmp_path):
    proc = infer(graph, "--image_path", tmp_path / "absent.jpg", "--json", tmp_path / "a" / "b.json",
                 "--cache-dir", tmp_path / "c" / "d")
    assert_one_line_error(proc, "image path not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_faces_none_reports_no_detection(graph, chips):
    text = infer(graph, "--image_path", chips[0], "--faces", "none")
    assert text.returncode == 0 and "Face detection" not in text.stdout
    record = json.loads(infer(graph, "--image_path", chips[0], "--faces", "none", "--json").stdout)
    assert record["faces_from"] == "whole" and record["detected"] is None and len(record["faces"]) == 1
