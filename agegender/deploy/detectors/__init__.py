"""Face detectors behind one interface: ``detector.detect(bgr image) -> [Detection]`` (box, score, optional
5 landmarks). One registry entry per detector says which files it needs, where they come from (a pinned
public URL + sha256), and the margins that frame its box like a UTKFace training chip.

Each CNN detector is a real Caffe model compiled to OpenVINO IR by agegender's compiler on first use (see
``ir.py``) and run on the nets' device. Files are looked up in a --detector-dir, else the graph folder's
``detectors/`` (where ``download.sh --detector NAME`` puts them); OpenCV's Haar cascade needs none.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from agegender.deploy.detectors.boxes import iou, nms
from agegender.errors import AgegenderError

Margins = tuple[float, float, float, float]  # left, top, right, bottom, as fractions of the box's width/height
DETECT_MAX_SIDE = 640       # larger photos are detected on a downscaled copy (faces are cropped at full size)
MIN_FACE_FRACTION = 1 / 20  # smallest face searched for, as a fraction of the detection image's short side
MIN_FACE_PIXELS = 12        # the smallest --min-face: a smaller face holds too little for an age or a gender
MIN_FACE_DEFAULT = 24       # the CNN detectors' default --min-face: faces this small are searched for in any photo
MIN_FACE_DEFAULT_FRACTION = 1 / 60  # ... or, over 1440 px, 1/60 of the short side (3 times finer than one pass)
MAX_WINDOWS = 1024          # --min-face on a huge photo: refused beyond this many detector passes (time bound)
WINDOW_NMS = 0.4            # IoU above which two windows' boxes are one face (the higher score kept)
NESTED = 0.6                # a box this much inside a larger one is a part of that face, not a face
WINDOW_OVERLAP = 3.0        # windows of a level overlap by this many times its smallest face
WINDOW_SLACK = 1.1          # no windows for faces within 10% of what one pass over the whole photo finds
CUT_TOLERANCE = 0.08        # a box this near a window's side (times its own size) may be a face cut short
LANDMARKS = ("left eye", "right eye", "nose", "mouth left", "mouth right")  # as the person faces the camera: image left first


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` x0, y0, x1, y1 in the image's pixels; ``landmarks`` 5 x 2 (x, y) in LANDMARKS order."""
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None
    windowed: bool = False  # found in a window of --min-face's pyramid, not by the pass over the whole photo


@dataclass(frozen=True)
class Model:
    """A model's files, as a registry entry names them: name -> (pinned URL, sha256), and the folders a
    --detector-dir may keep them in (``find_files``). Detectors (Entry) and landmark models (LandmarkEntry)."""
    name: str
    title: str
    license: str
    files: dict[str, tuple[str, str]]
    folders: tuple[str, ...]


@dataclass(frozen=True)
class Entry(Model):
    """A detector: its files, the margins (median over UTKFace chips, measured by
    ``benchmarks/measure_margins.py``), whether it gives landmarks, and how to build it."""
    margins: Margins
    landmarks: bool
    build: Callable[[dict[str, Path], str, Path | None], Callable[[np.ndarray], list[Detection]]]
    measured: str = ""  # how the margins were measured: chips with one face, of how many
    template: tuple[tuple[float, float], ...] = field(default=())  # median landmarks on a 200x200 UTKFace chip
    min_face: float = MIN_FACE_DEFAULT  # the default --min-face (0: one pass; Haar's windows would cost seconds)


class Built:
    """A registry entry built for a device: ``entry``, the callable that runs it, where its files came from."""

    def __init__(self, entry: Model, run: Callable, source: str):
        self.entry, self._run, self.source = entry, run, source

    @property
    def name(self) -> str:
        return self.entry.name


