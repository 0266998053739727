"""The sidecar beside every compiled IR (``graph/AgeNet.xml`` -> ``graph/AgeNet.json``).

It carries everything inference needs besides the IR itself: class names, input size and colour order,
the mean image file (with its hash, so a mismatched mean is caught), and where the model came from.
A net with several heads (AgeGenderNet: ``prob_age`` and ``prob_gender``) lists each head's task, classes and
output in ``heads``; ``task``, ``classes`` and ``output_name`` then describe the first head.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agegender.errors import AgegenderError
from agegender.fileio import write_text_atomic
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


def write_metadata(xml: str | os.PathLike, meta: IRMetadata) -> Path:
    return write_text_atomic(metadata_path(xml), json.dumps(asdict(meta), indent=2) + "\n")


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
        return IRMetadata(**data)
    except (ValueError, TypeError) as exc:
        raise AgegenderError(f"IR metadata {path} is not valid ({exc}); recompile with `agegender compile`") from None
