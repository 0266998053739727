"""Silence what libraries write straight to file descriptor 2 (OpenCV's FFmpeg reader, the absl log of
OpenVINO's TensorFlow frontend), so that a failure is reported once, by us, in one line."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """stderr (the file descriptor, not only sys.stderr) goes to /dev/null inside the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