class Detector(Built):
    """A built detector: ``detect(bgr, min_face)`` -> detections sorted left to right, in full-image pixels.
    Each pass sees at most a DETECT_MAX_SIDE copy and keeps faces of MIN_FACE_FRACTION of its short side and
    more (smaller ones are not searched for (MTCNN) or dropped); faces down to ``min_face`` px are found by
    passes over overlapping windows of the photo (``windows``), as tiled inference does for small objects."""

    @property
    def margins(self) -> Margins:
        return self.entry.margins

    def detect(self, bgr: np.ndarray, min_face: float | None = None) -> list[Detection]:
        """The faces of ``bgr``: one pass finds those of one_pass_floor() px and more; a smaller ``min_face``
        (pixels of ``bgr``, --min-face) also searches overlapping windows()."""
        height, width = bgr.shape[:2]
        spots = windows(height, width, min_face) if min_face else []
        if len(spots) <= 1:
            return self._once(bgr)
        found: list[Detection] = []
        for (x0, y0, x1, y1), largest in spots:
            inner = (x0 > 0, y0 > 0, x1 < width, y1 < height)  # window sides inside the photo
            windowed = any(inner)
            for d in self._once(bgr[y0:y1, x0:x1]):
                bx0, by0, bx1, by1 = d.box
                tol = max(1.0, CUT_TOLERANCE * min(bx1 - bx0, by1 - by0))
                cut = (bx0 <= tol, by0 <= tol, bx1 >= x1 - x0 - tol, by1 >= y1 - y0 - tol)  # at the window's side
                if min(bx1 - bx0, by1 - by0) >= largest or any(c and i for c, i in zip(cut, inner)):
                    continue  # a larger face, or part of a face: a coarser or an overlapping window has it whole
                found.append(Detection((bx0 + x0, by0 + y0, bx1 + x0, by1 + y0), d.score,
                                       None if d.landmarks is None else d.landmarks + [x0, y0], windowed))
        if not found:
            return []
        boxes, scores = np.array([d.box for d in found]), np.array([d.score for d in found])
        keep = nms(boxes, scores, WINDOW_NMS)  # one face seen by several windows
        areas = (boxes[keep, 2] - boxes[keep, 0]) * (boxes[keep, 3] - boxes[keep, 1])
        keep = keep[nms(boxes[keep], areas, NESTED, method="min")]  # a part of a face seen in a window
        whole = boxes[[not d.windowed for d in found]]  # the pass over the whole photo saw these too
        kept = [replace(found[i], windowed=False) if found[i].windowed and len(whole)
                and iou(boxes[i:i + 1], whole).max() > WINDOW_NMS else found[i] for i in keep]
        return sorted(kept, key=lambda d: (d.box[0], d.box[1]))

    def _once(self, bgr: np.ndarray) -> list[Detection]:
        height, width = bgr.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
        small = bgr if scale == 1.0 else cv2.resize(bgr, (max(1, round(width * scale)), max(1, round(height * scale))),
                                                    interpolation=cv2.INTER_AREA)
        min_face = min(small.shape[:2]) * MIN_FACE_FRACTION
        found = [d for d in self._run(small, min_face) if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= min_face]
        if scale != 1.0:
            found = [Detection(tuple(v / scale for v in d.box), d.score,
                               None if d.landmarks is None else d.landmarks / scale) for d in found]
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))


def check_min_face(value: float | None) -> None:
    """A --min-face as given (run_inference.py, agegender lmdb): None (the default), 0 (one pass), or
    MIN_FACE_PIXELS and more; NaN and infinity refused too. One line saying what to give."""
    if value and not MIN_FACE_PIXELS <= value < float("inf"):
        raise AgegenderError(f"--min-face {value:g}: give {MIN_FACE_PIXELS} pixels or more, or 0 for one pass "
                             f"(smaller faces hold too little for an age or a gender)")


def default_min_face(entry: Entry, height: int, width: int) -> float:
    """The --min-face a photo gets when none is given: the detector's (0: one pass, Haar), and for photos over
    ~1440 px on the short side 1/60 of it (a 4000x3000 phone photo: 50 px, 27 windows instead of 107 at 24 px;
    smaller faces there hold ~1% of its height), doubled while its windows would be over MAX_WINDOWS (a
    panorama or a long strip): a default never makes a photo fail, only a --min-face given does."""
    if not entry.min_face:
        return 0.0
    min_face = max(entry.min_face, min(height, width) * MIN_FACE_DEFAULT_FRACTION)
    while True:
        try:
            windows(height, width, min_face)
            return min_face
        except AgegenderError:
            min_face *= 2


