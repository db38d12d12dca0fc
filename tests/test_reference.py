"""Golden values of the original PyTorch OT-Flow code (../shared/reference, float64)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfotflow import ode, regularizers
from tfotflow.bijector import OTFlow
from tfotflow.potential import Potential

from .conftest import shared_file

GOLDEN = ["phi_depth3_golden", "miniboone_golden"]
COSTS = (regularizers.transport, regularizers.hjb)
# Whole solves against the reference, graph and XLA; XLA at d = 43 in the slow set.
SOLVES = [
    pytest.param(name, jit, marks=[pytest.mark.slow] if (name, jit) == (GOLDEN[1], True) else [])
    for name in GOLDEN
    for jit in (False, True)
]


def load(name):
    golden = dict(np.load(shared_file(f"reference/{name}.npz")))
    if "param_A" in golden:
        state_dict = {
            key[len("param_") :]: v for key, v in golden.items() if key.startswith("param_")
        }
    else:
        state_dict = dict(np.load(shared_file("reference/miniboone_pretrained_state_dict.npz")))
    return golden, Potential.from_state_dict(state_dict), state_dict


def assert_relative(received, expected, tolerance=1e-8):
    error = np.max(np.abs(np.asarray(received) - expected)) / np.max(np.abs(expected))
    assert error < tolerance, error


def state_rhs(potential, **settings):
    """The flow's right-hand side as dy/dt = f(t, y) on the state y = (x, ℓ, R)."""
    rhs, weights = ode.flow_dynamics(potential, **settings), potential.read_weights()

    def f(t, state):
        velocity, (log_det_rate, cost_rates) = rhs(t, state[0], weights, None)
        return velocity, log_det_rate, cost_rates

    return f


def stacked(state):
    return np.concatenate([state[0], np.asarray(state[1])[:, None], state[2]], axis=1)


@pytest.mark.parametrize("name", GOLDEN)
def test_potential_matches_reference(name):
    golden, potential, _ = load(name)
    x, t = golden["x"], float(golden["t_eval"])
    assert_relative(potential(x, t=t), golden["phi_t03"][:, 0])
    gradient, trace = potential.gradient_and_trace(x, t)
    assert_relative(gradient, golden["grad_t03"])
    assert_relative(trace, golden["trHess_t03"])


@pytest.mark.parametrize("name", GOLDEN)
def test_dynamics_and_steps_match_reference(name):
    golden, potential, _ = load(name)
    x = tf.constant(golden["x"])
    n = x.shape[0]
    start = (x, tf.zeros([n], tf.float64), tf.zeros([n, 2], tf.float64))
    for alpha, key in [(1.0, "odefun_t03"), (2.0, "odefun_t03_alph0_2")]:
        rhs = state_rhs(potential, alpha_transport=alpha, running_costs=COSTS)
        assert_relative(stacked(rhs(tf.constant(0.3, tf.float64), start)), golden[key])
    rhs = state_rhs(potential, running_costs=COSTS)
    one_step = ode.solve(rhs, start, t0=0.0, t1=1.0 / 18, num_steps=1)
    assert_relative(stacked(one_step), golden["rk4_one_step"])


@pytest.mark.parametrize("name, jit_compile", SOLVES)
def test_integrated_flow_matches_reference(name, jit_compile):
    golden, potential, _ = load(name)
    nt, alpha_transport = int(golden["nt"]), float(golden["alph"][0])
    x = tf.constant(golden["x"])
    state = ode.integrate(
        potential,
        x,
        num_steps=nt,
        alpha_transport=alpha_transport,
        running_costs=COSTS,
        jit_compile=jit_compile,
    )
    assert_relative(stacked(state), golden["z1"])
    euler = ode.integrate(
        potential, x, num_steps=nt, running_costs=COSTS, method="euler", jit_compile=jit_compile
    )
    assert_relative(stacked(euler), golden["z1_rk1"])
    back = ode.integrate(
        potential, tf.constant(golden["z1_x"]), num_steps=nt, reverse=True, jit_compile=jit_compile
    )
    assert_relative(back.x, golden["zinv_x"])


# The objective's gradient under XLA compiles the adjoint too (26 s for depth 3): slow set.
GRADIENT_SOLVES = [
    pytest.param(name, jit, marks=[pytest.mark.slow] if jit else [])
    for name in GOLDEN
    for jit in (False, True)
]


@pytest.mark.parametrize("name, jit_compile", GRADIENT_SOLVES)
def test_log_density_and_objective_gradient_match_reference(name, jit_compile):
    golden, potential, state_dict = load(name)
    nt = int(golden["nt"])
    alpha = golden["alph"]
    d = golden["x"].shape[1]
    flow = OTFlow(potential, num_steps=nt)
    normal = tfp.distributions.MultivariateNormalDiag(tf.zeros(d, tf.float64))
    distribution = tfp.distributions.TransformedDistribution(normal, flow)
    assert_relative(distribution.log_prob(golden["x"]), golden["logdensity"])

    ours = {"A": potential.A, "c.weight": potential.b, "w.weight": potential.w}
    for i in range(potential.num_layers):
        ours[f"N.layers.{i}.weight"] = potential.kernels[i]
        ours[f"N.layers.{i}.bias"] = potential.biases[i]

    @tf.function(jit_compile=jit_compile)
    def objective_and_gradients(x):
        with tf.GradientTape() as tape:
            state = ode.integrate(
                potential, x, num_steps=nt, running_costs=COSTS, jit_compile=jit_compile
            )
            cost_C = (
                0.5 * tf.reduce_sum(state.x**2, 1) + 0.5 * d * np.log(2 * np.pi) - state.log_det
            )
            means = [
                tf.reduce_mean(state.costs[:, 0]),
                tf.reduce_mean(cost_C),
                tf.reduce_mean(state.costs[:, 1]),
            ]
            objective = alpha[0] * means[0] + alpha[1] * means[1] + alpha[2] * means[2]
        return objective, means, cost_C, tape.gradient(objective, list(ours.values()))

    objective, means, cost_C, gradients = objective_and_gradients(tf.constant(golden["x"]))
    for mean, key in zip(means, ["costL", "costC", "costR"]):
        assert_relative(mean, golden[key])
    assert_relative(objective, golden["Jc"])
    assert_relative(cost_C, golden["C_per_sample"])
    for key, gradient in zip(ours, gradients):
        expected = golden[f"dJc_d_{key}"].reshape(state_dict[key].shape)
        received = (
            np.asarray(gradient).T
            if key.endswith(".weight") and "layers" in key
            else (np.asarray(gradient).reshape(expected.shape))
        )
        assert_relative(received, expected, 1e-7)


@pytest.mark.slow
def test_pretrained_miniboone_scores_the_test_split():
    """The reference code gives a mean test NLL of 10.523394 nats (nt = 18, float64)."""
    test = np.load(shared_file("data/miniboone/test.npy"))
    assert test.shape == (3648, 43)
    _, potential, _ = load("miniboone_golden")
    flow = OTFlow(potential, num_steps=18)
    normal = tfp.distributions.MultivariateNormalDiag(tf.zeros(43, tf.float64))
    distribution = tfp.distributions.TransformedDistribution(normal, flow)
    nll = -float(tf.reduce_mean(distribution.log_prob(test)))
    assert abs(nll - 10.523394) < 1e-4, nll
