"""pyproject.toml: the console script resolves, and its pinned extras are those of requirements*.txt."""
from __future__ import annotations

import importlib
import re

import pytest

from conftest import ROOT

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements(name: str) -> set[str]:
    """The pins of a requirements file, following ``-r`` includes."""
    pins = set()
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            pins |= requirements(line[2:].strip())
        elif line:
            pins.add(line)
    return pins


def test_every_pin_is_exact():
    project = pyproject()["project"]
    pins = [*project["dependencies"], *(p for extra in project["optional-dependencies"].values() for p in extra)]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.]*", pin) for pin in pins), pins


def test_extras_match_requirements_files():
    project = pyproject()["project"]
    extras = {name: set(pins) for name, pins in project["optional-dependencies"].items()}
    assert set(project["dependencies"]) == extras["edge"] == requirements("requirements-edge.txt")
    dev_tools = {pin for pin in extras["dev"] if not pin.startswith("grpcio-tools==")}
    assert extras["edge"] | extras["full"] | dev_tools == requirements("requirements.txt")
    assert "grpcio-tools==1.85.1" in extras["dev"] and requirements("requirements-dev.txt") <= extras["dev"]


def test_console_script_is_the_cli(capsys):
    target = pyproject()["project"]["scripts"]["agegender"]
    module, _, function = target.partition(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: agegender") and all(name in out for name in ("train", "compile", "infer"))


def test_ci_runs_the_linter_before_the_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "ruff check" in ci and ci.index("ruff check") < ci.index("run_tests.sh")
    assert any(pin.startswith("ruff==") for pin in requirements("requirements.txt"))
    assert pyproject()["tool"]["ruff"]["line-length"] == 120


def test_version_is_the_package_version():
    import agegender

    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "agegender.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", agegender.__version__)