def one_pass_floor(height: int, width: int) -> float:
    """The smallest face (px) one pass over a whole photo keeps: 1/20 of its short side, and 3/80 of its long
    side (a pass sees at most a 640-px copy, which UltraFace stretches to 320x240: a strip's faces shrink)."""
    return max(min(height, width), 0.75 * max(height, width)) * MIN_FACE_FRACTION


def windows(height: int, width: int, min_face: float) -> list[tuple[tuple[int, int, int, int], float]]:
    """The windows ((x0, y0, x1, y1), largest) --min-face searches, a pyramid of levels: at level k, squares
    of side m / MIN_FACE_FRACTION, m = min_face * 2^k (so one pass in a window keeps faces of m px and more),
    overlapping by WINDOW_OVERLAP m: a face of m to 2 m px (UltraFace's boxes are 1.3 times as tall as wide)
    lies whole in one of them, a larger one in a window of the next level; levels go on while one pass over
    the whole photo, the last window, would miss faces of m px (by more than WINDOW_SLACK). A window keeps
    faces under ``largest`` (4 m: larger ones are a coarser level's, and a window showing part of a large face
    must not call that part a face); a face cut by a window's side is left to the others. Where a level's
    squares would not fit the short side (a strip), they are as tall as it, step by a quarter of it (a face up
    to 3/4 of the strip lies whole in one: one pass over a strip, stretched to 320x240, misses many), and are
    the last level. Refused (one line) past MAX_WINDOWS windows, or under
    MIN_FACE_PIXELS."""
    if min_face < MIN_FACE_PIXELS:
        raise AgegenderError(f"--min-face {min_face:g}: faces under {MIN_FACE_PIXELS} px are not searched for "
                             f"(too small for an age or a gender); give {MIN_FACE_PIXELS} or more")
    floor, short = one_pass_floor(height, width), min(height, width)
    out, m = [], float(min_face)
    while m * WINDOW_SLACK < floor:
        side, overlap, largest = round(m / MIN_FACE_FRACTION), round(WINDOW_OVERLAP * m), 4 * m
        if side >= short:  # a strip: squares as tall as it, the last level
            if short < 2 * m:
                break  # hardly a face of m px fits in it (a 6000x40 banner would take 598 passes)
            side, largest = short, float("inf")  # a quarter-side step: a face up to 3/4 of it lies whole in one
            overlap = side - max(1, side // 4)  # (the whole pass stretches a strip's faces and misses many)
        out += [((x, y, x + side, y + side), largest)
                for y in _starts(height, side, side - overlap) for x in _starts(width, side, side - overlap)]
        if len(out) > MAX_WINDOWS:
            raise AgegenderError(f"--min-face {min_face:g} on a {width}x{height} photo needs over {MAX_WINDOWS} "
                                 f"detector passes; give a larger --min-face (or a smaller photo)")
        if largest == float("inf"):
            break
        m *= 2
    return out + [((0, 0, width, height), float("inf"))]


def _starts(length: int, side: int, step: int) -> list[int]:
    """Window starts along one axis: every ``step`` px, the last one flush with the far edge."""
    if side >= length:
        return [0]
    starts = list(range(0, length - side, step))
    return starts + [length - side]


def _rows(boxes: np.ndarray, landmarks: np.ndarray | None = None) -> list[Detection]:
    return [Detection(tuple(float(v) for v in row[:4]), float(row[4]), None if landmarks is None else landmarks[i])
            for i, row in enumerate(boxes)]


# ------------------------------------------------------------------------------------------- the detectors

def _haar(files, device, cache_dir):
    """OpenCV's frontal-face Haar cascade (ships with opencv-python), one classifier per thread."""
    local = threading.local()
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"

    def run(bgr: np.ndarray, min_face: float) -> list[Detection]:
        cascade = getattr(local, "cascade", None)
        if cascade is None:
            cascade = local.cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise AgegenderError(f"OpenCV's Haar face cascade is missing ({path}); reinstall "
                                     f"opencv-python-headless or use --faces none with face crops")
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        smallest = max(24, int(min_face))
        found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest))
        return [Detection((float(x), float(y), float(x + w), float(y + h)), 1.0) for x, y, w, h in found]

    run(np.zeros((32, 32, 3), np.uint8), 24)  # loads the cascade now: a missing file fails at start
    return run


