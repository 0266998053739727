"""Age and gender of every face in an image, a folder of images, a video file or a camera, on the best
OpenVINO device present (NPU, GPU, else CPU). Prints, per face, "Age predicted: 20-29, 87.12%",
"Gender predicted: Female, 96.30%" and the execution time.

Exit codes: 0 done; 2 bad input (missing or unreadable path, not an image, missing or mismatched graph
or mean file); 3 no face found (single image, or no face in any image of a folder); 1 internal error.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import functools
import io
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import cv2
import numpy as np

from agegender import images as dataset_images
from agegender.deploy import detectors
from agegender.deploy.faces import FACE_MODES, NEAR_PROFILE, Box, FaceFinder, Faces, draw, head_turn
from agegender.deploy.faces import make_finder as faces_finder
from agegender.deploy.tracking import Tracker
from agegender.devices import add_device_argument
from agegender.errors import AgegenderError, OneLineParser, run_guarded
from agegender.fileio import (
    broken_link,
    check_writable,
    clean_stale,
    crash_point,
    make_parent,
    partial_path,
    staged_files,
    temporary_prefix,
    write_bytes_atomic,
    write_text_atomic,
)
from agegender.imagesize import pages
from agegender.progress import Progress
from agegender.quiet import quiet_stderr

if TYPE_CHECKING:  # the runtime imports openvino: only when a command runs, so --help stays fast
    from agegender.deploy.runtime import Classifier

NO_FACE = 3
VIDEO_SUFFIXES = {".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
VIDEO_CODECS = {".avi": "MJPG", ".mp4": "mp4v"}  # what --output may write for a video or camera
MAX_TRACK = 10_000  # --track: frames a face's answer may average (each kept: memory grows with it)
MAX_JOBS = 256  # --jobs and --workers: each request holds its inputs, each worker an image (memory grows with them)
CAMERA_FPS = 15.0  # written to --output when the camera does not say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    # kebab-case like every command; the original's snake_case names stay as aliases (run_inference.py's docs)
    source.add_argument("--image-path", "--image_path", metavar="PATH",
                        help="an image, a folder of images, or a video file")
    source.add_argument("--camera", type=int, metavar="INDEX", help="a camera (0 = the first), read until Ctrl-C")
    parser.add_argument("--mean", "--mean-file", "--mean_file", dest="mean_file", metavar="M",
                        help="mean image (.npy or .binaryproto), checked against the "
                        "graph's sidecar (default: the mean named by the sidecar, e.g. graph/age_gender_mean.npy)")
    parser.add_argument("--graph-dir", "--graph_dir", default="graph",
                        help="folder of AgeNet.xml/.bin/.json and GenderNet.*, "
                        "or of AgeGenderNet.* (both heads in one graph, used when present) (default: graph)")
    add_device_argument(parser, None, "OpenVINO device (default AUTO: the first present of NPU, GPU, CPU); "
                        "an absent device falls back to CPU")
    parser.add_argument("--faces", choices=FACE_MODES, default="auto",
                        help="auto: detect faces, but use an image that is already a face crop whole; "
                             "detect: detect faces only; haar: detect faces only, with the Haar cascade; "
                             "none: the image is one face crop (default: auto)")
    parser.add_argument("--detector", choices=tuple(detectors.REGISTRY), metavar="|".join(detectors.REGISTRY),
                        help="face detector (default: the best installed of "
                             f"{', '.join(detectors.PREFERENCE)}, else haar); get one with download.sh --detector NAME")
    parser.add_argument("--detector-dir", "--detector_dir", dest="detector_dir", metavar="DIR",
                        help="folder of the CNN detectors' Caffe files (default: GRAPH_DIR/detectors)")
    parser.add_argument("--align", choices=detectors.ALIGN_MODES, default="auto",
                        help="5 landmarks for detected faces that have none, so each crop is aligned like the "
                             "training chips: onet (MTCNN's O-Net, files of download.sh --detector mtcnn), none, "
                             "auto (onet when its files are in the detector folder; default)")
    parser.add_argument("--min-face", "--min_face", dest="min_face", type=float, metavar="PX",
                        help="find faces down to PX pixels (at least "
                             f"{detectors.MIN_FACE_PIXELS}; default {detectors.MIN_FACE_DEFAULT:g} for photos "
                             "with a CNN detector, or 1/60 of a short side over 1440 px; 0 with Haar, for a video "
                             "or a camera): where one pass would "
                             "miss them (crowds, large photos), overlapping windows are searched too; 0: one "
                             "pass, faces of 1/20 of the short side and more (fastest)")
    parser.add_argument("--track", type=int, default=15, metavar="N",
                        help="video and camera: follow each face across frames and answer with the mean of its "
                             "last N frames' predictions (default %(default)s; 1: track ids without averaging; "
                             "0: each frame alone)")
    parser.add_argument("--mirror", action="store_true",
                        help="also run each face mirrored and average the two predictions (the nets were trained "
                             "on mirrored faces too): a little better age in the wild, twice the nets' time")
    parser.add_argument("--min-gender-confidence", type=float, default=0.0, metavar="P",
                        help="say 'unsure' instead of a gender whose probability is below P (0.5-1; e.g. 0.9: "
                             "docs/inference.md has how many faces are answered and how often rightly; default: "
                             "always answer)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="threads that decode, detect and crop for folders and videos (default: one per CPU)")
    parser.add_argument("--output", metavar="FILE", help="draw boxes and labels: an image file for an image, "
                        "a folder for a folder, a .avi/.mp4 file for a video or camera")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="one JSON object per image or frame, "
                        "written to FILE; with no FILE, printed instead of the report")
    parser.add_argument("--max-frames", "--max_frames", type=int, metavar="N",
                        help="stop a video or camera after N frames")
    parser.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="requests in flight for folders and videos (default: the device's optimal number)")
    parser.add_argument("--cache-dir", "--cache_dir", metavar="DIR",
                        help="OpenVINO model cache, so the next start is fast "
                        "(default: ~/.cache/agegender/openvino; \"\" turns it off)")


# ---------------------------------------------------------------------------------------------- inputs

@contextlib.contextmanager
def opencv_quiet() -> Iterator[None]:
    """Silence OpenCV while it opens a file: its log and the lines its readers write straight to stderr
    (a cut AVI: "Unexpected element"). A failure is reported once, by us, in one line."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        with quiet_stderr():
            yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def read_image(path: Path) -> np.ndarray:
    """BGR uint8, decoded by the dataset stage's reader (OpenCV's IMREAD_COLOR, as convert_imageset):
    grayscale and alpha become BGR, EXIF rotation is applied."""
    if broken_link(path):  # reported as a skipped file, not silently left out
        raise AgegenderError(f"{path} is a {broken_link(path)}")
    try:
        data = dataset_images.read_bytes(str(path))
        with opencv_quiet():
            image = dataset_images.decode_image(data)
    except dataset_images.BadImage as exc:
        raise AgegenderError(f"{path} is not a usable image: {exc}") from None
    count = pages(data, dataset_images.image_format(data))
    if count > 1:  # OpenCV's IMREAD_COLOR reads the first; a multi-page scan's others would be silently left out
        print(f"notice: {path} holds {count} images (TIFF pages); only the first is read", file=sys.stderr)
    return image


