"""Shared fixtures: the real data in ../shared (skipped with a reason when absent) and a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AGEGENDER_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "caffe-fixtures"
UTKFACE = SHARED / "datasets" / "utkface-asian"
MALFORMED = SHARED / "datasets" / "utkface-malformed"


def need_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: real fixtures live in ../shared beside the checkout (present in CI)")
    return path


@pytest.fixture
def fixtures() -> Path:
    return need_shared(FIXTURES)


@pytest.fixture
def utkface() -> Path:
    return need_shared(UTKFACE)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m agegender ARGS`` as a user would; returns the finished process (text mode)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("AGEGENDER_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "agegender", *map(str, args)], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    """The process failed with ``code`` and a single stderr line (no traceback) holding every fragment."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
