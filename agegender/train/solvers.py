"""Caffe's solvers: learning-rate policies and update rules, written out so the history blobs in a
.solverstate mean what Caffe's do and a resumed run continues exactly.

Caffe's update differs from torch.optim: weight decay is added to the gradient, the learning rate scales
the momentum history (SGD: v = momentum*v + lr*lr_mult*(g + decay*decay_mult*w); w -= v), Adam folds its
bias correction into the step, and AdaGrad/RMSProp add delta after the square root.
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from agegender.caffe import array_to_blob, blob_to_array, caffe_pb2
from agegender.errors import AgegenderError
from agegender.layers.torch_net import LearnableBlob

log = logging.getLogger("agegender.train")

LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


class LearningRate:
    """Caffe's SGDSolver::GetLearningRate; ``current_step`` is the multistep position kept in solverstates."""

    def __init__(self, param: caffe_pb2.SolverParameter):
        self.param = param
        self.current_step = 0
        policy = param.lr_policy
        if policy not in LR_POLICIES:
            raise AgegenderError(f"unknown lr_policy '{policy}'; use one of {', '.join(LR_POLICIES)}")
        if policy in ("step", "sigmoid") and param.stepsize <= 0:
            raise AgegenderError(f"lr_policy '{policy}' needs stepsize > 0")
        if policy == "poly" and param.max_iter <= 0:
            raise AgegenderError("lr_policy 'poly' needs max_iter > 0")
        if policy == "multistep" and list(param.stepvalue) != sorted(param.stepvalue):
            raise AgegenderError(f"multistep stepvalue must increase, got {list(param.stepvalue)}")

    def __call__(self, iteration: int) -> float:
        p = self.param
        policy = p.lr_policy
        if policy == "fixed":
            return p.base_lr
        if policy == "step":
            self.current_step = iteration // p.stepsize
            return p.base_lr * p.gamma ** self.current_step
        if policy == "exp":
            return p.base_lr * p.gamma ** iteration
        if policy == "inv":
            return p.base_lr * (1 + p.gamma * iteration) ** -p.power
        if policy == "multistep":
            if self.current_step < len(p.stepvalue) and iteration >= p.stepvalue[self.current_step]:
                self.current_step += 1
                log.info("MultiStep Status: Iteration %d, step = %d", iteration, self.current_step)
            return p.base_lr * p.gamma ** self.current_step
        if policy == "poly":
            return p.base_lr * (1 - iteration / p.max_iter) ** p.power
        return p.base_lr / (1 + math.exp(-p.gamma * (iteration - p.stepsize)))


class Solver:
    """Caffe's SGDSolver::ApplyUpdate: clip, normalise by iter_size, regularise, compute the update, apply it.

    Subclasses give ``history_sets`` (history blobs per parameter; Caffe stores set k of every parameter
    after set k-1) and ``compute_update``, which turns the regularised gradient into the value to subtract.
    """

    type_name = "SGD"
    history_sets = 1

    def __init__(self, param: caffe_pb2.SolverParameter, blobs: Sequence[LearnableBlob]):
        self.param = param
        self.blobs = list(blobs)
        self.iter = 0
        self.learning_rate = LearningRate(param)
        if param.regularization_type not in ("L1", "L2"):
            raise AgegenderError(f"unknown regularization_type '{param.regularization_type}'; use L2 or L1")
        self.history = [torch.zeros_like(b.param) for _ in range(self.history_sets) for b in self.blobs]
        self.check()

    def check(self) -> None:
        """Reject settings Caffe rejects for this solver."""

    def histories(self, index: int) -> list[Tensor]:
        return [self.history[k * len(self.blobs) + index] for k in range(self.history_sets)]

    @torch.no_grad()
    def apply_update(self) -> float:
        """Update every parameter from its accumulated ``.grad``, which is used as Caffe uses its diff blobs
        (scaled in place); returns the learning rate used."""
        rate = self.learning_rate(self.iter)
        learned = [(index, blob) for index, blob in enumerate(self.blobs) if blob.lr_mult]  # Caffe: no diff otherwise
        diffs = [b.param.grad if b.param.grad is not None else torch.zeros_like(b.param) for _, b in learned]
        self._clip(diffs)
        for (index, blob), diff in zip(learned, diffs):
            if self.param.iter_size > 1:
                diff.mul_(1 / self.param.iter_size)
            self._regularise(blob, diff)
            blob.param.sub_(self.compute_update(index, diff, rate * blob.lr_mult))
        self.iter += 1
        return rate

    def _clip(self, diffs: list[Tensor]) -> None:
        limit = self.param.clip_gradients
        if limit < 0:
            return
        norm = float(torch.sqrt(sum(d.double().square().sum() for d in diffs)))
        if norm > limit:
            factor = limit / norm
            log.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale factor %s",
                     f"{norm:.6g}", f"{limit:.6g}", f"{factor:.6g}")
            for d in diffs:
                d.mul_(factor)

    def _regularise(self, blob: LearnableBlob, diff: Tensor) -> None:
        decay = self.param.weight_decay * blob.decay_mult
        if decay:
            diff.add_(blob.param if self.param.regularization_type == "L2" else torch.sign(blob.param), alpha=decay)

    def compute_update(self, index: int, diff: Tensor, local_rate: float) -> Tensor:
        (history,) = self.histories(index)
        history.mul_(self.param.momentum).add_(diff, alpha=local_rate)
        return history

    def to_state(self, learned_net: str) -> caffe_pb2.SolverState:
        state = caffe_pb2.SolverState(iter=self.iter, learned_net=learned_net,
                                      current_step=self.learning_rate.current_step)
        state.history.extend(array_to_blob(h.detach().cpu().numpy()) for h in self.history)
        return state

    def restore(self, state: caffe_pb2.SolverState, source: str) -> None:
        """Caffe's RestoreSolverStateFromBinaryProto, with the history checked against this net and solver."""
        if len(state.history) != len(self.history):
            raise AgegenderError(f"{source} holds {len(state.history)} history blobs but a {self.type_name} solver "
                                 f"on this net needs {len(self.history)}; was it written for this net and solver type?")
        for index, (blob, history) in enumerate(zip(state.history, self.history)):
            try:
                values = blob_to_array(blob, tuple(history.shape))
            except ValueError:
                owner = self.blobs[index % len(self.blobs)]
                raise AgegenderError(f"{source}: history blob {index} (layer '{owner.layer}') does not have shape "
                                     f"{tuple(history.shape)}; was it written for this net?") from None
            history.copy_(torch.from_numpy(np.asarray(values, dtype=np.float32)))
        self.iter = state.iter
        self.learning_rate.current_step = state.current_step