def source_kind(path: Path) -> str:
    if broken_link(path):
        raise AgegenderError(f"image path {path} is a {broken_link(path)}")
    if not path.exists():
        raise AgegenderError(f"image path not found: {path}")
    if path.is_dir():
        return "folder"
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def folder_images(folder: Path) -> Iterator[tuple[str, Callable[[], tuple[np.ndarray | None, str | None]]]]:
    """(name, load) per file in name order; ``load()`` decodes it (in a worker thread): (image, None), or
    (None, why) for a file that is no image."""
    for path in _folder_files(folder):
        yield path.name, functools.partial(_load, path)


def _load(path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        return read_image(path), None
    except AgegenderError as exc:
        return None, str(exc)


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if (p.is_file() or broken_link(p)) and not p.name.startswith("."))
    if not files:
        raise AgegenderError(f"folder {folder} holds no files")
    return files


def open_capture(source: str | int) -> cv2.VideoCapture:
    with opencv_quiet():
        capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        if isinstance(source, int):
            raise AgegenderError(f"camera {source} cannot be opened (not connected, busy, or no permission; "
                                 f"on a Raspberry Pi see docs/inference.md)")
        raise AgegenderError(f"{source} is not a video OpenCV can open")
    return capture


def frames(capture: cv2.VideoCapture, limit: int | None) -> Iterator[tuple[str, Callable[[], tuple[np.ndarray, None]]]]:
    """(name, load) per frame: frames are decoded here, in order; finding faces is the workers' part."""
    index = 0
    while limit is None or index < limit:
        with opencv_quiet():  # FFmpeg's own lines about a damaged file; run_video reports it in one line
            ok, frame = capture.read()
        if not ok:
            return
        yield f"frame {index}", functools.partial(tuple, (frame, None))
        index += 1


# ---------------------------------------------------------------------------------------------- the nets

JOINT_GRAPH = "AgeGenderNet"  # one graph with both heads: used instead of AgeNet + GenderNet when present


