"""The heads: each task named once, with its net, classes, whether its classes are ordered, and how a
dataset entry yields its label. Everything that loops over tasks loops over ``TASKS``: the dataset lists
and LMDBs, compile's class names, test's metrics, the pipeline's stages, the doors (``python -m
agegender.tasks``). A new head is one ``register(Task(...))`` here, its prototxts and its data.

Like Caffe's layer factory, the registry refuses a second entry under a name it already holds.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from agegender.errors import AgegenderError
from agegender.labels import AGE_CLASSES, GENDER_CLASSES


class Entry(Protocol):
    """What a label is read from: a dataset face (agegender.dataset.utkface.Face)."""
    age: int
    gender: int
    race: int

    @property
    def age_label(self) -> int: ...


@dataclass(frozen=True)
class Task:
    name: str                        # "age": lists data/DEF/age_{train,test}.txt, LMDBs data/lmdb/age_*_lmdb
    net: str                         # "AgeNet": prototxt/AgeNet_*.prototxt, models/AgeNet/, graph/AgeNet.xml
    classes: tuple[str, ...]         # class names in output order
    label: Callable[[Entry], int]    # the class of a dataset entry
    ordinal: bool = False            # classes are ordered: test reports the 1-off accuracy
    fine_tune_from: str | None = None  # a task whose newest snapshot its training starts from by default
    table_rule: int | None = None    # dashes under its class table (build_dataset.py); None: the header's width
    prior_weight: float = 0.0        # compile --prior's default weight (agegender.deploy.prior): 0 none, 1 Bayes

    def list_name(self, split: str) -> str:
        return f"{self.name}_{split}.txt"

    def lmdb_name(self, split: str) -> str:
        return f"{self.name}_{split}_lmdb"

    def count_table(self, labels: list[int]) -> list[str]:
        """The original build_dataset.py's table: title, class names, a rule, the count of each class."""
        header = "\t".join(self.classes)
        counts = [sum(label == c for label in labels) for c in range(len(self.classes))]
        return [f"Number of image per {self.name} class:", header, "-" * (self.table_rule or len(header.expandtabs())),
                "\t".join(map(str, counts))]


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered already")
    if any(other.net == task.net for other in TASKS.values()):
        raise ValueError(f"net {task.net!r} already belongs to another task")
    TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    """Drop a task (tests that register a toy head clean up with it)."""
    del TASKS[name]


def get(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise AgegenderError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}") from None


def names() -> list[str]:
    return list(TASKS)


def by_outputs(n_classes: int) -> Task | None:
    """The one task with ``n_classes`` classes, None when none or several have that many."""
    matches = [task for task in TASKS.values() if len(task.classes) == n_classes]
    return matches[0] if len(matches) == 1 else None


def training_order() -> list[Task]:
    """The tasks, each after the task it fine-tunes from, else in registration order."""
    order: list[Task] = []

    def visit(task: Task, path: tuple[str, ...]) -> None:
        if task in order:
            return
        if task.name in path:
            raise AgegenderError(f"tasks fine-tune from each other in a circle: {' -> '.join((*path, task.name))}")
        if task.fine_tune_from is not None:
            visit(get(task.fine_tune_from), (*path, task.name))
        order.append(task)

    for task in TASKS.values():
        visit(task, ())
    return order


register(Task("age", "AgeNet", AGE_CLASSES, label=lambda face: face.age_label, ordinal=True,
              fine_tune_from="gender", table_rule=62, prior_weight=0.5))  # 0.5: validation macro-F1, 2 seeds
register(Task("gender", "GenderNet", GENDER_CLASSES, label=lambda face: face.gender))  # UTKFace: 0 male, 1 female


def _doors(argv: list[str]) -> Iterator[str]:
    """``python -m agegender.tasks``: one "NET TASK" line per task (compile2Movidius.sh loops over them);
    ``... fine-tune-weights NET [MODELS]``: the newest snapshot to start NET's training from, if any."""
    if not argv:
        yield from (f"{task.net} {task.name}" for task in TASKS.values())
        return
    if argv[0] == "fine-tune-weights" and len(argv) in (2, 3):
        from agegender.fileio import newest_snapshot

        task = next((t for t in TASKS.values() if t.net == argv[1]), None)
        if task is None:
            raise AgegenderError(f"no task has the net {argv[1]!r}; the nets are "
                                 f"{', '.join(t.net for t in TASKS.values())}")
        source = TASKS[task.fine_tune_from].net if task.fine_tune_from else None
        models = argv[2] if len(argv) == 3 else "models"
        try:
            yield str(newest_snapshot(f"{models}/{source}")) if source else ""
        except AgegenderError:
            yield ""  # nothing trained yet: start from the fillers
        return
    raise AgegenderError("usage: python -m agegender.tasks [fine-tune-weights NET [MODELS]]")


if __name__ == "__main__":
    from agegender.errors import run_guarded

    sys.exit(run_guarded("agegender.tasks", lambda args: print("\n".join(_doors(args))), sys.argv[1:]))