class Nesterov(Solver):
    type_name = "Nesterov"

    def compute_update(self, index, diff, local_rate):
        (history,) = self.histories(index)
        previous = history.clone()
        history.mul_(self.param.momentum).add_(diff, alpha=local_rate)
        return previous.mul_(-self.param.momentum).add_(history, alpha=1 + self.param.momentum)


class AdaGrad(Solver):
    type_name = "AdaGrad"

    def check(self):
        if self.param.momentum != 0:
            raise AgegenderError("momentum cannot be used with AdaGrad; remove it from the solver")

    def compute_update(self, index, diff, local_rate):
        (history,) = self.histories(index)
        history.addcmul_(diff, diff)
        return diff.div_(history.sqrt().add_(self.param.delta)).mul_(local_rate)


class RMSProp(Solver):
    type_name = "RMSProp"

    def check(self):
        if self.param.momentum != 0:
            raise AgegenderError("momentum cannot be used with RMSProp; remove it from the solver")
        if not 0 <= self.param.rms_decay < 1:
            raise AgegenderError(f"rms_decay must be in [0, 1), got {self.param.rms_decay}")

    def compute_update(self, index, diff, local_rate):
        (history,) = self.histories(index)
        decay = self.param.rms_decay
        history.mul_(decay).addcmul_(diff, diff, value=1 - decay)
        return diff.div_(history.sqrt().add_(self.param.delta)).mul_(local_rate)


class AdaDelta(Solver):
    type_name = "AdaDelta"
    history_sets = 2

    def compute_update(self, index, diff, local_rate):
        gradients, updates = self.histories(index)
        decay, delta = self.param.momentum, self.param.delta
        gradients.mul_(decay).addcmul_(diff, diff, value=1 - decay)
        update = diff.mul_(((updates + delta) / (gradients + delta)).sqrt_())
        updates.mul_(decay).addcmul_(update, update, value=1 - decay)
        return update.mul_(local_rate)


class Adam(Solver):
    type_name = "Adam"
    history_sets = 2

    def compute_update(self, index, diff, local_rate):
        first, second = self.histories(index)
        beta1, beta2 = self.param.momentum, self.param.momentum2
        t = self.iter + 1
        correction = math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        first.mul_(beta1).add_(diff, alpha=1 - beta1)
        second.mul_(beta2).addcmul_(diff, diff, value=1 - beta2)
        return diff.copy_(first).div_(second.sqrt().add_(self.param.delta)).mul_(local_rate * correction)


SOLVERS = {cls.type_name: cls for cls in (Solver, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)}
_LEGACY_TYPES = {caffe_pb2.SolverParameter.SGD: "SGD", caffe_pb2.SolverParameter.NESTEROV: "Nesterov",
                 caffe_pb2.SolverParameter.ADAGRAD: "AdaGrad", caffe_pb2.SolverParameter.RMSPROP: "RMSProp",
                 caffe_pb2.SolverParameter.ADADELTA: "AdaDelta", caffe_pb2.SolverParameter.ADAM: "Adam"}


def solver_type(param: caffe_pb2.SolverParameter) -> str:
    """The solver's type string; the legacy ``solver_type`` enum upgraded as Caffe's UpgradeSolverType does."""
    if param.HasField("solver_type"):
        legacy = _LEGACY_TYPES[param.solver_type]
        if param.HasField("type") and param.type != legacy:
            raise AgegenderError(f"solver gives both type '{param.type}' and solver_type {legacy}; keep one")
        return legacy
    return param.type


def make_solver(param: caffe_pb2.SolverParameter, blobs: Sequence[LearnableBlob]) -> Solver:
    name = solver_type(param)
    cls = SOLVERS.get(name)
    if cls is None:
        raise AgegenderError(f"unknown solver type '{name}'; use one of {', '.join(SOLVERS)}")
    return cls(param, blobs)
