"""Caffe's Solver::Solve loop on TorchNets: test, forward/backward (iter_size), display, update, snapshot.

The log lines are Caffe's, word for word, so existing log parsers keep working; a progress line adds
images/s and the time left. Randomness is a function of (random_seed, rank, iteration): the data order,
crops, mirrors and dropout masks of iteration t are the same whether or not the run was resumed at t.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from agegender.caffe import caffe_pb2, read_net, read_solverstate, write_caffemodel, write_solverstate
from agegender.errors import AgegenderError
from agegender.layers.net import Net
from agegender.layers.torch_net import TorchNet
from agegender.train.data import DataFeed, iterate_batches, to_device
from agegender.train.log import duration, g
from agegender.train.solvers import Solver

log = logging.getLogger("agegender.train")


@dataclass
class NetSource:
    """A net the solver names, with the NetState (phase, level, stages) Caffe builds it with."""

    proto: caffe_pb2.NetParameter
    state: caffe_pb2.NetState
    description: str
    source: str

    def build(self) -> Net:
        phase = caffe_pb2.Phase.Name(self.state.phase)
        return Net.from_proto(self.proto, phase, list(self.state.stage), self.state.level, source=self.source)


def _state(phase: int, proto: caffe_pb2.NetParameter, extra: caffe_pb2.NetState | None) -> caffe_pb2.NetState:
    """Caffe's net state: the phase, then the net's own state, then the solver's train_state/test_state."""
    state = caffe_pb2.NetState(phase=phase)
    state.MergeFrom(proto.state)
    if extra is not None:
        state.MergeFrom(extra)
    return state


def solver_nets(param: caffe_pb2.SolverParameter) -> tuple[NetSource, list[NetSource]]:
    """Caffe's InitTrainNet / InitTestNets: which prototxt (or inline net) each net comes from."""
    train_fields = [f for f in ("net", "net_param", "train_net", "train_net_param") if param.HasField(f)]
    if len(train_fields) != 1:
        raise AgegenderError("the solver must name the train net with exactly one of net, net_param, train_net, "
                             f"train_net_param (it gives {', '.join(train_fields) or 'none'})")
    field_name = train_fields[0]
    if field_name.endswith("_param"):
        train_proto, train_source = getattr(param, field_name), f"solver {field_name}"
    else:
        train_proto, train_source = read_net(getattr(param, field_name)), getattr(param, field_name)
    train = NetSource(train_proto, _state(caffe_pb2.TRAIN, train_proto, param.train_state),
                      f"Creating training net from {field_name} {train_source}", train_source)
    tests = [(p, f"solver test_net_param #{i}") for i, p in enumerate(param.test_net_param)]
    tests += [(read_net(path), path) for path in param.test_net]
    generic = param.HasField("net") or param.HasField("net_param")
    if len(param.test_iter) < len(tests) or (not generic and len(param.test_iter) != len(tests)):
        raise AgegenderError(f"the solver gives {len(param.test_iter)} test_iter value(s) "
                             f"for {len(tests)} test net(s); "
                             f"give test_iter once per test net")
    tests += [(train_proto, train_source)] * (len(param.test_iter) - len(tests))
    if param.test_state and len(param.test_state) != len(tests):
        raise AgegenderError(f"the solver gives {len(param.test_state)} test_state(s) for {len(tests)} test net(s)")
    if tests and param.test_interval <= 0:
        raise AgegenderError("the solver has test nets (test_iter) but no test_interval > 0")
    test_sources = []
    for i, (proto, source) in enumerate(tests):
        extra = param.test_state[i] if param.test_state else None
        test_sources.append(NetSource(proto, _state(caffe_pb2.TEST, proto, extra),
                                      f"Creating test net (#{i}) from {source}", source))
    return train, test_sources