@dataclass
class Nets:
    """The age and the gender net, or the heads of one AgeGenderNet (``joint``: one inference per face).
    ``mirror``: each face also runs mirrored and the two predictions are averaged (--mirror)."""
    age: Classifier
    gender: Classifier
    joint: Classifier | None = None
    mirror: bool = False

    @property
    def requests_per_face(self) -> int:
        return 1 if self.joint is not None else 2

    def predict(self, x_age: np.ndarray, x_gender: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(age, gender) probabilities of one face, synchronously."""
        if self.mirror:
            plain, mirrored = self._predict(x_age, x_gender), self._predict(_mirrored(x_age), _mirrored(x_gender))
            return (plain[0] + mirrored[0]) / 2, (plain[1] + mirrored[1]) / 2
        return self._predict(x_age, x_gender)

    def _predict(self, x_age: np.ndarray, x_gender: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.joint is not None:
            heads = self.joint.predict_heads(x_age)
            return heads["age"], heads["gender"]
        return self.age.predict(x_age)[0], self.gender.predict(x_gender)[0]

    @contextlib.contextmanager
    def queues(self, on_result: Callable[[object, dict[str, np.ndarray]], None], jobs: int = 0):
        """``submit(x_age, x_gender, tag)`` with the requests in flight; ``on_result(tag, {task: probs})``
        once per face and net (once per face for AgeGenderNet); with ``mirror``, once both sides arrived."""
        if not self.mirror:
            with self._queues(on_result, jobs) as submit:
                yield submit
            return
        tags: dict[int, list] = {}  # key -> [tag, results still to come]
        halves: dict[tuple[int, str], np.ndarray] = {}
        lock, keys = threading.Lock(), iter(range(1 << 62))

        def half(key: int, heads: dict[str, np.ndarray]) -> None:
            with lock:
                done = {task: (probs + halves.pop((key, task))) / 2 for task, probs in heads.items()
                        if (key, task) in halves}
                halves.update({(key, task): probs for task, probs in heads.items() if task not in done})
                entry = tags[key]
                entry[1] -= 1
                if not entry[1]:
                    del tags[key]
            if done:
                on_result(entry[0], done)

        with self._queues(half, jobs) as submit:
            def both(x_age: np.ndarray, x_gender: np.ndarray, tag: object) -> None:
                with lock:
                    key = next(keys)
                    tags[key] = [tag, 2 * self.requests_per_face]
                submit(x_age, x_gender, key)
                m_age = _mirrored(x_age)
                submit(m_age, m_age if x_gender is x_age else _mirrored(x_gender), key)
            yield both

    @contextlib.contextmanager
    def _queues(self, on_result: Callable[[object, dict[str, np.ndarray]], None], jobs: int = 0):
        if self.joint is not None:
            with self.joint.pipeline(on_result, jobs, heads=True) as queue:
                yield lambda x_age, x_gender, tag: queue.submit(x_age, tag)
            return
        with self.age.pipeline(lambda tag, probs: on_result(tag, {"age": probs}), jobs) as age_queue, \
                self.gender.pipeline(lambda tag, probs: on_result(tag, {"gender": probs}), jobs) as gender_queue:
            def submit(x_age: np.ndarray, x_gender: np.ndarray, tag: object) -> None:
                age_queue.submit(x_age, tag)
                gender_queue.submit(x_gender, tag)
            yield submit

    @functools.cached_property
    def shared_input(self) -> bool:
        """Both nets take the same input (same size, crop, colour, scale and mean): preprocess once."""
        a, g = self.age, self.gender
        same_mean = (a.mean is None and g.mean is None) or (
            a.mean is not None and g.mean is not None and np.array_equal(a.mean, g.mean))
        return same_mean and (a.meta.resize, a.meta.crop, a.meta.color_order, a.meta.scale) == (
            g.meta.resize, g.meta.crop, g.meta.color_order, g.meta.scale)

    def inputs(self, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.age.preprocess(face)
        return x, (x if self.shared_input else self.gender.preprocess(face))


def _mirrored(x: np.ndarray) -> np.ndarray:
    """A preprocessed N x C x H x W input mirrored left-right: Caffe's DataTransformer with mirror (the mean
    is subtracted where each pixel was, then the row is reversed), as the nets saw in training."""
    return np.ascontiguousarray(x[..., ::-1])


def load_nets(args: argparse.Namespace, hint: str) -> Nets:
    nets = _load_nets(args, hint)
    nets.mirror = bool(getattr(args, "mirror", False))
    return nets


def _load_nets(args: argparse.Namespace, hint: str) -> Nets:
    from agegender.deploy.runtime import Classifier, core, notice, pick_device, pick_ir

    graph_dir = Path(args.graph_dir)
    if not graph_dir.is_dir():
        raise AgegenderError(f"graph folder not found: {graph_dir} (build it with compile2Movidius.sh, "
                             f"or pass --graph_dir)")
    device, message = pick_device(args.device, core().available_devices)
    if message:
        notice(message)
    if (graph_dir / f"{JOINT_GRAPH}.xml").is_file():
        joint = pick_ir(graph_dir, JOINT_GRAPH, device)
        return _joint_nets(Classifier(joint, device, args.cache_dir, args.mean_file, hint))
    nets = {}
    for task, name in (("age", "AgeNet"), ("gender", "GenderNet")):
        net = Classifier(pick_ir(graph_dir, name, device), device, args.cache_dir, args.mean_file, hint)
        if net.meta.task != task:
            raise AgegenderError(f"{net.xml} is {f'a {net.meta.task}' if net.meta.task else 'not an age or gender'} "
                                 f"net (its sidecar says so), not the {task} net; recompile with compile2Movidius.sh")
        nets[task] = net
    return Nets(**nets)


def _joint_nets(joint: Classifier) -> Nets:
    missing = [task for task in ("age", "gender") if task not in joint.tasks]
    if missing:
        raise AgegenderError(f"{joint.xml} has no {' or '.join(missing)} head (its heads: "
                             f"{', '.join(joint.tasks)}); recompile prototxt/{JOINT_GRAPH}_deploy.prototxt, "
                             f"or remove it to use AgeNet + GenderNet")
    return Nets(joint.for_head("age"), joint.for_head("gender"), joint)


# ---------------------------------------------------------------------------------------------- results

@dataclass
class FaceResult:
    box: Box
    landmarks: np.ndarray | None = None  # 5 x 2, image pixels (MTCNN's order), when the crop was aligned
    age: np.ndarray | None = None
    gender: np.ndarray | None = None
    ms: float | None = None
    track: int | None = None   # video, --track: the face's track, and how many frames its answer averages
    frames: int | None = None


@dataclass
class Record:
    """One image or frame: its faces and their predictions, or why it was skipped."""
    name: str
    faces: Faces | None = None
    results: list[FaceResult] = field(default_factory=list)
    error: str | None = None
    image: np.ndarray | None = None
    pending: int = 0


class Report:
    """Prints records as the original did (or as JSON lines) and keeps the totals."""

    def __init__(self, nets: Nets, as_json: bool, min_gender: float = 0.0):
        self.nets, self.as_json, self.min_gender = nets, as_json, min_gender
        self.images = self.faces = self.skipped = 0
        self.first_error: str | None = None

    def sure(self, probability: float) -> bool:
        """Whether a gender this probable is said (--min-gender-confidence), or called unsure."""
        return probability >= self.min_gender

    def gender_text(self, gender: tuple[str, float], separator: str = ", ") -> str:
        """``Female, 96.30%``, or ``unsure (Female, 61.20%)`` below --min-gender-confidence."""
        text = f"{gender[0]}{separator}{100 * gender[1]:.2f}%"
        return text if self.sure(gender[1]) else f"unsure ({text})"

    def device(self) -> None:
        if not self.as_json:
            age, gender = self.nets.age, self.nets.gender
            where = age.device if age.device == gender.device else f"{age.device} (age), {gender.device} (gender)"
            print(f"Device: {where} ({age.device_name})")

    def record(self, record: Record) -> None:
        if record.error:
            self.skipped += 1
            self.first_error = self.first_error or record.error
            print(f"skipped {record.error}", file=sys.stderr)
            if self.as_json:
                print(json.dumps({"image": record.name, "error": record.error}), flush=True)
            return
        self.images += 1
        self.faces += len(record.results)
        if self.as_json:
            print(json.dumps(self._json(record)), flush=True)
            return
        print(f"{record.name}: {_count(len(record.results), 'face')}{_source_note(record.faces)}")
        for number, face in enumerate(record.results, 1):
            if record.faces.source == "detected":
                print(f"Face {number} at x={face.box.x} y={face.box.y} {face.box.w}x{face.box.h}{_turn_note(face)}:")
            age, gender = self.top(face)
            print(f"Age predicted: {age[0]}, {100 * age[1]:.2f}%")
            print(f"Gender predicted: {self.gender_text(gender)}")
            if face.ms is not None:
                print(f"Execution time: {face.ms:.2f} ms")

    def top(self, face: FaceResult) -> tuple[tuple[str, float], tuple[str, float]]:
        return (_top(self.nets.age.classes, face.age), _top(self.nets.gender.classes, face.gender))

    def _json(self, record: Record) -> dict:
        faces = []
        for face in record.results:
            entry = {"box": face.box.as_list()}
            if face.landmarks is not None:
                entry["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks]
                entry["head_turn"] = round(head_turn(face.landmarks), 3)
            for task, net, probs in (("age", self.nets.age, face.age), ("gender", self.nets.gender, face.gender)):
                label, p = _top(net.classes, probs)
                entry[task] = {"label": label, "probability": round(float(p), 6),
                               "probabilities": {c: round(float(v), 6) for c, v in zip(net.classes, probs)}}
                if task == "gender" and self.min_gender:
                    entry[task]["sure"] = self.sure(p)
            if face.ms is not None:
                entry["ms"] = round(face.ms, 3)
            if face.track is not None:
                entry["track"], entry["frames"] = face.track, face.frames
            faces.append(entry)
        return {"image": record.name, "device": self.nets.age.device, "faces_from": record.faces.source,
                "detected": record.faces.detected, "faces": faces}

    def label(self, face: FaceResult) -> str:
        age, gender = self.top(face)
        return f"{gender[0] if self.sure(gender[1]) else gender[0] + '?'}, {age[0]}"

    def frame(self, record: Record, fps: float | None) -> None:
        """A video frame on one line: "frame 12 (14.2 fps): #1 Female 96.30%, 20-29 87.12%; #2 Male ..."."""
        if self.as_json:
            self.record(record)
            return
        self.images += 1
        self.faces += len(record.results)
        faces = []
        for face in record.results:
            (age, p_age), (gender, p_gender) = self.top(face)
            who = f"#{face.track} " if face.track is not None else ""
            faces.append(f"{who}{self.gender_text((gender, p_gender), ' ')}, {age} {100 * p_age:.2f}%")
        live = f" ({fps:.1f} fps)" if fps else ""
        print(f"{record.name}{live}: {'; '.join(faces) or 'no face'}", flush=True)

    def summary(self, what: str, seconds: float, unit: str) -> None:
        rate = self.faces / seconds if seconds > 0 else 0.0
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        line = (f"{what}: {_count(self.images, unit)}, {_count(self.faces, 'face')}{skipped} in {seconds:.2f} s: "
                f"{self.images / seconds if seconds > 0 else 0:.1f} {unit}s/s, {rate:.1f} faces/s "
                f"on {self.nets.age.device}")
        print(line, file=sys.stderr if self.as_json else sys.stdout)


def _near_profile(face: FaceResult) -> bool:
    """The face was aligned by landmarks that show its head turned NEAR_PROFILE or more."""
    return face.landmarks is not None and head_turn(face.landmarks) >= NEAR_PROFILE


def _turn_note(face: FaceResult) -> str:
    """" (near profile: age least reliable)" for a face turned NEAR_PROFILE or more, else ""."""
    return " (near profile: its age is the least reliable)" if _near_profile(face) else ""


def _top(classes: list[str], probs: np.ndarray) -> tuple[str, float]:
    best = int(np.argmax(probs))
    return classes[best], float(probs[best])


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def _source_note(faces: Faces) -> str:
    if faces.source == "crop" and faces.detected == 0:
        return " (no face detected; the image looks like a face crop, so it is used whole)"
    return {"crop": " (the image is a face crop: used whole)", "whole": " (the whole image, --faces none)"}.get(
        faces.source, "")


# ---------------------------------------------------------------------------------------------- running

def face_results(faces: Faces) -> list[FaceResult]:
    """One empty result per face, with its box and landmarks."""
    landmarks = faces.landmarks or [None] * len(faces.boxes)
    return [FaceResult(box, points) for box, points in zip(faces.boxes, landmarks)]


def predict_faces(nets: Nets, image: np.ndarray, faces: Faces, jobs: int = 0) -> list[FaceResult]:
    """Every face of one image through the nets' async queues at once, so a face's age and gender (and the
    next faces) run side by side on the cores (AgeGenderNet: one request per face gives both); each face timed
    from its crop to its last result."""
    results = face_results(faces)
    started: dict[int, float] = {}
    lock = threading.Lock()

    def arrived(index: int, heads: dict[str, np.ndarray]) -> None:
        with lock:
            for task, probs in heads.items():
                setattr(results[index], task, probs)
            if results[index].age is not None and results[index].gender is not None:
                results[index].ms = 1000 * (time.perf_counter() - started[index])

    with nets.queues(arrived, jobs) as submit:
        for index in range(len(results)):
            started[index] = time.perf_counter()
            submit(*nets.inputs(faces.crop(image, index)), index)
    return results


Loader = Callable[[], "tuple[np.ndarray | None, str | None]"]  # -> (image, None) or (None, why it is unusable)


def prepare(nets: Nets, finder: FaceFinder, name: str, load: Loader, keep_image: bool) -> tuple[Record, list]:
    """Decode, find the faces, crop and preprocess them: one image's work before the nets (a worker thread's)."""
    image, error = load()
    record, inputs = Record(name, error=error), []
    if image is not None:
        try:
            record.faces = finder.find(image)
        except AgegenderError as exc:  # e.g. --min-face too fine for this photo: this image is skipped, named
            record.error = f"{name}: {exc}"
            return record, inputs
        record.results = face_results(record.faces)
        inputs = [nets.inputs(crop) for crop in record.faces.crops(image)]
        record.pending = nets.requests_per_face * len(inputs)
        record.image = image if keep_image else None
    return record, inputs


def stream(nets: Nets, finder: FaceFinder, sources: Iterable[tuple[str, Loader]], keep_images: bool,
           jobs: int = 0, workers: int = 0) -> Iterator[Record]:
    """Records in input order. ``workers`` threads (default one per CPU) decode, detect, crop and preprocess
    the next images (OpenCV, NumPy and OpenVINO release the GIL) while both nets' async queues run the faces
    already prepared; the calling thread only hands inputs to the queues and yields finished records."""
    lock = threading.Lock()
    waiting: collections.deque[Record] = collections.deque()
    workers = workers or os.cpu_count() or 1

    def arrived(tag: tuple[Record, int], heads: dict[str, np.ndarray]) -> None:
        record, index = tag
        for task, probs in heads.items():
            setattr(record.results[index], task, probs)
        with lock:
            record.pending -= 1

    def ready() -> Iterator[Record]:
        while True:
            with lock:
                if not waiting or waiting[0].pending:
                    return
                record = waiting.popleft()
            yield record

    with nets.queues(arrived, jobs) as submit, \
            concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="faces") as pool:
        def infer(prepared: concurrent.futures.Future) -> None:
            record, inputs = prepared.result()
            waiting.append(record)
            for index, (x_age, x_gender) in enumerate(inputs):
                submit(x_age, x_gender, (record, index))

        ahead: collections.deque[concurrent.futures.Future] = collections.deque()
        for name, load in sources:
            ahead.append(pool.submit(prepare, nets, finder, name, load, keep_images))
            if len(ahead) > 2 * workers:
                infer(ahead.popleft())
                yield from ready()
        while ahead:
            infer(ahead.popleft())
            yield from ready()
    yield from ready()


def run_image(args: argparse.Namespace, path: Path, finder: FaceFinder) -> int:
    image = read_image(path)
    nets = load_nets(args, "THROUGHPUT")
    report = Report(nets, args.json, args.min_gender_confidence)
    report.device()
    start = time.perf_counter()
    faces = finder.find(image)
    detect_ms = 1000 * (time.perf_counter() - start)
    if not faces.boxes:
        if args.json:
            report.record(Record(str(path), faces))  # --json says so too (exit code 3)
        small = small_faces_hint(finder, image.shape[0], image.shape[1])
        raise AgegenderError(f"no face found in {path} ({image.shape[1]}x{image.shape[0]}, "
                             f"{finder.detector.entry.title}); if it is a face crop, use --faces none{small}"
                             + (f"; {finder.hint}" if getattr(finder, "hint", None) else ""), exit_code=NO_FACE)
    record = Record(str(path), faces, predict_faces(nets, image, faces, args.jobs))
    report.record(record)
    if faces.detected is not None and not args.json:
        print(f"Face detection: {detect_ms:.2f} ms")
    if args.output:
        write_image(args.output, annotated(report, image, record))
    return 0


def small_faces_hint(finder: FaceFinder, height: int, width: int) -> str:
    """What to give when no face was found and smaller faces might be there: "" when nothing would help."""
    if finder.detector.name == "haar":  # its cascade looks for 24 px and more; the fallback's hint says the rest
        return "" if getattr(finder, "hint", None) else f"; for small faces use a CNN detector: {detectors.fetch_hint()}"
    smallest = finder.min_face_for(height, width) or detectors.one_pass_floor(height, width)
    if smallest <= detectors.MIN_FACE_PIXELS * detectors.WINDOW_SLACK or min(height, width) < 2 * smallest:
        return ""
    return f"; for faces under {smallest:.0f} px give --min-face {detectors.MIN_FACE_PIXELS}"


def run_folder(args: argparse.Namespace, folder: Path, finder: FaceFinder) -> int:
    files = _folder_files(folder)
    total, names = len(files), output_names(path.name for path in files)
    output = Path(args.output) if args.output else None
    if output is not None and output.resolve() == folder.resolve():
        raise AgegenderError(f"--output {output} is the input folder; annotated copies would replace the images")
    nets = load_nets(args, "THROUGHPUT")
    report = Report(nets, args.json, args.min_gender_confidence)
    report.device()
    progress = _progress(args, total, "folder", "images")
    with staged_files(output) as staged:  # the annotated images appear together, once all are written
        for record in stream(nets, finder, folder_images(folder), output is not None, args.jobs, args.workers):
            report.record(record)
            if staged is not None and record.image is not None:
                write_image(staged.path(names[record.name]), annotated(report, record.image, record))
            progress.update()
            crash_point("infer-record")
    report.summary(str(folder), progress.close(), "image")
    if report.images == 0:
        raise AgegenderError(f"no file in {folder} could be used (JPEG, PNG, BMP, GIF, TIFF or WebP); the first "
                             f"skipped: {report.first_error}")
    return 0 if report.faces else NO_FACE


def run_video(args: argparse.Namespace, source: str | int, finder: FaceFinder) -> int:
    capture = open_capture(source)
    nets = load_nets(args, "THROUGHPUT")
    report = Report(nets, args.json, args.min_gender_confidence)
    report.device()
    count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if isinstance(source, str) else 0
    label = f"camera {source}" if isinstance(source, int) else Path(source).name
    progress = _progress(args, min(count, args.max_frames or count), label, "frames")
    writer = VideoOutput(args.output, capture.get(cv2.CAP_PROP_FPS)) if args.output else None
    recent: collections.deque[float] = collections.deque(maxlen=30)  # the live fps is over the last 30 frames
    tracker = Tracker(args.track) if getattr(args, "track", 0) else None
    stopped = False
    try:
        for record in stream(nets, finder, frames(capture, args.max_frames), writer is not None, args.jobs,
                             args.workers):
            recent.append(time.perf_counter())
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else None
            if record.error:  # a frame's faces cannot be searched as asked (--min-face): nor can the next ones'
                raise AgegenderError(record.error)
            if tracker is not None:
                follow(tracker, record)
            report.frame(record, fps)
            if writer is not None:
                writer.write(annotated(report, record.image, record))
            progress.update()
            crash_point("infer-frame")
    except KeyboardInterrupt:  # how a camera is stopped: the output and the summary are still written
        print(file=sys.stderr)
        if isinstance(source, str):  # a video file stopped early: not its whole output, nor exit 0
            if writer is not None:
                writer.keep_partial(progress.done)
            report.summary(label, progress.close(), "frame")
            raise
        stopped = True
    except BaseException:  # a failure mid-video: no partial output is left as if it were the whole
        if writer is not None:
            writer.discard()
        raise
    finally:
        capture.release()
    if writer is not None:
        writer.close()
    report.summary(label, progress.close(), "frame")
    if not stopped:
        check_complete(source, count, progress.done, args.max_frames)
    return 0


def follow(tracker: Tracker, record: Record) -> None:
    """--track: each face of a frame continues its track (or starts one); its answer becomes the track's mean,
    in which a near-profile frame weighs nothing while its track has a better one in the window."""
    results = record.results
    boxes = [(r.box.x, r.box.y, r.box.x + r.box.w, r.box.y + r.box.h) for r in results]
    weights = [0.0 if _near_profile(r) else 1.0 for r in results]
    for result, (track, frames, age, gender) in zip(results, tracker.update(
            boxes, [r.age for r in results], [r.gender for r in results], weights)):
        result.track, result.frames, result.age, result.gender = track, frames, age, gender


def check_complete(source: str | int, declared: int, read: int, limit: int | None) -> None:
    """A video file that ends well before the frames its header declares is truncated or damaged: say so."""
    expected = min(declared, limit or declared)
    if isinstance(source, str) and read < expected - max(1, expected // 100):
        raise AgegenderError(f"{source} ended after {read} of the {declared} frames it declares (a truncated or "
                             f"damaged file); the {read} frames read were processed")


def annotated(report: Report, image: np.ndarray, record: Record) -> np.ndarray:
    return draw(image, [(face.box, report.label(face)) for face in record.results])


def _progress(args: argparse.Namespace, total: int, label: str, unit: str) -> Progress:
    """Progress on stderr, except when the per-image lines already go to the same terminal."""
    quiet = not args.json and sys.stdout.isatty() and sys.stderr.isatty()
    return Progress(total, label, unit, silent=quiet)


class VideoOutput:
    """An annotated video written to a temporary file beside ``path``, renamed into place when closed."""

    def __init__(self, path: str, fps: float):
        self.path = Path(path)
        self.fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
        self.fps = fps if fps and fps > 0 else CAMERA_FPS
        make_parent(self.path)
        clean_stale(self.path)
        self.tmp = self.path.with_name(f"{temporary_prefix(self.path)}tmp{self.path.suffix}")
        self.writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            self.writer = cv2.VideoWriter(str(self.tmp), self.fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                raise AgegenderError(f"OpenCV cannot write the video {self.path}")
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is None:
            self.tmp.unlink(missing_ok=True)
            return
        self.writer.release()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.tmp.unlink(missing_ok=True)

    def keep_partial(self, frames: int) -> None:
        """An interrupted video file's frames so far, beside (never over) the output's name."""
        if self.writer is None:
            return self.discard()
        self.writer.release()
        partial = partial_path(self.path)
        os.replace(self.tmp, partial)
        print(f"{frames} annotated frames so far written to {partial} ({self.path} left as it was)", file=sys.stderr)


def output_names(names: Iterable[str]) -> dict[str, str]:
    """Each image's annotated copy's name in an --output folder: its own, or with .jpg added when OpenCV cannot
    write its suffix (a photo saved without one, .jfif), then .1.jpg, .2.jpg ... where that is another's."""
    names = list(names)
    out = {name: name for name in names if Path(name).suffix and cv2.haveImageWriter(name)}
    taken = set(out)
    for name in (name for name in names if name not in out):
        candidate, k = f"{name}.jpg", 1
        while candidate in taken:
            candidate, k = f"{name}.{k}.jpg", k + 1
        taken.add(candidate)
        out[name] = candidate
    return out


