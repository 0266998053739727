"""Caffe's log lines in glog's format, so parse_log.py and friends read our logs as they read Caffe's.

glog writes ``I1123 08:30:00.123456 12345 solver.cpp:218] message`` to stderr; parsers take the date and
time from the first two fields and the numbers from the message.
"""
from __future__ import annotations

import logging
import sys
from datetime import datetime

LOGGER_NAME = "agegender.train"


class GlogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created)
        return (f"{record.levelname[0]}{when:%m%d %H:%M:%S}.{when.microsecond:06d} {record.process} "
                f"{record.filename}:{record.lineno}] {record.getMessage()}")


def setup_logging(enabled: bool = True, stream=None) -> logging.Logger:
    """The trainer's logger, writing glog lines to ``stream`` (stderr); only warnings when not ``enabled``
    (distributed ranks other than 0)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(GlogFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if enabled else logging.WARNING)
    logger.propagate = False
    return logger


def g(value: float) -> str:
    """A number as C++ streams print it (6 significant digits), as in Caffe's messages."""
    return f"{value:.6g}"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