class SignalRequests:
    """Caffe's SignalHandler: SIGINT/SIGTERM ask for a snapshot and a stop, SIGHUP for a snapshot."""

    NONE, SNAPSHOT, STOP = 0, 1, 2

    def __init__(self):
        self.pending = self.NONE
        self.stop_signal: int | None = None  # the signal that asked for the stop, for the exit code
        self._previous = {}

    def __enter__(self):
        for sig, action in ((signal.SIGINT, self.STOP), (signal.SIGTERM, self.STOP), (signal.SIGHUP, self.SNAPSHOT)):
            self._previous[sig] = signal.signal(sig, lambda s, _frame, a=action: self._request(s, a))
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _request(self, sig: int, action: int) -> None:
        self.pending = max(self.pending, action)
        if action == self.STOP:
            self.stop_signal = self.stop_signal or sig
            log.info("%s received: snapshotting and stopping after this iteration%s", signal.Signals(sig).name,
                     " (Ctrl-C again aborts without a snapshot)" if sig == signal.SIGINT else "")
            if sig == signal.SIGINT:
                signal.signal(signal.SIGINT, signal.default_int_handler)
        else:
            log.info("%s received: snapshotting after this iteration", signal.Signals(sig).name)

    def exit_code(self) -> int:
        """128 + the signal that stopped the run, as a shell reports a process a signal ended (130 Ctrl-C,
        143 SIGTERM), so `train_GenderNet.sh && train_AgeNet.sh` does not go on from a half-trained net."""
        return 128 + (self.stop_signal or signal.SIGTERM)

    def take(self) -> int:
        """The request since the last call; a stop stays requested."""
        action = self.pending
        if action != self.STOP:
            self.pending = self.NONE
        return action


class SmoothedLoss:
    """Caffe's UpdateSmoothedLoss (average over the last ``average_loss`` iterations), read only at display
    time so the device is not synchronised every iteration."""

    def __init__(self, window: int):
        self.window, self.losses, self.value, self.count = max(window, 1), [], 0.0, 0
        self.pending: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss)

    def read(self) -> float:
        for loss in torch.stack(self.pending).tolist() if self.pending else []:
            if len(self.losses) < self.window:
                self.losses.append(loss)
                self.value = (self.value * (len(self.losses) - 1) + loss) / len(self.losses)
            else:
                index = self.count % self.window
                self.value += (loss - self.losses[index]) / self.window
                self.losses[index] = loss
            self.count += 1
        self.pending.clear()
        return self.value


