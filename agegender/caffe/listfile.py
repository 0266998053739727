"""convert_imageset's image lists: one ``path label`` line per image (the path may hold spaces; the label is
the integer after the last one), as build_dataset.py writes them in data/DEF/."""
from __future__ import annotations

import os
from pathlib import Path

from agegender.errors import AgegenderError


def read_list(path: str | os.PathLike) -> list[tuple[str, int]]:
    """Every ``(path, label)`` of the list; a missing file or a bad line is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise AgegenderError(f"list not found: {path} (build it with build_dataset.py)")
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            image, _, label = line.strip().rpartition(" ")
            if not image or not label.isdigit():
                raise AgegenderError(f"{path} line {number}: expected 'path label', got {line.strip()[:80]!r}")
            lines.append((image, int(label)))
    return lines