def _mtcnn(files, device, cache_dir):
    from agegender.deploy.detectors.mtcnn import MIN_FACE, MTCNN

    net = MTCNN(files, device, cache_dir)

    def run(bgr: np.ndarray, min_face: float) -> list[Detection]:
        boxes, landmarks = net.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), max(MIN_FACE, min_face))
        return _rows(boxes, landmarks)

    return run


def _ultraface(files, device, cache_dir):
    from agegender.deploy.detectors.ultraface import UltraFace

    net = UltraFace(files["RFB-320.prototxt"], files["RFB-320.caffemodel"], device, cache_dir)
    return lambda bgr, min_face: _rows(net.detect(bgr))


def _yunet(files, device, cache_dir):
    from agegender.deploy.detectors.ssd import YuFaceDetectNet

    net = YuFaceDetectNet(files["yufacedetectnet-open-v2.prototxt"], files["yufacedetectnet-open-v2.caffemodel"],
                          device, cache_dir)
    return lambda bgr, min_face: _rows(net.detect(bgr))


_MTCNN = "https://raw.githubusercontent.com/kpzhang93/MTCNN_face_detection_alignment/master/code/codes/MTCNNv1/model/"
_ULTRA = ("https://raw.githubusercontent.com/Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB/"
          "96605d162bf15bdcddfc35d1c1728b0b579e3d23/caffe/model/RFB-320/")
_YU = "https://raw.githubusercontent.com/ShiqiYu/libfacedetection/2a28111f3963f0cbb3806b95d01dcafcf5cc150a/models/caffe/"

REGISTRY: dict[str, Entry] = {entry.name: entry for entry in (
    Entry("haar", "OpenCV Haar cascade (frontal faces)", "BSD (OpenCV)", {}, (), (0.10, 0.03, 0.11, 0.18), False,
          _haar, "205 of 430 UTKFace chips with one face", min_face=0),
    Entry("mtcnn", "MTCNN P-, R-, O-Net (kpzhang93), 5 landmarks", "MIT", {
        "det1.prototxt": (_MTCNN + "det1.prototxt", "adc1756d8515d3ca3a6a186c0fadab66fcae04bd8d3c6388e2fe8797a626dde4"),
        "det1.caffemodel": (_MTCNN + "det1.caffemodel", "d6085e7f48ba7e6b6f1b58964595f6bce5b97bcc4866751f7b4bdc98f920c096"),
        "det2.prototxt": (_MTCNN + "det2.prototxt", "077686e89e606354f425366afdb2018777d93c6450b50e2c12301f8a97f6bb47"),
        "det2.caffemodel": (_MTCNN + "det2.caffemodel", "39b20f7a57bb8176cc9466cea4dfd52da6a6f876de60c7ab222a309f2d0ca08c"),
        "det3.prototxt": (_MTCNN + "det3.prototxt", "a8385a3aad241acf5902b79466f9a359ea9f03a3b6dcbe1e1efa050908cf7d04"),
        "det3.caffemodel": (_MTCNN + "det3.caffemodel", "9d6098829a4d6d318f37cec42142465637fafe4c673f2e93b69495bf7ca23d2d"),
    }, ("mtcnn", "mtcnn-complete"), (0.08, -0.08, 0.09, 0.04), True, _mtcnn, "419 of 430 UTKFace chips with one face",
        ((59.9, 57.7), (138.5, 57.6), (97.9, 104.7), (66.3, 139.5), (131.5, 139.2))),
    Entry("ultraface", "Ultra-Light-Fast-Generic-Face-Detector-1MB RFB-320 (Linzaer)", "MIT", {
        "RFB-320.prototxt": (_ULTRA + "RFB-320.prototxt", "d2d93df9e05dd16888e7fd6b3f13676fc9b5020f07dc7f904e2d6157ecefc9f4"),
        "RFB-320.caffemodel": (_ULTRA + "RFB-320.caffemodel",
                               "4a59411c442a649b4adbb353f7ba201492b2ef9f30b65019208252d781501e27"),
    }, ("ultraface", "RFB-320"), (0.10, 0.08, 0.10, 0.12), False, _ultraface, "407 of 430 UTKFace chips with one face"),
    Entry("yunet-ssd", "libfacedetection YuFaceDetectNet v2 SSD (Shiqi Yu, 2019)", "BSD-3-Clause", {
        "yufacedetectnet-open-v2.prototxt": (_YU + "yufacedetectnet-open-v2.prototxt",
                                             "c1fc589ad16de4b59ec6796560c65fb69cf0abd9375f78411e9a65fd1787613a"),
        "yufacedetectnet-open-v2.caffemodel": (_YU + "yufacedetectnet-open-v2.caffemodel",
                                               "6cb11ef465b5fcf6db24a31ac504dc805f9a35a2827e9b9e2eeeefd5021f7cad"),
    }, ("yunet-ssd", "yufacedetectnet"), (0.09, 0.02, 0.10, 0.14), False, _yunet, "422 of 430 UTKFace chips with one face"),
)}
# Best first, by benchmarks/bench_detect.py: UltraFace and MTCNN find 18/18 annotated faces with no false
# positive, UltraFace in a fixed ~1/4 of MTCNN's time; YuFaceDetectNet 18/18 with 2 on dogs.jpg. Haar: the fallback.
PREFERENCE = ("ultraface", "mtcnn", "yunet-ssd")


