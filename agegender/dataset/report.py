"""Bad input files: one stderr line each (path and reason), counted for the stage's summary line."""
from __future__ import annotations

import sys
from collections import Counter


class SkipReport:
    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.reasons: Counter[str] = Counter()

    def skip(self, path: str, reason: str, detail: str = "") -> None:
        """Report one skipped file; ``reason`` is the short category the summary counts."""
        self.reasons[reason] += 1
        if self.stream.isatty():  # clear a progress line being redrawn there
            self.stream.write("\r\x1b[K")
        self.stream.write(f"skipped {path}: {reason}{': ' + detail if detail else ''}\n")
        self.stream.flush()

    @property
    def count(self) -> int:
        return sum(self.reasons.values())

    def describe(self) -> str:
        """'0 skipped' or '3 skipped (2 bad name, 1 empty file)'."""
        if not self.reasons:
            return "0 skipped"
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"{self.count} skipped ({parts})"
