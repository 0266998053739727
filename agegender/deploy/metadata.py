"""The sidecar beside every compiled IR (``graph/AgeNet.xml`` -> ``graph/AgeNet.json``).

It carries everything inference needs besides the IR itself: class names, input size and colour order,
the mean image file (with its hash, so a mismatched mean is caught), and where the model came from.
A net with several heads (AgeGenderNet: ``prob_age`` and ``prob_gender``) lists each head's task, classes and
output in ``heads``; ``task``, ``classes`` and ``output_name`` then describe the first head.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agegender.errors import AgegenderError
from agegender.fileio import crash_point, write_text_atomic
from agegender.tasks import TASKS

FORMAT = "agegender-ir/1"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class IRMetadata:
    task: str                      # "age", "gender", or "" for another classifier
    classes: list[str]             # class names in output order
    input_name: str                # Caffe blob name of the input, e.g. "data"
    output_name: str               # Caffe blob name of the probabilities, e.g. "prob"
    input_shape: list[int]         # N, C, H, W of the IR input
    resize: list[int]              # H, W every image is resized to before cropping (the LMDB size)
    crop: int                      # centre crop fed to the net
    color_order: str = "BGR"
    scale: float = 1.0
    mean_file: str = ""            # relative to the IR's folder, e.g. "age_gender_mean.npy"; "" = no mean
    mean_sha256: str = ""
    mean_bgr: list[float] = field(default_factory=list)  # per-channel means, for display
    precision: str = "FP16"
    target: str = "cpu"
    source: dict = field(default_factory=dict)        # prototxt, prototxt_sha256, caffemodel, caffemodel_sha256
    verification: dict = field(default_factory=dict)  # reference, inputs, max_abs_diff, top1_agreement
    heads: list[dict] = field(default_factory=list)   # [{task, classes, output_name}] of every head, in output order
    prior: dict = field(default_factory=dict)  # class prior folded into the IR (agegender.deploy.prior.describe)
    format: str = FORMAT

    def head_list(self) -> list[dict]:
        """Every head as {task, classes, output_name}; a sidecar written before heads existed has one."""
        return self.heads or [{"task": self.task, "classes": self.classes, "output_name": self.output_name}]

    def head(self, task: str | None) -> dict:
        """The head of ``task`` (None: the first), or a one-line error naming the heads there are."""
        heads = self.head_list()
        if task is None:
            return heads[0]
        for head in heads:
            if head["task"] == task:
                return head
        if len(heads) == 1 and not heads[0]["task"]:
            return heads[0]  # a net of unknown task: the caller's classes decide
        raise AgegenderError(f"the graph has no {task} head (its heads: "
                             f"{', '.join(h['task'] or h['output_name'] for h in heads)})")


def output_task(output: str, n_classes: int) -> str:
    """The task a net output names (``prob_age`` -> age, ``prob_gender`` -> gender) when its class count is
    that task's; "" otherwise (MTCNN's ``prob1`` and ``conv4-2`` name none)."""
    suffix = output.rsplit("_", 1)[-1]
    return suffix if suffix in TASKS and len(TASKS[suffix].classes) == n_classes else ""


def metadata_path(xml: str | os.PathLike) -> Path:
    return Path(xml).with_suffix(".json")


def switch_path(xml: str | os.PathLike) -> Path:
    """``.NAME.xml.switch``: the complete new IR, sidecar and mean, while they replace the old ones."""
    return Path(xml).with_name(f".{Path(xml).name}.switch")


def switch_in(staged: Path, xml: str | os.PathLike) -> None:
    """Replace the IR trio (``.xml``, ``.bin``, ``.json``, and the mean) beside ``xml`` with the ``staged``
    folder's in one step: renaming the folder to ``.NAME.xml.switch`` is the commit; the files are then moved
    (sidecar last). A run killed while moving leaves the switch folder, and whoever reads the graph next
    (compile, run_inference, test) finishes the moves: never a new .xml beside an old .bin."""
    finish_switch(xml)
    os.replace(staged, switch_path(xml))
    finish_switch(xml)


def finish_switch(xml: str | os.PathLike) -> None:
    """Complete a switch a killed compile left half done (nothing to do when there is none)."""
    journal, sidecar = switch_path(xml), metadata_path(xml)
    if not journal.is_dir():
        return
    try:
        sidecar.unlink(missing_ok=True)  # no sidecar while the files move: a reader without this step refuses them
        for file in sorted(p for p in journal.iterdir() if p.is_file() and p.name != sidecar.name):
            os.replace(file, Path(xml).parent / file.name)
            crash_point("compile-switch")
        if (journal / sidecar.name).is_file():
            os.replace(journal / sidecar.name, sidecar)
        shutil.rmtree(journal)
    except OSError as exc:
        raise AgegenderError(f"graph {xml}: a compile was interrupted while replacing it and its files cannot be "
                             f"moved into place ({exc.strerror}); run compile again") from None


def write_metadata(xml: str | os.PathLike, meta: IRMetadata) -> Path:
    return write_text_atomic(metadata_path(xml), json.dumps(asdict(meta), indent=2, allow_nan=False) + "\n")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sizes(count: int):
    return lambda v: isinstance(v, list) and len(v) == count and all(isinstance(d, int) and d > 0 for d in v)


def _is_head(head) -> bool:
    return (isinstance(head, dict) and set(head) == {"task", "classes", "output_name"}
            and isinstance(head["task"], str) and isinstance(head["output_name"], str)
            and _FIELD_CHECKS["classes"][0](head["classes"]))


_FIELD_CHECKS = {  # field -> (check, what it must be)
    "task": (lambda v: isinstance(v, str), "a string"),
    "classes": (lambda v: isinstance(v, list) and v and all(isinstance(c, str) for c in v), "a list of class names"),
    "input_name": (lambda v: isinstance(v, str), "a string"),
    "output_name": (lambda v: isinstance(v, str), "a string"),
    "input_shape": (_sizes(4), "4 positive integers (N, C, H, W)"),
    "resize": (_sizes(2), "2 positive integers (H, W)"),
    "crop": (lambda v: isinstance(v, int) and v > 0, "a positive integer"),
    "color_order": (lambda v: v in ("BGR", "RGB"), "BGR or RGB"),
    "scale": (_number, "a finite number"),
    "mean_file": (lambda v: isinstance(v, str), "a string"),
    "mean_sha256": (lambda v: isinstance(v, str), "a string"),
    "mean_bgr": (lambda v: isinstance(v, list) and all(map(_number, v)), "a list of finite numbers"),
    "heads": (lambda v: isinstance(v, list) and all(_is_head(h) for h in v),
              "a list of {task, classes, output_name}"),
    "prior": (lambda v: isinstance(v, dict), "an object"),
}


def check_metadata(meta: IRMetadata) -> None:
    """ValueError naming the first field of the wrong type, and for the age and gender heads, classes that
    are not the head's own names in its own order (["Female", "Male"] would invert every gender)."""
    for name, (check, expected) in _FIELD_CHECKS.items():
        value = getattr(meta, name)
        if not check(value):
            raise ValueError(f'"{name}" is {json.dumps(value, allow_nan=True)[:60]}, expected {expected}')
    for head in meta.head_list():  # every head of a net with several (AgeGenderNet), else the one
        task, classes = head["task"], head["classes"]
        if task in TASKS and classes != list(TASKS[task].classes):
            raise ValueError(f'"classes" {classes} are not the {task} head\'s {list(TASKS[task].classes)} '
                             f"in this order: predictions would be given the wrong names")


def read_metadata(xml: str | os.PathLike) -> IRMetadata:
    path = metadata_path(xml)
    if not path.is_file():
        raise AgegenderError(f"IR metadata not found: {path} (written by `agegender compile` beside {Path(xml).name}); "
                             f"recompile with `agegender compile`")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
        meta = IRMetadata(**data)
        check_metadata(meta)
        return meta
    except (ValueError, TypeError) as exc:
        raise AgegenderError(f"IR metadata {path} is not valid ({exc}); recompile with `agegender compile`") from None
