"""`python -m agegender train` end to end on a tiny LMDB: learning, Caffe's log lines, snapshots, resume,
signals, fine-tuning, errors, and two-process DistributedDataParallel."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from agegender.caffe import array_to_datum, read_solverstate, write_lmdb, write_mean
from agegender.cli import main
from agegender.layers.net import Net, load_deploy
from agegender.layers.torch_net import TorchNet
from agegender.train.data import data_feeds

from conftest import ROOT, assert_one_line_error, run_cli

NET = """name: "Tiny"
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ {crop} mirror: {mirror} mean_file: "{dir}/mean.binaryproto" scale: 0.02 }}
  data_param {{ source: "{dir}/train_lmdb" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ {crop} mean_file: "{dir}/mean.binaryproto" scale: 0.02 }}
  data_param {{ source: "{dir}/test_lmdb" batch_size: 10 backend: LMDB }} }}
{body}
layer {{ name: "accuracy" type: "Accuracy" bottom: "{last}" bottom: "label" top: "accuracy" include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "{last}" bottom: "label" top: "loss" }}
"""
BODY = """layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1" lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layer { name: "fc" type: "InnerProduct" bottom: "norm1" top: "fc" inner_product_param { num_output: FC_OUTPUTS
  weight_filler { type: "xavier" } } }
"""
DROPOUT = 'layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.2 } }\n'
DEPLOY = """name: "Tiny"
input: "data" input_dim: 1 input_dim: 3 input_dim: {size} input_dim: {size}
{body}layer {{ name: "prob" type: "Softmax" bottom: "fc" top: "prob" }}
"""
SOLVER = {"base_lr": 0.01, "lr_policy": '"step"', "gamma": 0.5, "stepsize": 40, "momentum": 0.9,
          "weight_decay": 0.0005, "display": 20, "max_iter": 100, "random_seed": 7}


def write_images(path: Path, count: int, seed: int, labels=lambda i: i % 3) -> None:
    """Noise with a bright band whose position is the label: learnable in a few dozen iterations."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        image = rng.integers(0, 60, (3, 12, 12)).astype(np.uint8)
        image[:, 4 * (i % 3):4 * (i % 3) + 4, :] += 150
        records.append((f"{i:08d}".encode(), array_to_datum(image, labels(i))))
    write_lmdb(path, records)


def tiny_project(directory: Path, *, batch: int = 8, crop: bool = True, dropout: bool = True, fc_outputs: int = 3,
                 net_name: str = "net", **solver) -> Path:
    """LMDBs, mean, train/test and deploy prototxts and a solver in ``directory``; returns the solver path."""
    if not (directory / "train_lmdb").exists():
        write_images(directory / "train_lmdb", 48, 0)
        write_images(directory / "test_lmdb", 30, 1)
        write_mean(np.full((3, 12, 12), 80, np.float32), directory / "mean.binaryproto")
    body = BODY.replace("FC_OUTPUTS", str(fc_outputs)) + (DROPOUT if dropout else "")
    (directory / f"{net_name}.prototxt").write_text(NET.format(
        crop="crop_size: 10" if crop else "", mirror="true" if crop else "false", dir=directory, batch=batch,
        body=body, last="fc"))
    (directory / "deploy.prototxt").write_text(DEPLOY.format(size=10 if crop else 12, body=body))
    fields = {**SOLVER, "net": f'"{directory / net_name}.prototxt"', "snapshot_prefix": f'"{directory}/snap/tiny"',
              **solver}
    text = "".join(f"{k}: {v}\n" for k, v in fields.items() for v in (v if isinstance(v, list) else [v]))
    (directory / "solver.prototxt").write_text(text)
    return directory / "solver.prototxt"