@dataclass
class Distributed:
    """This process's place in a torchrun launch (rank 0 of 1 otherwise)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    control: object = None  # a gloo group agreeing on signals between ranks

    def agree(self, action: int) -> int:
        """The strongest request any rank received, so every rank snapshots or stops together."""
        if self.world == 1:
            return action
        flag = torch.tensor([action])
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=self.control)
        return int(flag)


@dataclass
class TestPass:
    net: TorchNet
    feeds: list[DataFeed]
    iterations: int


@dataclass
class Trainer:
    param: caffe_pb2.SolverParameter
    net: TorchNet  # the TRAIN net
    model: torch.nn.Module  # ``net``, or its DistributedDataParallel wrapper
    solver: Solver
    feeds: list[DataFeed]
    tests: list[TestPass]
    device: torch.device
    seed: int
    prefix: str
    workers: int
    dist: Distributed = field(default_factory=Distributed)
    label_limits: dict[str, int] = field(default_factory=dict)
    stopped: bool = False
    signals: SignalRequests = field(default_factory=SignalRequests)
    data_seconds: float = 0.0  # spent waiting for the data workers since the last display
    _last_snapshot: int = -1
    _test_seconds: float = 0.0  # spent testing since the last display
    _last_test_pass: float = 0.0

    @property
    def rank0(self) -> bool:
        return self.dist.rank == 0

    @property
    def images_per_iteration(self) -> int:
        return self.feeds[0].batch_size * self.param.iter_size * self.dist.world

    def solve(self) -> None:
        """Caffe's Solver::Solve."""
        p = self.param
        log.info("Solving %s", self.net.net.name)
        log.info("Learning Rate Policy: %s", p.lr_policy)
        with self.signals:
            self._step(p.max_iter - self.solver.iter)
            if self.stopped or (p.snapshot_after_train and (not p.snapshot or self.solver.iter % p.snapshot)):
                self.snapshot()
            if self.stopped:
                log.info("Optimization stopped early.")
                return
            if p.display and self.solver.iter % p.display == 0:
                with torch.no_grad():
                    loss = self.net.loss(self.model(self._next_batch()))
                log.info("Iteration %d, loss = %s", self.solver.iter, g(float(loss)))
            if self.tests and p.test_interval and self.solver.iter % p.test_interval == 0:
                self.test_all()
        log.info("Optimization Done.")

    def _step(self, iterations: int) -> None:
        p, solver = self.param, self.solver
        stop_iter = solver.iter + iterations
        smoothed = SmoothedLoss(p.average_loss)
        self.open_data(solver.iter, stop_iter + 1)
        timer, last_iter, self._test_seconds = time.perf_counter(), solver.iter, 0.0
        while solver.iter < stop_iter:
            if (self.tests and p.test_interval and solver.iter % p.test_interval == 0
                    and (solver.iter > 0 or p.test_initialization)):
                self.test_all()
                if self.dist.agree(self.signals.pending) == SignalRequests.STOP:  # Caffe: stop before training on
                    self.stopped = True
                    break
            display = p.display and solver.iter % p.display == 0
            loss, outputs = self.forward_backward()
            if p.display:
                smoothed.add(loss)
            if display:
                lapse = time.perf_counter() - timer
                log.info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s", solver.iter,
                         g((solver.iter - last_iter) / (lapse or 1)), g(lapse), p.display, g(smoothed.read()))
                self._log_outputs("Train", outputs)
            iteration = solver.iter
            rate = solver.apply_update()
            if display:
                log.info("Iteration %d, lr = %s", iteration, g(rate))
                self._log_progress(solver.iter - last_iter, lapse)
                timer, last_iter, self._test_seconds, self.data_seconds = time.perf_counter(), solver.iter, 0.0, 0.0
            request = self.dist.agree(self.signals.take())
            if (p.snapshot and solver.iter % p.snapshot == 0) or request != SignalRequests.NONE:
                self.snapshot()
            if request == SignalRequests.STOP:
                self.stopped = True
                break

    def open_data(self, start_iter: int, stop_iter: int) -> None:
        """Start the workers preparing the training batches of iterations start_iter .. stop_iter - 1."""
        self._batches = iterate_batches(self.feeds, start_iter * self.param.iter_size, stop_iter * self.param.iter_size,
                                        self.workers, pin_memory=self.device.type == "cuda")

    def _next_batch(self) -> dict[str, torch.Tensor]:
        began = time.perf_counter()
        batch = next(self._batches)
        self.data_seconds += time.perf_counter() - began
        self._check_labels(batch)
        return to_device(batch, self.device)

    def forward_backward(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Caffe's ForwardBackward, iter_size times (gradients add up; the solver divides by iter_size)."""
        for param in self.net.parameters():
            param.grad = None
        total = torch.zeros((), device=self.device)
        iter_size = self.param.iter_size
        for k in range(iter_size):
            batch = self._next_batch()
            torch.manual_seed(step_seed(self.seed, self.dist.rank, self.solver.iter * iter_size + k))
            accumulate = k < iter_size - 1 and hasattr(self.model, "no_sync")
            sync = self.model.no_sync() if accumulate else contextlib.nullcontext()
            with sync:
                outputs = self.model(batch)
                loss = self.net.loss(outputs)
                loss.backward()
            total += loss.detach()
        return total / iter_size, outputs

    def _check_labels(self, batch: dict[str, torch.Tensor]) -> None:
        for blob, classes in self.label_limits.items():
            labels = batch.get(blob)
            if labels is not None and (labels.min() < 0 or labels.max() >= classes):
                bad = labels[(labels < 0) | (labels >= classes)][0]
                raise AgegenderError(f"label {g(float(bad))} in blob '{blob}' is outside the net's {classes} classes "
                                     f"(0..{classes - 1}); fix the LMDB labels or num_output of the last layer")

    def test_all(self) -> None:
        if not self.rank0:
            return
        began = time.perf_counter()
        for index in range(len(self.tests)):
            self.test(index)
            if self.signals.pending == SignalRequests.STOP:
                break
        self._last_test_pass = time.perf_counter() - began
        self._test_seconds += self._last_test_pass

    @torch.no_grad()
    def test(self, index: int) -> None:
        """Caffe's Solver::Test: mean of every output blob over test_iter batches (from the first record)."""
        test = self.tests[index]
        log.info("Iteration %d, Testing net (#%d)", self.solver.iter, index)
        scores: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=self.device)
        batches = iterate_batches(test.feeds, 0, test.iterations, self.workers, pin_memory=self.device.type == "cuda")
        for batch in batches:
            outputs = test.net(to_device(batch, self.device))
            for name, value in outputs.items():
                scores[name] = scores.get(name, 0) + value.detach().reshape(-1).double()
            if self.param.test_compute_loss:
                loss += test.net.loss(outputs)
            if self.signals.pending == SignalRequests.STOP:
                return  # abandon the test; the training loop snapshots and stops (every rank together)
            if self.signals.take() == SignalRequests.SNAPSHOT:
                self.snapshot()
        if self.param.test_compute_loss:
            log.info("Test loss: %s", g(float(loss) / test.iterations))
        self._log_outputs("Test", {k: v / test.iterations for k, v in scores.items()}, test.net)

    def _log_outputs(self, kind: str, outputs: dict[str, torch.Tensor], net: TorchNet | None = None) -> None:
        """``    Train net output #k: name = v (* w = w*v loss)``, Caffe numbering every element of every output
        blob, blobs in name order (Caffe keeps its outputs in a std::set)."""
        weights = dict((net or self.net).loss_weights)
        index = 0
        for name in sorted(outputs):
            weight = weights.get(name, 0.0)
            for value in outputs[name].detach().reshape(-1).tolist():
                suffix = f" (* {g(weight)} = {g(weight * value)} loss)" if weight else ""
                log.info("    %s net output #%d: %s = %s%s", kind, index, name, g(value), suffix)
                index += 1

    def _log_progress(self, iterations: int, lapse: float) -> None:
        """A line for people: throughput on training alone and the time left (tests included)."""
        p = self.param
        train_seconds = max(lapse - self._test_seconds, 1e-9)
        iter_rate = iterations / train_seconds
        images = iterations * self.images_per_iteration
        remaining = p.max_iter - self.solver.iter
        eta = ""
        if iter_rate:
            tests_left = remaining // p.test_interval if self.tests and p.test_interval else 0
            eta = f", ETA {duration(remaining / iter_rate + tests_left * self._last_test_pass)}"
        log.info("progress: %d/%d iterations (%.1f%%), %.1f images/s, %.0f%% of it waiting for data%s",
                 self.solver.iter, p.max_iter, 100 * self.solver.iter / max(p.max_iter, 1), images / train_seconds,
                 100 * self.data_seconds / train_seconds, eta)

    def snapshot(self) -> None:
        """Caffe's Snapshot: <prefix>_iter_N.caffemodel and .solverstate, each written atomically."""
        if not self.rank0 or self._last_snapshot == self.solver.iter:
            return
        base = f"{self.prefix}_iter_{self.solver.iter}"
        log.info("Snapshotting to binary proto file %s.caffemodel", base)
        write_caffemodel(self.net.to_caffemodel(), f"{base}.caffemodel")
        log.info("Snapshotting solver state to binary proto file %s.solverstate", base)
        write_solverstate(self.solver.to_state(f"{base}.caffemodel"), f"{base}.solverstate")
        self._last_snapshot = self.solver.iter

def restore(net: TorchNet, solver: Solver, path: str) -> None:
    """Caffe's Restore: iteration, lr step and history from the .solverstate, weights from its caffemodel
    (looked for where it was written, then beside the .solverstate)."""
    log.info("Restoring previous solver status from %s", path)
    state = read_solverstate(path)
    if state.learned_net:
        model = Path(state.learned_net)
        if not model.is_file() and (Path(path).parent / model.name).is_file():
            model = Path(path).parent / model.name
        if not model.is_file():
            raise AgegenderError(f"{path} names weights {state.learned_net}, which are missing; resume from a "
                                 f"snapshot whose .caffemodel is still there")
        net.load_weights(net.net.weights_from(model, strict=False))
    solver.restore(state, str(path))


def step_seed(seed: int, rank: int, step: int) -> int:
    """The torch seed for one forward/backward (dropout masks), independent of where the run started."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0] >> 1)