def write_image(path: str | Path, image: np.ndarray) -> None:
    path = Path(path)
    _check_image_output(path)
    ok, data = cv2.imencode(path.suffix, image)
    if not ok:
        raise AgegenderError(f"OpenCV could not encode {path}")
    write_bytes_atomic(path, data.tobytes())


def _check_image_output(path: Path) -> None:
    if path.is_dir():
        raise AgegenderError(f"--output {path} is a folder; for one image give a file name such as out.jpg")
    if not path.suffix or not cv2.haveImageWriter(str(path)):
        raise AgegenderError(f"--output {path}: OpenCV cannot write {path.suffix or 'files without a suffix'}; "
                             f"use .jpg or .png")


def check_output(args: argparse.Namespace, kind: str) -> None:
    """Refuse an --output the run could not write, before any work is done."""
    if not args.output:
        return
    output = Path(args.output)
    if kind in ("image", "video") and _same_file(output, Path(args.image_path)):
        raise AgegenderError(f"--output {output} is the input {kind} itself, which it would overwrite; "
                             f"choose another file name")
    if kind == "image":
        _check_image_output(output)
        check_writable(output, "--output")
    elif kind == "folder" and output.exists() and not output.is_dir():
        raise AgegenderError(f"--output {output} must be a folder when --image_path is a folder")
    elif kind in ("video", "camera") and output.suffix.lower() not in VIDEO_CODECS:
        raise AgegenderError(f"--output {output}: a video is written as {' or '.join(VIDEO_CODECS)}")


