"""Face detectors behind one interface (Haar, MTCNN, UltraFace, YuFaceDetectNet): decoding as their authors do,
recall on dlib's annotated photos, the best-installed choice and its Haar fallback, fetching with sha256, and
the one face pipeline (framing margins, landmark alignment) shared by run_inference and the dataset stage."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.deploy import detectors
from agegender.deploy.detectors import ultraface
from agegender.deploy.detectors.boxes import iou, nms
from agegender.deploy.detectors.command import fetch
from agegender.deploy.faces import NEAR_PROFILE, FaceFinder, align, head_turn, make_finder, similarity
from agegender.errors import AgegenderError

from conftest import SHARED, UTKFACE, need_shared

ANNOTATED = SHARED / "photos" / "annotated"
CNN = ("mtcnn", "ultraface", "yunet-ssd")


@pytest.fixture(scope="module")
def ir_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("detector-irs")


@pytest.fixture(scope="module")
def loaded(ir_cache):
    made = {}

    def get(name: str) -> detectors.Detector:
        if name not in made:
            made[name] = detectors.load(name, [need_shared(SHARED / "caffe-fixtures")], "CPU", ir_cache)
        return made[name]
    return get


def annotated(name: str) -> np.ndarray:
    root = ElementTree.parse(need_shared(ANNOTATED) / "training.xml").getroot()
    image = next(i for i in root.iter("image") if i.get("file") == name)
    return np.array([[int(b.get("left")), int(b.get("top")), int(b.get("left")) + int(b.get("width")),
                      int(b.get("top")) + int(b.get("height"))] for b in image.iter("box")], np.float64)


# ------------------------------------------------------------------------------------------ units

def test_nms_keeps_the_best_of_overlapping_boxes_and_min_mode_drops_nested_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], np.float64)
    scores = np.array([0.8, 0.9, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 1, 2]  # [3] is inside [1] but their IoU is small
    assert nms(boxes, scores, 0.5, "min").tolist() == [3, 2]  # intersection over the smaller box: [1] goes
    assert iou(boxes[:1], boxes[1:2])[0, 0] == pytest.approx(81 / 119)


def test_ultraface_priors_fit_its_4420_outputs_and_zero_offsets_decode_to_the_priors(fixtures):
    reference = np.load(fixtures / "ultraface" / "RFB-320_reference_opencv.npz")
    anchors = ultraface.priors(320, 240)
    assert anchors.shape == (reference["boxes"].shape[1], 4) == (4420, 4)
    assert anchors[0].tolist() == pytest.approx([4 / 320, 4 / 240, 10 / 320, 10 / 240])
    boxes = ultraface.decode(np.zeros((2, 4), np.float32), anchors[:2])
    assert boxes[0] == pytest.approx([-1 / 320, -1 / 240, 9 / 320, 9 / 240], abs=1e-6)


def test_head_turn_is_the_noses_sideways_offset_in_eye_distances_whatever_the_roll_scale_or_side():
    frontal = np.array([[60, 58], [138, 58], [99, 105], [66, 140], [132, 140]], np.float64)
    assert head_turn(frontal) == pytest.approx(0.0)
    turned = frontal.copy()
    turned[2, 0] += 0.35 * 78  # the nose 0.35 eye distances towards the right eye
    assert head_turn(turned) == pytest.approx(0.35) and head_turn(turned) >= NEAR_PROFILE
    mirrored = turned * [-1, 1]
    mirrored[[0, 1]] = mirrored[[1, 0]]  # a mirror swaps the eyes: the same turn, to the other side
    assert head_turn(mirrored) == pytest.approx(0.35)
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert head_turn(2.5 * turned @ rotation.T + [40, -7]) == pytest.approx(0.35)
    assert head_turn(np.zeros((5, 2))) == 0.0  # both eyes on one point: no turn to measure, not a division by 0


def test_similarity_recovers_a_rotation_scale_and_shift_and_align_puts_landmarks_on_the_template():
    template = np.array(detectors.REGISTRY["mtcnn"].template)
    angle, scale, shift = np.deg2rad(20), 1.7, np.array([300.0, 120.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = template @ (scale * rotation).T + shift
    matrix = similarity(moved, template)
    assert (moved @ matrix[:, :2].T + matrix[:, 2]) == pytest.approx(template, abs=1e-6)
    image = np.zeros((600, 800, 3), np.uint8)
    for x, y in moved:
        cv2.circle(image, (int(round(x)), int(round(y))), 4, (255, 255, 255), -1)
    chip = align(image, moved)
    assert chip.shape == (200, 200, 3)
    for x, y in template:
        assert chip[int(round(y)), int(round(x))].max() > 128  # each landmark dot lands on its template place


# ------------------------------------------------------------------------------------------ real detectors

def test_mtcnn_finds_the_faces_of_its_test_photos_with_five_landmarks_inside_each_box(loaded, fixtures):
    detector = loaded("mtcnn")
    counts = []
    for name in ("test1.jpg", "test2.jpg"):
        found = detector.detect(cv2.imread(str(fixtures / "mtcnn-complete" / name)))
        counts.append(len(found))
        for det in found:
            x0, y0, x1, y1 = det.box
            eyes, nose, mouth = det.landmarks[:2], det.landmarks[2], det.landmarks[3:]
            assert det.score > 0.7 and det.landmarks.shape == (5, 2)
            assert np.all((det.landmarks[:, 0] > x0) & (det.landmarks[:, 0] < x1))
            assert np.all((det.landmarks[:, 1] > y0) & (det.landmarks[:, 1] < y1))
            assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min() and eyes[0, 0] < eyes[1, 0]
    assert counts == [2, 1]


@pytest.mark.parametrize("name", CNN)
def test_cnn_detectors_find_the_annotated_faces_and_nothing_on_the_dogs(loaded, name):
    detector = loaded(name)
    for photo in ("2008_001009.jpg", "2008_001322.jpg"):
        truth = annotated(photo)
        found = detector.detect(cv2.imread(str(ANNOTATED / photo)))
        boxes = np.array([d.box for d in found]).reshape(-1, 4)
        assert (iou(truth, boxes).max(1) >= 0.4).all(), (photo, boxes.round().tolist(), truth.tolist())
        assert len(found) == len(truth)
    dogs = detector.detect(cv2.imread(str(ANNOTATED / "dogs.jpg")))
    assert len(dogs) <= (2 if name == "yunet-ssd" else 0)  # bench_detect.py: YuFaceDetectNet sees 2 faces there


@pytest.mark.parametrize("name", ("haar",) + CNN)
@pytest.mark.parametrize("shape", [(2, 30000), (30000, 2), (1, 1), (3, 5000)])
def test_degenerate_images_find_no_face_instead_of_failing(loaded, name, shape):
    """A 30000x2 image downscales to 1280x0 unless each side keeps at least one pixel (OpenCV's resize asserts)."""
    assert loaded(name).detect(np.zeros(shape + (3,), np.uint8)) == []


def holds(window, largest, face, height, width) -> bool:
    """The window has the face whole, clear of its sides inside the photo, and its pass keeps that size."""
    (x0, y0, x1, y1), (fx0, fy0, fx1, fy1) = window, face
    size = min(fx1 - fx0, fy1 - fy0)
    tol = detectors.CUT_TOLERANCE * size + 1
    clear = ((x0 == 0 or fx0 - x0 > tol) and (y0 == 0 or fy0 - y0 > tol)
             and (x1 == width or x1 - fx1 > tol) and (y1 == height or y1 - fy1 > tol))
    return clear and detectors.one_pass_floor(y1 - y0, x1 - x0) <= size < largest


def test_windows_hold_every_face_size_whole_in_a_window_whose_band_keeps_it():
    """--min-face's pyramid: any face of min_face px or more (10% slack), anywhere, as wide or 1.3 times as
    tall as wide (UltraFace's boxes), lies whole in a window, clear of the window's inner sides, whose one
    pass keeps its size (one_pass_floor(window) <= size < largest): cutting faces at window sides loses none."""
    rng = np.random.default_rng(0)
    for height, width, min_face in ((675, 1024, 24), (3000, 4000, 24), (353, 490, 12), (960, 1280, 40),
                                    (448, 1600, 24), (1080, 1920, 16)):
        found = detectors.windows(height, width, min_face)
        assert found[-1] == ((0, 0, width, height), float("inf"))
        for _ in range(400):
            top = min(height, width) / 1.3 / detectors.WINDOW_SLACK / min_face
            size = min_face * detectors.WINDOW_SLACK * 2 ** rng.uniform(0, np.log2(top))
            tall = size * rng.choice([1.0, 1.3])
            x, y = rng.uniform(0, width - size), rng.uniform(0, height - tall)
            face = (x, y, x + size, y + tall)
            assert any(holds(window, largest, face, height, width) for window, largest in found), (
                height, width, min_face, face)
    assert len(detectors.windows(200, 200, 24)) == 1  # a UTKFace chip: one pass, as the training crops were found
    assert len(detectors.windows(481, 481, 24)) == 1  # faces within 10% of one pass's floor: not worth windows
    assert len(detectors.windows(13, 1600, 24)) == len(detectors.windows(40, 6000, 24)) == 1  # no face fits
    with pytest.raises(AgegenderError, match="--min-face 8: .*give 12 or more"):
        detectors.windows(1000, 1000, 8)
    with pytest.raises(AgegenderError, match="needs over 1024 detector passes; give a larger --min-face"):
        detectors.windows(10000, 10000, 12)


def test_default_min_face_is_24_px_or_a_60th_of_a_large_photos_short_side_and_one_pass_for_haar():
    ultraface, haar = detectors.REGISTRY["ultraface"], detectors.REGISTRY["haar"]
    assert detectors.default_min_face(ultraface, 200, 200) == 24
    assert detectors.default_min_face(ultraface, 960, 1280) == 24
    assert detectors.default_min_face(ultraface, 3000, 4000) == 50  # a phone photo: 27 windows, not 107
    assert len(detectors.windows(3000, 4000, 50)) == 27 and len(detectors.windows(3000, 4000, 24)) == 107
    assert detectors.default_min_face(haar, 3000, 4000) == 0


@pytest.mark.parametrize("name", CNN)
def test_small_faces_of_a_large_photo_are_found_by_the_default_min_face_and_not_in_one_pass(loaded, name):
    """The annotated photos four times in a canvas twice their size: faces of 1/20 to 1/30 of its short side,
    which one pass misses (some or all); the default --min-face (24 px) finds each once, and nothing else."""
    detector = loaded(name)
    for photo in ("2008_001009.jpg", "2008_001322.jpg"):
        image, truth = cv2.imread(str(ANNOTATED / photo)), annotated(photo)
        height, width = image.shape[:2]
        canvas, boxes = np.full((4 * height, 4 * width, 3), 120, np.uint8), []
        for top, left in ((0, 0), (0, 2 * width), (2 * height, width), (3 * height, 3 * width)):
            canvas[top:top + height, left:left + width] = image
            boxes.append(truth + [left, top, left, top])
        boxes = np.vstack(boxes)
        assert len(detector.detect(canvas)) < len(boxes)
        found = detector.detect(canvas, detector.entry.min_face)
        assert len(found) == len(boxes)
        assert (iou(boxes, np.array([d.box for d in found])).max(1) >= 0.4).all(), photo


def test_faces_of_a_strip_are_found_wherever_they_stand(loaded):
    """A 1600x448 panorama: one pass stretches it to 320x240 and misses faces; the strip's windows (as tall as
    it, a quarter-side step) find each chip, 60 to 300 px, at every place along it."""
    detector = loaded("ultraface")
    chips = sorted(need_shared(UTKFACE).glob("*.jpg"))[::200][:3]
    background = cv2.GaussianBlur(np.random.default_rng(0).integers(60, 200, (448, 1600, 3)).astype(np.uint8),
                                  (0, 0), 8)
    missed = []
    for size in (60, 200, 300):
        for chip in chips:
            face = cv2.resize(cv2.imread(str(chip)), (size, size), interpolation=cv2.INTER_AREA)
            for x in np.linspace(0, 1600 - size, 6).astype(int)[1:-1]:
                photo, y = background.copy(), (448 - size) // 2
                photo[y:y + size, x:x + size] = face
                boxes = np.array([d.box for d in detector.detect(photo, 24)]).reshape(-1, 4)
                if not len(boxes) or iou(np.array([[x, y, x + size, y + size]]), boxes).max() <= 0.4:
                    missed.append((size, chip.name, int(x)))
    assert not missed


def test_a_window_showing_part_of_a_large_face_does_not_call_the_part_a_face(loaded):
    chip = cv2.imread(str(sorted(need_shared(UTKFACE).glob("*.jpg"))[3]))
    found = loaded("ultraface").detect(chip_in_photo(chip, 0), 24)  # windows cut the 300-px face in two
    assert len(found) == 1


def test_the_best_installed_detector_is_the_default_else_haar_with_a_one_line_hint(fixtures, tmp_path, ir_cache):
    assert detectors.installed([fixtures]) == list(detectors.PREFERENCE)
    assert detectors.installed([fixtures / "ultraface"]) == ["ultraface"]
    notices = []
    assert detectors.load(None, [tmp_path], "CPU", ir_cache, notices.append).name == "haar"
    assert len(notices) == 1 and "download.sh --detector ultraface" in notices[0]
    with pytest.raises(AgegenderError, match="mtcnn: files not found in .*download.sh --detector mtcnn"):
        detectors.load("mtcnn", [fixtures / "mtcnn"], "CPU", ir_cache)  # det2/det3 missing there
    with pytest.raises(AgegenderError, match="choose one of haar, mtcnn"):
        detectors.load("res10", [fixtures])


def test_fetch_keeps_only_files_whose_sha256_is_the_pinned_one(tmp_path):
    source = tmp_path / "upstream"
    source.mkdir()
    (source / "a.prototxt").write_bytes(b"name: 'a'\n")
    good = hashlib.sha256(b"name: 'a'\n").hexdigest()
    entry = replace(detectors.REGISTRY["ultraface"], files={"a.prototxt": ((source / "a.prototxt").as_uri(), good)})
    out = fetch(entry, tmp_path / "graph" / "detectors" / "x")
    assert (out / "a.prototxt").read_bytes() == b"name: 'a'\n"
    bad = replace(entry, files={"b.prototxt": ((source / "a.prototxt").as_uri(), "0" * 64)})
    with pytest.raises(AgegenderError, match="is not the pinned file"):
        fetch(bad, out)
    assert sorted(p.name for p in out.iterdir()) == ["a.prototxt"]  # nothing half-written
    gone = replace(entry, files={"c.prototxt": ((source / "missing").as_uri(), good)})
    with pytest.raises(AgegenderError, match="cannot download"):
        fetch(gone, out)


# ------------------------------------------------------------------------------------------ one face pipeline

def chip_in_photo(chip: np.ndarray, angle: float) -> np.ndarray:
    """A UTKFace chip enlarged 1.6x, turned by ``angle`` degrees and pasted in a 1280x960 grey photo."""
    big = cv2.resize(chip, (320, 320), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((960, 1280, 3), 100, np.uint8)
    canvas[300:620, 480:800] = big
    turn = cv2.getRotationMatrix2D((640, 460), angle, 1.0)
    return cv2.warpAffine(canvas, turn, (1280, 960), borderValue=(100, 100, 100))


def test_aligned_crop_of_a_turned_chip_in_a_photo_is_close_to_the_chip_itself(loaded):
    chip = cv2.imread(str(sorted(need_shared(UTKFACE).glob("*.jpg"))[5]))
    photo = chip_in_photo(chip, 12)
    faces = FaceFinder("auto", loaded("mtcnn")).find(photo)
    assert faces.source == "detected" and len(faces.boxes) == 1 and faces.landmarks[0] is not None
    aligned = faces.crops(photo)[0]
    assert aligned.shape == chip.shape
    inner = (slice(30, 170), slice(30, 170))  # the chip's face, away from the pasted border
    error = np.abs(aligned[inner].astype(float) - chip[inner]).mean()
    framed = cv2.resize(faces.boxes[0].crop(photo), (200, 200))
    assert error < 25 and error < 0.6 * np.abs(framed[inner].astype(float) - chip[inner]).mean()


def test_the_same_image_gives_the_same_crops_in_any_thread_and_face_chips_skip_the_detector(loaded):
    finder = FaceFinder("auto", loaded("ultraface"))
    chips = sorted(need_shared(UTKFACE).glob("*.jpg"))
    photo = chip_in_photo(cv2.imread(str(chips[3])), 0)
    here = finder.find(photo).crops(photo)
    there = []
    worker = threading.Thread(target=lambda: there.extend(finder.find(photo).crops(photo)))
    worker.start()
    worker.join()
    assert len(here) == len(there) == 1 and np.array_equal(here[0], there[0])
    box = finder.find(photo).boxes[0]
    assert 480 - 40 < box.x < 480 + 60 and 300 - 40 < box.y < 300 + 80  # framed around the pasted chip
    chip = cv2.imread(str(chips[0]))
    finder.detected_any = False
    faces = finder.find(chip)
    assert faces.source == "crop" and faces.detected is None and not finder.detected_any
    assert np.array_equal(faces.crops(chip)[0], chip)


# ------------------------------------------------------------------------------------------ landmarks for any detector

def test_onet_on_another_detectors_boxes_gives_mtcnns_own_landmarks(loaded, fixtures, ir_cache):
    """O-Net run on UltraFace's boxes (detect_face.m's last stage, twice with its box regression) puts the 5
    landmarks within a few pixels of where full MTCNN puts them."""
    onet = detectors.load_landmarker("onet", [fixtures], lambda: ("CPU", ir_cache))
    for name in ("test1.jpg", "test2.jpg"):
        image = cv2.imread(str(fixtures / "mtcnn-complete" / name))
        truth = loaded("mtcnn").detect(image)
        found = onet.add(image, loaded("ultraface").detect(image))
        assert len(found) == len(truth) and all(d.landmarks is not None for d in found)
        for det in found:
            ref = min(truth, key=lambda t: np.abs(np.subtract(t.box, det.box)).sum())
            eye_distance = np.linalg.norm(ref.landmarks[1] - ref.landmarks[0])
            assert np.abs(det.landmarks - ref.landmarks).max() < 0.15 * eye_distance, name
        assert onet.add(image, truth) == truth  # faces that have landmarks keep them


def test_align_auto_aligns_ultraface_crops_when_onet_is_installed_and_none_frames_them(fixtures, ir_cache):
    chip = cv2.imread(str(sorted(need_shared(UTKFACE).glob("*.jpg"))[5]))
    photo = chip_in_photo(chip, 12)
    place = lambda: ("CPU", ir_cache)  # noqa: E731
    aligned = make_finder("detect", "ultraface", [fixtures], place, "auto")
    framed = make_finder("detect", "ultraface", [fixtures], place, "none")
    assert aligned.landmarker.name == "onet" and framed.landmarker is None
    faces = aligned.find(photo)
    framed_boxes = framed.find(photo).boxes
    # the face, in the same framed box; what else a --min-face window took for a face O-Net drops
    assert len(faces.boxes) == 1 and faces.landmarks[0] is not None and faces.boxes[0] in framed_boxes
    crop = faces.crop(photo, 0)
    inner = (slice(30, 170), slice(30, 170))
    error = np.abs(crop[inner].astype(float) - chip[inner]).mean()
    boxed = cv2.resize(framed.find(photo).crop(photo, 0), (200, 200))
    assert crop.shape == chip.shape and error < 25
    assert error < 0.6 * np.abs(boxed[inner].astype(float) - chip[inner]).mean()


def test_align_without_onet_files_is_none_for_auto_and_one_line_for_onet(fixtures, tmp_path):
    asked = []
    place = lambda: asked.append(1) or ("CPU", None)  # noqa: E731
    assert detectors.load_landmarker("auto", [fixtures / "ultraface"], place) is None
    finder = make_finder("auto", None, [tmp_path], place, "auto")  # no CNN at all: Haar, no OpenVINO device asked
    assert finder.detector.name == "haar" and finder.landmarker is None and not asked
    with pytest.raises(AgegenderError, match=r"--align onet: det3.prototxt, det3.caffemodel not found in .*"
                                             r"download.sh --detector mtcnn"):
        detectors.load_landmarker("onet", [tmp_path])
    with pytest.raises(AgegenderError, match="--align 'x': choose one of auto, onet, none"):
        detectors.load_landmarker("x", [tmp_path])


def test_threads_that_detect_at_once_on_a_fresh_detector_never_deadlock(fixtures, tmp_path):
    """Three threads' first detections on a just-loaded detector (the LMDB stage's and run_inference's workers)
    deadlocked OpenVINO about 1 run in 4 before the compiling thread ran one inference first."""
    script = (f"import sys, threading, numpy as np; sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
              "from pathlib import Path\nfrom agegender.deploy import detectors\n"
              f"det = detectors.load('ultraface', [Path({str(fixtures)!r})])\n"
              "img = np.full((480, 640, 3), 90, np.uint8)\n"
              "ts = [threading.Thread(target=det.detect, args=(img,)) for _ in range(3)]\n"
              "[t.start() for t in ts]; [t.join() for t in ts]; print('done')\n")
    for _ in range(4):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr[-500:]


# ------------------------------------------------------------------------------------------ drawing

def test_labels_of_small_faces_stay_near_their_box_width_and_boxes_are_drawn_under_labels():
    from agegender.deploy.faces import Box, draw

    photo = np.full((960, 1280, 3), 255, np.uint8)
    small, large = Box(100, 300, 24, 30), Box(600, 300, 300, 360)
    out = draw(photo, [(small, "Female, 20-29"), (large, "Male, 30-39")])
    label_rows = np.where((out[:, :, 1] == 200) & (out[:, :, 0] == 0))  # the green label backgrounds and boxes
    near_small = label_rows[1][(label_rows[1] < 400) & (label_rows[0] < 300)]
    assert near_small.size and near_small.max() - small.x < 100  # the legible minimum, not the photo's 330 px
    near_large = label_rows[1][(label_rows[1] >= 600) & (label_rows[0] < 300)]
    assert near_large.max() - large.x > 150  # a large face keeps the photo-sized font
