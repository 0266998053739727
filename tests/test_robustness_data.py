"""Fault sweep (issue 15), data side: LMDB sets switched together and stamped with their lists, kills at
controlled points, LMDB maps under ulimit -v, stale temporaries, folder permissions, bad arguments."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.caffe import read_lmdb
from agegender.cli import main
from agegender.errors import AgegenderError
from agegender.fileio import atomic_directory, clean_stale, write_bytes_atomic
from agegender.lmdb_set import check_lmdb_set
from agegender.train.data import LmdbRecords

from conftest import ROOT, assert_one_line_error, run_cli

LMDBS = [f"{task}_{split}_lmdb" for split in ("train", "test") for task in ("age", "gender")]


def small_dataset(root: Path, count: int = 12) -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(root / f"img/{i:02d}.png"), np.full((8, 8, 3), 10 * i, np.uint8))
    return root


def write_lists(root: Path, test: range, count: int = 12) -> Path:
    lists = root / "DEF"
    lists.mkdir(exist_ok=True)
    for split, members in (("train", [i for i in range(count) if i not in test]), ("test", list(test))):
        for task in ("age", "gender"):
            (lists / f"{task}_{split}.txt").write_text("".join(f"img/{i:02d}.png {i % 2}\n" for i in members))
    return lists


def lmdb_args(root: Path) -> list[str]:
    return ["lmdb", "--lists", str(root / "DEF"), "--out", str(root / "lmdb"), "--root", str(root),
            "--resize", "8", "--workers", "1", "--faces", "none"]  # tiny whole images


def keys(lmdb: Path) -> set[str]:
    return {key.decode().split("_", 1)[1] for key, _ in read_lmdb(lmdb)}


def crashed_run(args: list[str], point: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), AGEGENDER_CRASH_AT=point)
    return subprocess.run([sys.executable, "-m", "agegender", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_lmdb_set_killed_mid_run_after_a_resplit_is_never_mixed(tmp_path):
    """Item 1: kill -9 while the test split is written leaves the old set whole; a kill between the final
    renames leaves a mixed set that mean, train and test refuse in one line; a re-run repairs both."""
    small_dataset(tmp_path)
    write_lists(tmp_path, range(8, 12))
    assert main(lmdb_args(tmp_path)) == 0
    before = {name: (tmp_path / "lmdb" / name / "data.mdb").read_bytes() for name in LMDBS}
    write_lists(tmp_path, range(0, 4))  # build_dataset.py --seed 7: another split

    assert crashed_run(lmdb_args(tmp_path), "lmdb-test").returncode == -9  # kill -9 during the test split
    assert {name: (tmp_path / "lmdb" / name / "data.mdb").read_bytes() for name in LMDBS} == before
    check_lmdb_set([tmp_path / "lmdb/age_train_lmdb"])  # still one set: the old one

    assert crashed_run(lmdb_args(tmp_path), "swap").returncode == -9  # kill -9 between the renames
    train, test = tmp_path / "lmdb/age_train_lmdb", tmp_path / "lmdb/age_test_lmdb"
    assert keys(train) & keys(test)  # test images in the training LMDB: what must never be used
    assert_one_line_error(run_cli("mean", "--lmdb", train, "--out", tmp_path / "mean"), "different splits",
                          "create_lmdb.sh again")
    with pytest.raises(AgegenderError, match="different splits"):
        LmdbRecords(str(test))
    assert not (tmp_path / "mean").exists()

    stale = [p for p in (tmp_path / "lmdb").iterdir() if p.name.startswith(".")]
    assert stale  # the killed runs' temporaries ...
    assert main(lmdb_args(tmp_path)) == 0
    assert not [p for p in (tmp_path / "lmdb").iterdir() if p.name.startswith(".")]  # ... are gone after a re-run
    assert not keys(train) & keys(test)
    check_lmdb_set([train, test])


def test_lmdb_map_grows_from_a_small_start_and_builds_under_ulimit_v(tmp_path):
    """Item 9: no fixed 1 TiB map: 500 records of 192 KiB (96 MB, the map doubling from 64 MiB) written under a
    1 GiB address-space limit."""
    script = (
        "import resource, numpy as np\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from agegender.caffe import array_to_datum, write_lmdb\n"
        f"print(write_lmdb({str(tmp_path / 'big_lmdb')!r}, ((b'%08d' % i, array_to_datum("
        "np.full((3, 256, 256), i % 256, np.uint8), i)) for i in range(500))))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "500", proc.stderr
    records = list(read_lmdb(tmp_path / "big_lmdb"))
    assert len(records) == 500 and records[-1][1].data[:1] == bytes([499 % 256])


def test_stale_temporaries_of_killed_runs_are_removed_but_not_those_of_live_runs(tmp_path):
    """Item 11: ``.NAME.<pid>.*.tmp`` of a dead process go at the next write; a live process's stay."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".out.bin.{dead_pid}.abc.tmp").write_bytes(b"x" * 100)
    (tmp_path / f".lmdb.{dead_pid}.abc.tmp").mkdir()
    (tmp_path / f".clip.avi.{dead_pid}.tmp.avi").write_bytes(b"video")  # run_inference's video temporary
    (tmp_path / f".out.bin.{os.getppid()}.abc.tmp").write_bytes(b"live")
    write_bytes_atomic(tmp_path / "out.bin", b"data")
    with atomic_directory(tmp_path / "lmdb") as folder:
        (folder / "data.mdb").write_bytes(b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".out.bin.{os.getppid()}.abc.tmp", "lmdb", "out.bin"]
    # a folder swap cut between its two renames: the old folder is put back
    (tmp_path / "lmdb").rename(tmp_path / ".lmdb.old")
    clean_stale(tmp_path / "lmdb")
    assert (tmp_path / "lmdb/data.mdb").is_file() and not (tmp_path / ".lmdb.old").exists()


def test_output_folders_have_the_umask_permissions_not_mkdtemp_0700(tmp_path):
    """Item 12."""
    umask = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "data") as folder:
            (folder / "x").write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("args, fragment", [
    (["lmdb", "--seed", "-1"], "--seed: must be 0 or more"),
    (["dataset", "build", "--seed", "-3"], "--seed: must be 0 or more"),
    (["lmdb", "--resize", "100000"], "larger than 4096x4096"),
])
def test_bad_arguments_are_usage_errors_not_internal_errors(args, fragment, capsys):
    """Item 7: negative --seed (build, lmdb), --resize 100000."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and "internal error" not in err and "Traceback" not in err


def test_malformed_arguments_are_one_line_naming_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["lmdb", "--seed", "abc"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["agegender lmdb: error: argument --seed: invalid non_negative_int value: 'abc' "
                                "(see agegender lmdb --help)"]


def test_a_closed_stdout_stops_quietly_with_sigpipes_code(capsys):
    """`run_inference.py ... | head -1`: the reader goes away; no "internal error", exit 141 as a shell tool."""
    from agegender.errors import run_guarded

    def run(_):
        raise BrokenPipeError(32, "Broken pipe")
    assert run_guarded("run_inference.py", run, None) == 141
    assert capsys.readouterr().err == ""
