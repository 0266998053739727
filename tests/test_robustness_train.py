"""Fault sweep (issue 15), training side: SIGTERM to the whole process group (as systemd, Slurm and a closing
terminal send it), the exit code of a stopped training, absurd sizes refused before any work."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from test_train import read_until, tiny_project

from agegender.caffe import read_solverstate

from conftest import ROOT, assert_one_line_error, run_cli


def test_sigterm_to_the_process_group_snapshots_and_exits_143(tmp_path):
    """Items 2 and 13: the DataLoader worker gets the SIGTERM too; it must leave the stop to the trainer,
    which snapshots and exits 143 (not 0: the training is not finished)."""
    solver = tiny_project(tmp_path, max_iter=100000, display=1)
    proc = subprocess.Popen([sys.executable, "-m", "agegender", "train", "--solver", str(solver), "--workers", "1"],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        read_until(proc, r"Iteration 3 \(", lines, time.monotonic() + 60)
        os.killpg(proc.pid, signal.SIGTERM)  # kill -TERM -- -PGID: trainer and worker alike
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    log = "".join(lines) + proc.stderr.read()
    assert code == 143, log
    assert "internal error" not in log and "killed by signal" not in log and "Traceback" not in log
    stop_iter = int(re.findall(r"tiny_iter_(\d+)\.solverstate", log)[-1])
    assert stop_iter >= 3 and "Optimization stopped early." in log
    assert read_solverstate(tmp_path / f"snap/tiny_iter_{stop_iter}.solverstate").iter == stop_iter


@pytest.mark.parametrize("change, fragments", [
    ({"batch": 2000000000}, ("needs at least", "blob 'data' 2000000000x3x10x10", "lower batch_size")),
    ({"fc_outputs": 2000000000}, ("needs at least", "layer 'fc' (InnerProduct) weights 2000000000x64",
                                  "lower batch_size or num_output")),
])
def test_absurd_batch_size_or_num_output_is_one_line_before_any_work(tmp_path, change, fragments):
    """Items 7 (num_output: 2000000000) and 8 (batch_size: 2000000000: was a worker's 26-line traceback)."""
    solver = tiny_project(tmp_path, max_iter=2, **change)
    proc = run_cli("train", "--solver", solver, "--workers", "1")
    proc.stderr = "".join(line for line in proc.stderr.splitlines(True) if not re.match(r"[IW]\d{4} ", line))
    assert_one_line_error(proc, *fragments)  # Caffe's own info lines aside
    assert not (tmp_path / "snap").exists() or not list((tmp_path / "snap").iterdir())
