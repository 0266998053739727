"""The one exception type a user sees: a single line saying what, where and what to do; ``run_guarded`` prints it."""
from __future__ import annotations

import os
import sys
from typing import Any, Callable


class AgegenderError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line and exits."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def run_guarded(prog: str, run: Callable[[Any], int | None], args: Any) -> int:
    """Run a command; bad input becomes one line on stderr and its exit code, never a traceback."""
    try:
        return run(args) or 0
    except AgegenderError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: one line unless the user asks for the traceback
        if os.environ.get("AGEGENDER_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {exc} "
              f"(set AGEGENDER_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1
