"""Silence what libraries write straight to file descriptor 2 (OpenCV's FFmpeg reader and libjpeg, the absl log
of OpenVINO's TensorFlow frontend), so that a failure is reported once, by us, in one line.

Worker threads decode at the same time, so the redirection is shared: the first block to enter points fd 2 at
/dev/null, the last to leave restores it (a per-thread save/restore could restore another thread's /dev/null
for good). Meanwhile ``sys.stderr`` writes to the saved descriptor, so our own messages (a skipped file, the
progress line) still reach the terminal while the libraries are silenced.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_saved_stream = None


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null inside the block (nested and concurrent blocks share it);
    ``sys.stderr`` keeps writing to the real stderr."""
    global _depth, _saved_fd, _saved_stream
    with _lock:
        if _depth == 0:
            sys.stderr.flush()
            _saved_fd = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            _saved_stream = sys.stderr
            sys.stderr = os.fdopen(os.dup(_saved_fd), "w", buffering=1, encoding=_saved_stream.encoding or "utf-8",
                                   errors="backslashreplace")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                sys.stderr.flush()
                sys.stderr.close()
                sys.stderr = _saved_stream
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = _saved_stream = None
