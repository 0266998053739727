"""A small progress line for long work: redrawn in place on a terminal, a line every 10% otherwise."""
from __future__ import annotations

import sys
import time


class Progress:
    """``silent``: count and time only, print nothing (the caller's own lines already show the progress)."""

    def __init__(self, total: int, label: str, unit: str = "items", silent: bool = False):
        self.total, self.label, self.unit = max(total, 0), label, unit
        self.stream = sys.stderr
        self.silent = silent
        self.done = 0
        self.start = time.perf_counter()
        self._tty = self.stream.isatty()
        self._last_decile = -1

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self.silent:
            return
        if self._tty:
            self.stream.write("\r" + self._line(note) + "\x1b[K")
            self.stream.flush()
        elif self.total:
            decile = 10 * self.done // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(self._line(note) + "\n")

    def close(self) -> float:
        """Finish the line; returns the elapsed seconds."""
        if not self.silent:
            if self._tty:
                self.stream.write("\r" + self._line("") + "\x1b[K\n")
            elif self._last_decile < 10:
                self.stream.write(self._line("") + "\n")
            self.stream.flush()
        return time.perf_counter() - self.start

    def _line(self, note: str) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = f"{100 * self.done / self.total:5.1f}% " if self.total else ""
        eta = f", ETA {(self.total - self.done) / rate:.0f}s" if rate and self.total and self.done < self.total else ""
        count = f"{self.done}/{self.total}" if self.total else str(self.done)  # total 0: not known beforehand
        return f"{self.label}: {pct}{count} {self.unit} ({rate:.1f}/s, {elapsed:.1f}s{eta}) {note}".rstrip()