# ------------------------------------------------------------------------------------------- landmarks

MIN_LANDMARK_SCORE = 0.5  # O-Net's face score below which its landmarks are not trusted (the box is framed instead)
MIN_WINDOW_FACE_SCORE = 0.1  # a box only a window found, O-Net scoring it below this, is dropped: not a face


@dataclass(frozen=True)
class LandmarkEntry(Model):
    """A model giving 5 landmarks (LANDMARKS order) in face boxes another detector found, so any detector's
    faces can be aligned like the training chips: its files, and how to build it."""
    build: Callable[[dict[str, Path], str, Path | None], Callable[[np.ndarray, np.ndarray], tuple[np.ndarray,
                                                                                                 np.ndarray]]]


class Landmarker(Built):
    """``add(bgr, detections)``: the detections, each without landmarks given this model's (when it trusts
    them: O-Net's face score >= MIN_LANDMARK_SCORE). A second opinion on what --min-face's windows found:
    a windowed box O-Net scores under MIN_WINDOW_FACE_SCORE is dropped (a small window shows the detector
    hands, arms and shirts it does not see in the whole photo; docs/inference.md "Small faces")."""

    def add(self, bgr: np.ndarray, found: list[Detection]) -> list[Detection]:
        todo = [i for i, d in enumerate(found) if d.landmarks is None]
        if not todo:
            return found
        points, scores = self._run(bgr, np.array([found[i].box for i in todo], np.float64))
        out: list[Detection | None] = list(found)
        for k, i in enumerate(todo):
            if scores[k] >= MIN_LANDMARK_SCORE:
                out[i] = Detection(found[i].box, found[i].score, points[k], found[i].windowed)
            elif found[i].windowed and scores[k] < MIN_WINDOW_FACE_SCORE:
                out[i] = None
        return [d for d in out if d is not None]


def _onet(files, device, cache_dir):
    from agegender.deploy.detectors.ir import CaffeNet
    from agegender.deploy.detectors.mtcnn import onet_landmarks

    onet = CaffeNet(files["det3.prototxt"], files["det3.caffemodel"], device, cache_dir, batch_dynamic=True)
    return lambda bgr, boxes: onet_landmarks(onet, bgr, boxes)


