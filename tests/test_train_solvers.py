"""Caffe's learning-rate policies and update rules, each against its formula or a hand computation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from agegender.caffe import caffe_pb2
from agegender.errors import AgegenderError
from agegender.layers.torch_net import LearnableBlob
from agegender.train.solvers import LearningRate, make_solver, solver_type


def solver_param(text: str) -> caffe_pb2.SolverParameter:
    return text_format.Parse(text, caffe_pb2.SolverParameter())


F = np.float32  # Caffe stores base_lr, gamma, power... as float


@pytest.mark.parametrize("text,formula", [
    ('lr_policy: "fixed" base_lr: 0.01', lambda it: F(0.01)),
    ('lr_policy: "step" base_lr: 0.01 gamma: 0.1 stepsize: 30', lambda it: F(0.01) * F(0.1) ** (it // 30)),
    ('lr_policy: "exp" base_lr: 0.01 gamma: 0.99', lambda it: F(0.01) * F(0.99) ** it),
    ('lr_policy: "inv" base_lr: 0.01 gamma: 0.0001 power: 0.75', lambda it: F(0.01) * (1 + F(0.0001) * it) ** -F(0.75)),
    ('lr_policy: "poly" base_lr: 0.01 power: 2 max_iter: 100', lambda it: F(0.01) * (1 - it / 100) ** 2),
    ('lr_policy: "sigmoid" base_lr: 0.01 gamma: -0.1 stepsize: 50',
     lambda it: F(0.01) * (1 / (1 + math.exp(-F(-0.1) * (it - 50))))),
    ('lr_policy: "multistep" base_lr: 0.01 gamma: 0.5 stepvalue: 10 stepvalue: 25 stepvalue: 26',
     lambda it: F(0.01) * F(0.5) ** sum(it >= v for v in (10, 25, 26))),
])
def test_learning_rate_policies_follow_caffes_formulas(text, formula):
    rate = LearningRate(solver_param(text))
    for it in range(0, 100):  # called every iteration, as the solver does (multistep keeps a position)
        assert rate(it) == pytest.approx(float(formula(it)), rel=1e-6), it


def test_multistep_position_is_what_a_solverstate_stores():
    rate = LearningRate(solver_param('lr_policy: "multistep" base_lr: 1 gamma: 0.1 stepvalue: 5 stepvalue: 8'))
    for it in range(9):
        rate(it)
    assert rate.current_step == 2
    resumed = LearningRate(solver_param('lr_policy: "multistep" base_lr: 1 gamma: 0.1 stepvalue: 5 stepvalue: 8'))
    resumed.current_step = 2
    assert resumed(9) == pytest.approx(0.01)


@pytest.mark.parametrize("text,message", [
    ('lr_policy: "cosine"', "unknown lr_policy 'cosine'"),
    ('lr_policy: "step" base_lr: 0.1', "stepsize"),
    ('lr_policy: "poly" base_lr: 0.1', "max_iter"),
])
def test_bad_lr_policies_are_one_line_errors(text, message):
    with pytest.raises(AgegenderError, match=message):
        LearningRate(solver_param(text))


# A tiny problem: two parameter blobs, three iterations of given gradients.
W0 = [np.array([0.5, -1.0, 2.0], np.float32), np.array([[0.3, -0.2]], np.float32)]
GRADS = [[np.array([0.1, -0.2, 0.3]), np.array([[1.0, -0.5]])],
         [np.array([-0.3, 0.1, 0.0]), np.array([[0.2, 0.4]])],
         [np.array([0.05, 0.5, -0.1]), np.array([[-1.0, 0.1]])]]
MULTS = [(1.0, 1.0), (2.0, 0.0)]  # (lr_mult, decay_mult), like a weight and its bias
BASE = 'base_lr: 0.1 lr_policy: "fixed" weight_decay: 0.01 '


def run_solver(text: str, steps: int = 3):
    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in W0]
    blobs = [LearnableBlob("l", i, p, lr, decay) for i, (p, (lr, decay)) in enumerate(zip(params, MULTS))]
    solver = make_solver(solver_param(BASE + text), blobs)
    for grads in GRADS[:steps]:
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g, dtype=torch.float32)
        solver.apply_update()
    return [p.detach().numpy() for p in params], solver


def hand_sgd(momentum: float, nesterov: bool = False, l1: bool = False, iter_size: int = 1):
    w = [x.astype(np.float64) for x in W0]
    v = [np.zeros_like(x) for x in w]
    for grads in GRADS:
        for i, ((lr_mult, decay_mult), g) in enumerate(zip(MULTS, grads)):
            g = g / iter_size + 0.01 * decay_mult * (np.sign(w[i]) if l1 else w[i])
            previous = v[i]
            v[i] = momentum * v[i] + 0.1 * lr_mult * g
            w[i] = w[i] - ((1 + momentum) * v[i] - momentum * previous if nesterov else v[i])
    return w, v


def hand_adaptive(kind: str, momentum: float = 0.9, momentum2: float = 0.999, rms_decay: float = 0.98,
                  delta: float = 1e-8):
    w = [x.astype(np.float64) for x in W0]
    h1 = [np.zeros_like(x) for x in w]
    h2 = [np.zeros_like(x) for x in w]
    for t, grads in enumerate(GRADS, start=1):
        for i, ((lr_mult, decay_mult), g) in enumerate(zip(MULTS, grads)):
            g = g + 0.01 * decay_mult * w[i]
            rate = 0.1 * lr_mult
            if kind == "AdaGrad":
                h1[i] = h1[i] + g * g
                step = rate * g / (np.sqrt(h1[i]) + delta)
            elif kind == "RMSProp":
                h1[i] = rms_decay * h1[i] + (1 - rms_decay) * g * g
                step = rate * g / (np.sqrt(h1[i]) + delta)
            elif kind == "AdaDelta":
                h1[i] = momentum * h1[i] + (1 - momentum) * g * g
                update = g * np.sqrt((h2[i] + delta) / (h1[i] + delta))
                h2[i] = momentum * h2[i] + (1 - momentum) * update * update
                step = rate * update
            else:  # Adam, with Caffe's correction folded into the rate
                h1[i] = momentum * h1[i] + (1 - momentum) * g
                h2[i] = momentum2 * h2[i] + (1 - momentum2) * g * g
                step = rate * math.sqrt(1 - momentum2 ** t) / (1 - momentum ** t) * h1[i] / (np.sqrt(h2[i]) + delta)
            w[i] = w[i] - step
    return w, h1 + h2 if kind in ("AdaDelta", "Adam") else h1


@pytest.mark.parametrize("text,expected", [
    ("momentum: 0.9", lambda: hand_sgd(0.9)),
    ('momentum: 0.9 regularization_type: "L1"', lambda: hand_sgd(0.9, l1=True)),
    ('type: "Nesterov" momentum: 0.8', lambda: hand_sgd(0.8, nesterov=True)),
    ('solver_type: NESTEROV momentum: 0.8', lambda: hand_sgd(0.8, nesterov=True)),
    ('type: "AdaGrad"', lambda: hand_adaptive("AdaGrad")),
    ('type: "RMSProp" rms_decay: 0.98', lambda: hand_adaptive("RMSProp")),
    ('type: "AdaDelta" momentum: 0.9 delta: 1e-6', lambda: hand_adaptive("AdaDelta", delta=np.float32(1e-6))),
    ('type: "Adam" momentum: 0.9 momentum2: 0.999', lambda: hand_adaptive("Adam")),
])
def test_update_rules_match_a_hand_computation(text, expected):
    weights, solver = run_solver(text)
    want_weights, want_history = expected()
    for ours, want in zip(weights, want_weights):
        np.testing.assert_allclose(ours, want, rtol=2e-5, atol=1e-6)
    assert len(solver.history) == len(want_history)  # Caffe's layout: every blob's first history, then the second
    for ours, want in zip(solver.history, want_history):
        np.testing.assert_allclose(ours.numpy(), want, rtol=2e-5, atol=1e-6)
    assert solver.iter == 3


def test_iter_size_divides_the_accumulated_gradient():
    weights, _ = run_solver("momentum: 0.9 iter_size: 4")
    for ours, want in zip(weights, hand_sgd(0.9, iter_size=4)[0]):
        np.testing.assert_allclose(ours, want, rtol=2e-5, atol=1e-6)


def test_clip_gradients_scales_the_global_norm_before_decay():
    weights, _ = run_solver("clip_gradients: 0.5", steps=1)
    g = GRADS[0]
    scale = 0.5 / math.sqrt(sum((x ** 2).sum() for x in g))
    for w0, grad, (lr_mult, decay_mult), ours in zip(W0, g, MULTS, weights):
        np.testing.assert_allclose(ours, w0 - 0.1 * lr_mult * (grad * scale + 0.01 * decay_mult * w0), rtol=1e-5)


def test_lr_mult_zero_freezes_a_blob_and_history_round_trips_through_a_solverstate():
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))]
    blobs = [LearnableBlob("a", 0, params[0], 0.0, 1.0), LearnableBlob("b", 0, params[1], 1.0, 1.0)]
    solver = make_solver(solver_param(BASE + 'type: "Adam"'), blobs)
    for p in params:
        p.grad = torch.full_like(p, 0.5)
    solver.apply_update()
    assert params[0].tolist() == [1.0, 1.0] and params[1][0] < 1.0
    state = solver.to_state("x.caffemodel")
    assert state.iter == 1 and state.learned_net == "x.caffemodel" and len(state.history) == 4
    again = make_solver(solver_param(BASE + 'type: "Adam"'), blobs)
    again.restore(caffe_pb2.SolverState.FromString(state.SerializeToString()), "s.solverstate")
    assert again.iter == 1 and all(torch.equal(a, b) for a, b in zip(again.history, solver.history))
    sgd = make_solver(solver_param(BASE), blobs)
    with pytest.raises(AgegenderError, match="4 history blobs but a SGD solver on this net needs 2"):
        sgd.restore(state, "s.solverstate")


@pytest.mark.parametrize("text,message", [
    ('type: "AdaGrad" momentum: 0.9', "momentum cannot be used with AdaGrad"),
    ('type: "RMSProp" momentum: 0.9', "momentum cannot be used with RMSProp"),
    ('type: "LBFGS"', "unknown solver type 'LBFGS'"),
    ('regularization_type: "L3"', "unknown regularization_type 'L3'"),
    ('type: "Adam" solver_type: SGD', "both type 'Adam' and solver_type SGD"),
])
def test_bad_solver_settings_are_one_line_errors(text, message):
    with pytest.raises(AgegenderError, match=message):
        make_solver(solver_param(BASE + text), [])


def test_legacy_solver_type_enum_upgrades():
    assert solver_type(solver_param("solver_type: ADAM")) == "Adam"
    assert solver_type(solver_param("")) == "SGD"