def check_json(args: argparse.Namespace, kind: str) -> None:
    """Refuse a --json FILE the run could not write, or that is its input or --output, before any work."""
    if args.json in (None, "-"):
        return
    if not args.json.strip():
        raise AgegenderError("--json needs a file name (or none, for JSON lines on stdout)")
    path = Path(args.json)
    if kind != "camera" and _same_file(path, Path(args.image_path)):
        raise AgegenderError(f"--json {path} is the input {kind} itself, which it would overwrite; choose another "
                             f"file name")
    if args.output and _same_file(path, Path(args.output)):
        raise AgegenderError(f"--json {path} is also the --output file; give each its own name")
    check_writable(path, "--json")


def _same_file(output: Path, source: Path) -> bool:
    """The same file, also through another spelling of the path or a link."""
    try:
        return output.resolve() == source.resolve() or (output.exists() and os.path.samefile(output, source))
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    if args.json in (None, "-"):
        return _run(args)
    with contextlib.redirect_stdout(io.StringIO()) as lines:  # --json FILE: the JSON lines, written whole
        try:
            code = _run(args)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM: FILE keeps an earlier complete run; the records so far
            keep_partial(args.json, lines.getvalue(), "records")
            raise
        except BaseException:  # an error (no face: exit 3) after some records: no stale file
            if lines.getvalue():
                write_text_atomic(args.json, lines.getvalue())
            raise
    if lines.getvalue():
        write_text_atomic(args.json, lines.getvalue())
    return code


