"""The one exception type a user sees: a single line saying what, where and what to do; ``run_guarded`` prints it."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import Any, Callable


class AgegenderError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line and exits."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is, so that every stage cleans up the same way."""


def _terminate(_signum, _frame) -> None:
    raise Terminated


def run_guarded(prog: str, run: Callable[[Any], int | None], args: Any) -> int:
    """Run a command; bad input becomes one line on stderr and its exit code, never a traceback. SIGTERM
    (systemd, Slurm, kill) is handled as Ctrl-C: temporaries removed, exit code 143 (130 for Ctrl-C)."""
    try:
        previous, installed = signal.signal(signal.SIGTERM, _terminate), True
    except ValueError:  # not the main thread (an embedding application): its own handlers stay
        previous, installed = None, False
    try:
        return run(args) or 0
    except AgegenderError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # stdout closed by its reader (`| head`): stop quietly, as a shell tool does
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"{prog}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as exc:  # a bug, not bad input: one line unless the user asks for the traceback
        if os.environ.get("AGEGENDER_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {exc} "
              f"(set AGEGENDER_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (what, and where to read more), not the whole usage block first:
    "run_inference.py: error: argument --track: invalid int value: 'abc' (see run_inference.py --help)"."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def non_negative_int(text: str) -> int:
    """argparse type of seeds and counts: an integer >= 0 (argparse turns the ValueError into its usage line)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value
