"""RK4 and Euler on closed-form ODEs, the OT-Flow dynamics on a quadratic potential, tracing."""

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from tfotflow import ode, regularizers
from tfotflow.potential import Potential


def final_error(num_steps, method="rk4", unroll=True):
    """Error at t = 1 of dy/dt = t·y, y(0) = 1 (exact: e^{1/2}), a nested (tuple) state."""
    y0 = (tf.constant([1.0], tf.float64), tf.constant([2.0], tf.float64))
    y1 = ode.solve(
        lambda t, y: (t * y[0], -y[1]),
        y0,
        t0=0.0,
        t1=1.0,
        num_steps=num_steps,
        method=method,
        unroll=unroll,
    )
    return abs(float(y1[0][0]) - np.exp(0.5)) + abs(float(y1[1][0]) - 2.0 * np.exp(-1.0))


@pytest.mark.parametrize("unroll", [True, False])
def test_rk4_is_fourth_order(unroll):
    errors = [final_error(n, unroll=unroll) for n in (4, 8, 16, 32)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 13.0) & (ratios < 19.0)), ratios


def test_euler_is_first_order():
    errors = [final_error(n, method="euler") for n in (16, 32, 64)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 1.8) & (ratios < 2.2)), ratios


def test_backward_integration_undoes_forward():
    y1 = ode.solve(
        lambda t, y: -2.0 * y, tf.constant(3.0, tf.float64), t0=1.0, t1=0.0, num_steps=64
    )
    assert abs(float(y1) - 3.0 * np.exp(2.0)) < 1e-6


def test_bad_solver_arguments():
    with pytest.raises(ValueError, match="method='midpoint'"):
        ode.solve(lambda t, y: y, tf.constant(1.0), t0=0.0, t1=1.0, num_steps=2, method="midpoint")
    with pytest.raises(ValueError, match="num_steps=0"):
        ode.solve(lambda t, y: y, tf.constant(1.0), t0=0.0, t1=1.0, num_steps=0)


def quadratic_potential(d, seed=0):
    """Φ = ½ xᵀ(AᵀA)x exactly: the network output weight w and the time column of A are 0."""
    rng = np.random.default_rng(seed)
    potential = Potential(width=4, num_layers=2, rank=d + 1, dtype="float64")
    potential.build((None, d))
    A = rng.normal(scale=0.5, size=(d + 1, d + 1))
    A[:, -1] = 0.0
    potential.A.assign(A)
    potential.w.assign(np.zeros(4))
    return potential, A[:, :d].T @ A[:, :d]


def test_flow_of_a_quadratic_potential_is_a_matrix_exponential(rng):
    """dx/dt = −Q x / α gives x(1) = exp(−Q/α) x and ℓ(1) = −tr(Q)/α exactly."""
    d, alpha = 3, 2.0
    potential, Q = quadratic_potential(d)
    x = rng.normal(size=(5, d))
    state = ode.integrate(potential, tf.constant(x), num_steps=16, alpha_transport=alpha)
    np.testing.assert_allclose(state.x, x @ scipy.linalg.expm(-Q / alpha).T, atol=1e-7)
    np.testing.assert_allclose(state.log_det, np.full(5, -np.trace(Q) / alpha), rtol=1e-12)
    assert state.costs.shape == (5, 0)

    back = ode.integrate(potential, state.x, num_steps=16, alpha_transport=alpha, reverse=True)
    np.testing.assert_allclose(back.x, x, atol=1e-7)
    np.testing.assert_allclose(back.log_det, np.full(5, np.trace(Q) / alpha), rtol=1e-12)


def test_transport_cost_of_a_quadratic_potential(rng):
    """L(1) = ∫ ½‖Q x(t)‖² dt = ½ xᵀ [∫ e^{−Qt} Q² e^{−Qt} dt] x = ¼ xᵀ Q (I − e^{−2Q}) x."""
    d = 2
    potential, Q = quadratic_potential(d, seed=3)
    x = rng.normal(size=(4, d))
    state = ode.integrate(
        potential,
        tf.constant(x),
        num_steps=64,
        jit_compile=True,
        running_costs=(regularizers.transport,),
    )
    M = 0.25 * Q @ (np.eye(d) - scipy.linalg.expm(-2.0 * Q))
    np.testing.assert_allclose(state.costs[:, 0], np.einsum("ni,ij,nj->n", x, M, x), rtol=1e-6)


def test_xla_and_graph_agree_and_trace_once(rng):
    potential = Potential(width=8, num_layers=3, dtype="float64")
    x = tf.constant(rng.normal(size=(6, 2)))
    potential(x)
    results = {}
    for jit_compile in (False, True):
        compiled = ode.compiled_integrator(jit_compile)
        before = compiled.experimental_get_tracing_count()
        results[jit_compile] = ode.integrate(potential, x, num_steps=3, jit_compile=jit_compile)
        ode.integrate(potential, x + 1.0, num_steps=3, jit_compile=jit_compile)
        assert compiled.experimental_get_tracing_count() == before + 1
        ode.integrate(potential, tf.concat([x, x], 0), num_steps=3, jit_compile=jit_compile)
        assert compiled.experimental_get_tracing_count() == before + 2
    np.testing.assert_allclose(results[True].x, results[False].x, rtol=1e-12)
    np.testing.assert_allclose(results[True].log_det, results[False].log_det, rtol=1e-12)