def keep_partial(path: str | Path, text: str, what: str) -> None:
    """An interrupted run's output, written beside the complete one's name (never over it), and said."""
    if text:
        partial = write_text_atomic(partial_path(path), text)
        print(f"{what} so far written to {partial} ({path} left as it was)", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    if args.max_frames is not None and args.max_frames < 1:
        raise AgegenderError("--max_frames must be at least 1")
    if not 0 <= args.jobs <= MAX_JOBS:
        raise AgegenderError(f"--jobs must be 0 (the device's optimal number) to {MAX_JOBS}")
    if args.min_gender_confidence and not 0.5 <= args.min_gender_confidence <= 1:
        raise AgegenderError(f"--min-gender-confidence {args.min_gender_confidence:g}: give a probability from 0.5 "
                             f"(always answer) to 1")
    if not 0 <= args.workers <= MAX_JOBS:
        raise AgegenderError(f"--workers must be 0 (one per CPU) to {MAX_JOBS}")
    if not 0 <= args.track <= MAX_TRACK:
        raise AgegenderError(f"--track must be 0 (each frame alone) to {MAX_TRACK} frames")
    detectors.check_min_face(args.min_face)
    if args.camera is not None:
        kind, source = "camera", args.camera
    else:
        if not (args.image_path or "").strip():
            raise AgegenderError("--image_path is empty; give an image, a folder or a video (or --camera N)")
        source = Path(args.image_path)
        kind = source_kind(source)
    check_output(args, kind)
    check_json(args, kind)
    check_cache_dir(args.cache_dir)
    finder = make_finder(args, kind)
    if kind == "image":
        code = run_image(args, source, finder)
    elif kind == "folder":
        code = run_folder(args, source, finder)
    else:
        code = run_video(args, source if kind == "camera" else str(source), finder)
    hint(finder)
    return code


def check_cache_dir(cache_dir: str | None) -> None:
    """A --cache-dir that cannot be a folder fails at the start, in one line (OpenVINO would fail mid-run)."""
    if not cache_dir:
        return
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AgegenderError(f"--cache-dir {cache_dir} cannot be used ({exc.strerror or exc}); give a writable "
                             f"folder, or \"\" for no cache") from None


def make_finder(args: argparse.Namespace, kind: str | None = None) -> FaceFinder:
    """The face finder of --faces with --detector (default: the best installed, else Haar with a one-line
    hint), its CNN run on the nets' device and its IRs kept in the model cache. --min-face: the detector's
    default for photos; one pass per frame for a video or a camera (``kind``), for their frame rate (22
    passes cost a 1080p video 9 instead of 61 frames/s here) and their false positives."""
    kind = kind or ("camera" if getattr(args, "camera", None) is not None else "image")
    min_face = getattr(args, "min_face", None)
    if min_face is None and kind in ("video", "camera"):
        min_face = 0

    def placement() -> tuple[str, Path | None]:
        from agegender.deploy.runtime import core, default_cache_dir, pick_device

        device, _ = pick_device(args.device, core().available_devices)  # the nets say it when the device is absent
        return device, default_cache_dir() if args.cache_dir is None else (Path(args.cache_dir) if args.cache_dir
                                                                           else None)

    return faces_finder(args.faces, args.detector, detectors.search_dirs(args.detector_dir, args.graph_dir),
                        placement, args.align, min_face)


def hint(finder: FaceFinder) -> None:
    """After a run that detected with the fallback Haar cascade: one line on how to get a better detector."""
    if getattr(finder, "hint", None) and finder.detected_any:
        print(f"notice: {finder.hint}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``run_inference.py``: the original project's entry point, without the rest of the toolkit's CLI
    (so a Raspberry Pi with only requirements-edge.txt runs it)."""
    parser = OneLineParser(prog="run_inference.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_guarded("run_inference.py", run, parser.parse_args(argv))