def caffe_parse_log(log: str):
    """What Caffe's tools/extra/parse_log.py extracts, with its regexes and its glog time parsing."""
    regex_iteration = re.compile(r"Iteration (\d+)")
    regex_train = re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)")
    regex_test = re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)")
    regex_lr = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")
    iteration, rate, train, test, rates = -1, float("nan"), [], [], []
    for line in log.splitlines():
        match = regex_iteration.search(line)
        if match:
            iteration = int(match.group(1))
        if iteration == -1:
            continue
        fields = line.strip().split()  # parse_log's extract_datetime_from_line: IndexError on a blank line
        try:
            datetime.strptime(f"{fields[0][1:5]} {fields[1]}", "%m%d %H:%M:%S.%f")
        except ValueError:
            continue
        if regex_lr.search(line):
            rate = float(regex_lr.search(line).group(1))
            rates.append((iteration, rate))
        for regex, rows in ((regex_train, train), (regex_test, test)):
            match = regex.search(line)
            if match:
                rows.append((iteration, match.group(2), float(match.group(3))))
    return train, test, rates


def test_training_learns_logs_like_caffe_and_writes_caffemodels_opencv_reads(tmp_path):
    solver = tiny_project(tmp_path, max_iter=100, snapshot=40, test_iter=3, test_interval=50, average_loss=10)
    proc = run_cli("train", "--solver", solver, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    train, test, rates = caffe_parse_log(proc.stderr)
    assert [it for it, name, _ in train] == [0, 20, 40, 60, 80] and {name for _, name, _ in train} == {"loss"}
    assert rates == [(0, 0.01), (20, 0.01), (40, 0.005), (60, 0.005), (80, 0.0025)]
    assert [(it, name) for it, name, _ in test] == [(i, n) for i in (0, 50, 100) for n in ("accuracy", "loss")]
    assert train[-1][2] < 0.05, "the smoothed training loss goes near zero"
    assert dict((n, v) for it, n, v in test if it == 100) == {"accuracy": 1.0, "loss": pytest.approx(0, abs=0.05)}
    assert re.search(r"Iteration 80 \([\d.e+-]+ iter/s, [\d.e+-]+s/20 iters\), loss = [\d.e+-]+\n", proc.stderr)
    assert re.search(r"\] progress: 81/100 iterations \(81\.0%\), [\d.]+ images/s, \d+% of it waiting for data, "
                     r"ETA \d+m\d\ds\n", proc.stderr)
    assert "Optimization Done." in proc.stderr
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == [
        f"tiny_iter_{i}.{ext}" for i in (100, 40, 80) for ext in ("caffemodel", "solverstate")]
    state = read_solverstate(tmp_path / "snap/tiny_iter_100.solverstate")
    assert state.iter == 100 and state.learned_net == f"{tmp_path}/snap/tiny_iter_100.caffemodel"

    deploy, weights = load_deploy(tmp_path / "deploy.prototxt", tmp_path / "snap/tiny_iter_100.caffemodel")
    ours = TorchNet(deploy, weights).eval()
    (feed,) = data_feeds(Net.from_file(tmp_path / "net.prototxt", "TEST"), 0)
    images = feed.batch(0)["data"].numpy()
    opencv = cv2.dnn.readNetFromCaffe(str(tmp_path / "deploy.prototxt"),
                                      str(tmp_path / "snap/tiny_iter_100.caffemodel"))
    opencv.setInput(images)
    with torch.no_grad():
        expected = ours({"data": torch.from_numpy(images)})["prob"].numpy()
    assert np.abs(opencv.forward() - expected).max() <= 1e-4


def losses(log: str) -> dict[int, float]:
    return {int(i): float(v) for i, v in re.findall(r"Iteration (\d+) \([^)]*\), loss = (\S+)", log)}


def test_a_resumed_run_follows_the_uninterrupted_one(tmp_path, capsys):
    """Data order, crops, mirrors, dropout masks and solver history all resume: the losses agree exactly."""
    solver = tiny_project(tmp_path, max_iter=16, snapshot=8, display=1, type='"Adam"', lr_policy='"multistep"',
                          stepvalue=[4, 10], momentum=0.9)
    assert main(["train", "--solver", str(solver), "--workers", "1"]) == 0
    whole = losses(capsys.readouterr().err)
    final = (tmp_path / "snap/tiny_iter_16.caffemodel").read_bytes()
    (tmp_path / "snap/tiny_iter_16.caffemodel").unlink()
    assert main(["train", "--solver", str(solver), "--snapshot", str(tmp_path / "snap/tiny_iter_8.solverstate")]) == 0
    log = capsys.readouterr().err
    resumed = losses(log)
    assert "Restoring previous solver status from" in log and sorted(resumed) == list(range(8, 16))
    assert max(abs(resumed[i] - whole[i]) for i in resumed) <= 1e-6
    assert (tmp_path / "snap/tiny_iter_16.caffemodel").read_bytes() == final


def read_until(proc: subprocess.Popen, pattern: str, lines: list[str], deadline: float) -> re.Match:
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(lines)}")