LANDMARKERS: dict[str, LandmarkEntry] = {entry.name: entry for entry in (
    LandmarkEntry("onet", "MTCNN O-Net (kpzhang93) on each detected box: 5 landmarks", "MIT",
                  {name: REGISTRY["mtcnn"].files[name] for name in ("det3.prototxt", "det3.caffemodel")},
                  REGISTRY["mtcnn"].folders, _onet),
)}
ALIGN_MODES = ("auto", *LANDMARKERS, "none")


def load_landmarker(align: str, dirs: Sequence[Path],
                    placement: Callable[[], tuple[str, Path | None]] | None = None) -> Landmarker | None:
    """``--align``: "none" -> None; a LANDMARKERS name -> it (its files must be found); "auto" -> the first
    whose files are found, else None. Compiled for the (device, IR cache) ``placement()`` gives (default CPU)."""
    if align == "none":
        return None
    if align != "auto" and align not in LANDMARKERS:
        raise AgegenderError(f"--align {align!r}: choose one of {', '.join(ALIGN_MODES)}")
    for entry in (LANDMARKERS.values() if align == "auto" else (LANDMARKERS[align],)):
        files = find_files(entry, dirs)
        if files is not None:
            device, cache_dir = placement() if placement else ("CPU", None)
            return Landmarker(entry, entry.build(files, device, cache_dir), _source(files))
        if align != "auto":
            raise AgegenderError(f"--align {align}: {', '.join(entry.files)} not found in "
                                 f"{', '.join(map(str, dirs))}; get them with ./download.sh --detector mtcnn")
    return None


def search_dirs(detector_dir: str | Path | None, graph_dir: str | Path | None) -> list[Path]:
    """Where detector files are looked for: --detector-dir if given (a folder: a mistyped one would silently
    give the Haar fallback), else ``<graph_dir>/detectors``."""
    if detector_dir:
        if not Path(detector_dir).is_dir():
            raise AgegenderError(f"--detector-dir {detector_dir}: no such folder; give the folder that holds the "
                                 f"detector's files (see: python -m agegender detectors list)")
        return [Path(detector_dir)]
    return [Path(graph_dir or "graph") / "detectors"]


def _source(files: dict[str, Path]) -> str:
    """Where a built model's files came from (its Built.source); OpenCV's own Haar cascade has none."""
    return str(next(iter(files.values())).parent) if files else "opencv-python"


def find_files(entry: Model, dirs: Sequence[Path]) -> dict[str, Path] | None:
    """The entry's files from the first folder holding all of them (each dir itself, or its entry folders)."""
    for base in dirs:
        for folder in (base, *(base / name for name in entry.folders)):
            paths = {name: folder / name for name in entry.files}
            if all(p.is_file() for p in paths.values()):
                return paths
    return None


def installed(dirs: Sequence[Path]) -> list[str]:
    """The CNN detectors whose files are present, best first."""
    return [name for name in PREFERENCE if find_files(REGISTRY[name], dirs) is not None]


def fetch_hint(name: str = PREFERENCE[0]) -> str:
    return f"./download.sh --detector {name} (or --detector-dir DIR holding {', '.join(REGISTRY[name].files)})"


def load(name: str | None, dirs: Sequence[Path], device: str = "CPU", cache_dir: Path | None = None,
         on_notice: Callable[[str], None] | None = None) -> Detector:
    """The detector ``name``; None: the best installed, else Haar with a one-line hint (``on_notice``)."""
    if name is None:
        present = installed(dirs)
        if not present:
            if on_notice:
                on_notice(f"no CNN face detector installed, using the Haar cascade; for better faces: {fetch_hint()}")
            name = "haar"
        else:
            name = present[0]
    entry = REGISTRY.get(name)
    if entry is None:
        raise AgegenderError(f"--detector {name!r}: choose one of {', '.join(REGISTRY)}")
    files = find_files(entry, dirs) if entry.files else {}
    if files is None:
        raise AgegenderError(f"detector {name}: files not found in {', '.join(map(str, dirs))}; "
                             f"get them with {fetch_hint(name)}")
    return Detector(entry, entry.build(files, device, cache_dir), _source(files))
