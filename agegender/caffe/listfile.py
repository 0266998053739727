"""convert_imageset's image lists: one ``path label`` line per image (the path may hold spaces; the label is
the integer after the last one), as build_dataset.py writes them in data/DEF/."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from agegender.errors import AgegenderError


def read_list(path: str | os.PathLike, on_bad: Callable[[str, str], None] | None = None
              ) -> list[tuple[str, int]]:
    """Every ``(path, label)`` of the list; a missing file is a one-line error, and so is a bad line unless
    ``on_bad(where, line)`` takes it (the LMDB stage reports and skips it, as convert_imageset logs and goes on)."""
    path = Path(path)
    if not path.is_file():
        raise AgegenderError(f"list not found: {path} (build it with build_dataset.py)")
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            image, _, label = line.strip().rpartition(" ")
            if not image or not (label.isascii() and label.isdigit()):
                if on_bad is None:
                    raise AgegenderError(f"{path} line {number}: expected 'path label', got {line.strip()[:80]!r}")
                on_bad(f"{path}:{number}", line.strip())
                continue
            lines.append((image, int(label)))
    return lines