def test_sighup_snapshots_and_goes_on_sigint_snapshots_and_stops(tmp_path):
    solver = tiny_project(tmp_path, max_iter=100000, display=1)
    proc = subprocess.Popen([sys.executable, "-m", "agegender", "train", "--solver", str(solver)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE, text=True)
    lines, deadline = [], time.monotonic() + 60
    try:
        read_until(proc, r"Iteration 3 \(", lines, deadline)
        proc.send_signal(signal.SIGHUP)
        hup = read_until(proc, r"Snapshotting solver state to .*tiny_iter_(\d+)\.solverstate", lines, deadline)
        hup_iter = int(hup[1])
        read_until(proc, rf"Iteration {hup_iter + 2} \(", lines, deadline)  # and training went on
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130  # stopped, not finished: `train_a && train_b` must not go on
    finally:
        proc.kill()
    log = "".join(lines) + proc.stderr.read()
    stop_iter = int(re.findall(r"tiny_iter_(\d+)\.solverstate", log)[-1])
    assert stop_iter > hup_iter + 1 and "Optimization stopped early." in log and "Optimization Done." not in log
    for iteration in (hup_iter, stop_iter):
        assert read_solverstate(tmp_path / f"snap/tiny_iter_{iteration}.solverstate").iter == iteration


def test_fine_tuning_copies_layers_by_name_and_names_the_layer_that_does_not_fit(tmp_path, capsys):
    solver = tiny_project(tmp_path, max_iter=2, display=1)
    assert main(["train", "--solver", str(solver)]) == 0
    base = tmp_path / "snap/tiny_iter_2.caffemodel"
    capsys.readouterr()

    renamed = tmp_path / "renamed"  # a new task: fc renamed and widened, so it starts from its filler
    renamed.mkdir()
    solver = tiny_project(renamed, max_iter=1, display=1, fc_outputs=5)
    net_text = (renamed / "net.prototxt").read_text().replace('"fc"', '"fc_new"')
    (renamed / "net.prototxt").write_text(net_text)
    assert main(["train", "--solver", str(solver), "--weights", str(base.parent)]) == 0  # a folder: its newest
    assert f"Copied weights of 1 layer(s) from {base}: conv1; initialised by fillers: fc_new" in capsys.readouterr().err

    (renamed / "net.prototxt").write_text(net_text.replace('"fc_new"', '"fc"'))
    assert main(["train", "--solver", str(solver), "--weights", str(base)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "layer 'fc'" in error and "rename the layer" in error


@pytest.mark.parametrize("problem,fragments", [
    ("both", ["--snapshot", "--weights", "not both"]),
    ("workers", ["--workers must be >= 0", "-1"]),
    ("prefix", ["cannot write snapshots", "snapshot_prefix"]),
    ("lmdb", ["LMDB not found", "missing_lmdb"]),
    ("labels", ["label 5", "3 classes"]),
    ("solver", ["exactly one of net"]),
])
def test_bad_setups_are_one_line_errors(tmp_path, capsys, problem, fragments):
    solver = tiny_project(tmp_path, max_iter=3)
    args = ["train", "--solver", str(solver)]
    if problem == "both":
        args += ["--weights", "a.caffemodel", "--snapshot", "a.solverstate"]
    elif problem == "workers":
        args += ["--workers", "-1"]
    elif problem == "prefix":
        (tmp_path / "file").write_text("")
        solver.write_text(solver.read_text().replace(f'"{tmp_path}/snap/tiny"', f'"{tmp_path}/file/tiny"'))
    elif problem == "lmdb":
        net = tmp_path / "net.prototxt"
        net.write_text(net.read_text().replace(f"{tmp_path}/train_lmdb", f"{tmp_path}/missing_lmdb"))
    elif problem == "labels":
        write_images(tmp_path / "train_lmdb", 48, 0, labels=lambda i: 5 if i == 9 else i % 3)
    else:
        solver.write_text("base_lr: 0.1\n")
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Solving" not in "".join(lines) or problem == "labels"
    assert all(f in lines[-1] for f in fragments), lines[-1]
    assert "Traceback" not in "".join(lines)


def test_cli_error_is_a_single_line(tmp_path):
    proc = run_cli("train", "--solver", tmp_path / "missing.prototxt")
    assert_one_line_error(proc, "solver prototxt not found", "missing.prototxt")


def test_two_process_distributed_data_parallel_equals_one_process_with_the_whole_batch(tmp_path):
    """torchrun, 2 CPU ranks (gloo) of batch 4: each reads its shard, DDP averages the gradients; the weights
    match one process with batch 8 (deterministic net: no crops, mirrors or dropout)."""
    single = tiny_project(tmp_path, batch=8, crop=False, dropout=False, max_iter=6, display=3)
    assert run_cli("train", "--solver", single, "--workers", "0").returncode == 0
    (tmp_path / "snap").rename(tmp_path / "single")
    double = tiny_project(tmp_path, batch=4, crop=False, dropout=False, max_iter=6, display=3)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "agegender", "train", "--solver", str(double), "--workers", "0", "--device", "cpu"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("Solving Tiny") == 1 and "x 2 ranks" in proc.stderr  # rank 0 logs
    ours = Net.from_file(tmp_path / "deploy.prototxt")
    one = ours.weights_from(tmp_path / "single/tiny_iter_6.caffemodel")
    two = ours.weights_from(tmp_path / "snap/tiny_iter_6.caffemodel")
    for layer in one:
        for a, b in zip(one[layer], two[layer]):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=layer)
    torch.manual_seed(7)  # the solver's random_seed: the fillers both runs started from
    start = TorchNet(Net.from_file(tmp_path / "net.prototxt", "TRAIN")).layer("fc").blobs[0].detach().numpy()
    assert np.abs(one["fc"][0] - start).max() > 1e-3, "the runs trained"


def test_a_stop_requested_while_testing_stops_before_the_next_iteration(tmp_path, monkeypatch):
    """Caffe's Solver::Step leaves the loop right after TestAll when a stop came in: no further update."""
    from agegender.train.session import Options, build_trainer
    from agegender.train.trainer import SignalRequests, Trainer

    solver = tiny_project(tmp_path, max_iter=10, test_iter=1, test_interval=3, test_initialization="false")
    trainer = build_trainer(Options(str(solver), workers=0))
    tested = []

    def test_then_stop(self, index):
        tested.append(self.solver.iter)
        self.signals.pending = SignalRequests.STOP

    monkeypatch.setattr(Trainer, "test", test_then_stop)
    trainer.solve()
    assert tested == [3] and trainer.solver.iter == 3 and trainer.stopped
    assert read_solverstate(tmp_path / "snap/tiny_iter_3.solverstate").iter == 3
    assert not (tmp_path / "snap/tiny_iter_4.solverstate").exists()
