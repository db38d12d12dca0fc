"""RK4 and Euler on closed-form ODEs, the OT-Flow dynamics on a quadratic potential, tracing."""

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from tfotflow import ode, regularizers
from tfotflow.potential import Potential


def final_error(num_steps, method="rk4"):
    """Error at t = 1 of dy/dt = t·y, y(0) = 1 (exact: e^{1/2}), a nested (tuple) state."""
    y0 = (tf.constant([1.0], tf.float64), tf.constant([2.0], tf.float64))
    y1 = ode.solve(
        lambda t, y: (t * y[0], -y[1]), y0, t0=0.0, t1=1.0, num_steps=num_steps, method=method
    )
    return abs(float(y1[0][0]) - np.exp(0.5)) + abs(float(y1[1][0]) - 2.0 * np.exp(-1.0))


def quadrature_error(num_steps, method="rk4", jit_compile=False):
    """Error at t = 1 of dx/dt = t·x, dq/dt = x, x(0) = 1, q(0) = 0, solved in a loop.

    Exact: x = e^{t²/2}, q(1) = ∫₀¹ e^{t²/2} dt = √(π/2)·erfi(1/√2) = 1.19495766…
    """

    @tf.function(jit_compile=jit_compile)
    def run(steps):
        def rhs(t, x, params, seed):
            return t * x, (x[:, 0],)

        x0 = tf.ones([1, 1], tf.float64)
        return ode.quadrature_solve(
            rhs,
            x0,
            (tf.zeros([1], tf.float64),),
            (),
            num_steps=steps,
            t0=0.0,
            t1=1.0,
            method=method,
        )

    x1, (q1,) = run(tf.constant(num_steps))
    return abs(float(x1[0, 0]) - np.exp(0.5)) + abs(float(q1[0]) - 1.1949576619102276)


def test_rk4_is_fourth_order():
    errors = [final_error(n) for n in (4, 8, 16, 32)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 13.0) & (ratios < 19.0)), ratios


@pytest.mark.parametrize("jit_compile", [False, True])
def test_loop_solver_is_fourth_order_with_rk4_and_first_with_euler(jit_compile):
    errors = [quadrature_error(n, jit_compile=jit_compile) for n in (4, 8, 16, 32)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 13.0) & (ratios < 19.0)), ratios
    errors = [quadrature_error(n, "euler", jit_compile) for n in (32, 64, 128)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 1.8) & (ratios < 2.2)), ratios


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
    # A new step count, direction or time span is a run-time value: no new trace.
    for jit_compile in (False, True):
        compiled = ode.compiled_integrator(jit_compile)
        before = compiled.experimental_get_tracing_count()
        for num_steps, reverse in [(1, False), (7, False), (18, True)]:
            ode.integrate(
                potential, x, num_steps=num_steps, reverse=reverse, jit_compile=jit_compile
            )
        ode.integrate(potential, x, num_steps=5, time_span=(0.2, 0.7), jit_compile=jit_compile)
        assert compiled.experimental_get_tracing_count() == before


def random_potential(d, width=5, num_layers=3, seed=0):
    potential = Potential(width=width, num_layers=num_layers, dtype="float64")
    potential.build((None, d))
    rng = np.random.default_rng(seed)
    for variable in potential.trainable_weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape))
    return potential


def unrolled_rk4(rhs, x, weights, *, num_steps, t0, t1, seed=None):
    """The plain RK4 of the flow, written out stage by stage and differentiated by autodiff."""
    h = (t1 - t0) / num_steps

    def f(k, i, t, x):
        stage_seed = (
            None if seed is None else tf.random.experimental.stateless_fold_in(seed, 4 * k + i)
        )
        velocity, (log_det_rate, cost_rates) = rhs(tf.constant(t, x.dtype), x, weights, stage_seed)
        return velocity, log_det_rate, cost_rates

    state = None
    for k in range(num_steps):
        t = t0 + k * h
        k1 = f(k, 0, t, x)
        k2 = f(k, 1, t + h / 2, x + h / 2 * k1[0])
        k3 = f(k, 2, t + h / 2, x + h / 2 * k2[0])
        k4 = f(k, 3, t + h, x + h * k3[0])
        increment = [h / 6 * (a + 2 * b + 2 * c + e) for a, b, c, e in zip(k1, k2, k3, k4)]
        state = increment if state is None else [s + i for s, i in zip(state, increment)]
        x = x + increment[0]
    return x, state[1], state[2]


def relative_error(received, expected):
    return float(np.max(np.abs(received - expected)) / np.max(np.abs(expected)))


@pytest.fixture(scope="module")
def shared_potential():
    return random_potential(2)


COSTS = {"none": (), "transport+hjb": (regularizers.transport, regularizers.hjb)}


@pytest.mark.parametrize("num_steps", [1, 3, pytest.param(8, marks=pytest.mark.slow)])
@pytest.mark.parametrize("costs", sorted(COSTS))
@pytest.mark.parametrize("reverse", [False, True])
def test_discrete_adjoint_equals_autodiff_of_the_unrolled_solve(
    num_steps, costs, reverse, shared_potential, rng
):
    """Gradients of a loss of (x(1), ℓ(1), R(1)) w.r.t. x and every weight, float64. The
    potential is shared, so step counts and directions reuse one compiled solve."""
    potential = shared_potential
    x = tf.constant(rng.normal(size=(6, 2)))
    t0, t1 = (1.0, 0.0) if reverse else (0.0, 1.0)
    running_costs = COSTS[costs]

    def loss(x1, log_det, cost_values):
        weights = tf.range(1.0, 1.0 + cost_values.shape[1], dtype=tf.float64)
        return (
            tf.reduce_sum(tf.sin(x1))
            + tf.reduce_sum(log_det**2)
            + tf.reduce_sum(cost_values * weights)
        )

    variables = [x, *potential.trainable_weights]
    with tf.GradientTape() as tape:
        tape.watch(x)
        rhs = ode.flow_dynamics(potential, alpha_transport=1.5, running_costs=running_costs)
        expected_loss = loss(
            *unrolled_rk4(rhs, x, potential.read_weights(), num_steps=num_steps, t0=t0, t1=t1)
        )
    expected = tape.gradient(expected_loss, variables)
    for jit_compile in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(x)
            state = ode.integrate(
                potential,
                x,
                num_steps=num_steps,
                reverse=reverse,
                alpha_transport=1.5,
                running_costs=running_costs,
                jit_compile=jit_compile,
            )
            received_loss = loss(*state)
        received = tape.gradient(received_loss, variables)
        assert relative_error(received_loss.numpy(), expected_loss.numpy()) < 1e-12
        for variable, a, b in zip(variables, received, expected):
            assert relative_error(a.numpy(), b.numpy()) < 1e-10, (jit_compile, variable.name)


def assert_adjoint_matches_unrolled(
    potential, x, running_costs, loss, *, trace="exact", **options
):
    """Gradients of ``loss(x(1), ℓ(1), R(1))`` from :func:`ode.quadrature_solve` (with
    ``options``) against autodiff through :func:`unrolled_rk4`, 2 steps, w.r.t. x and weights."""
    n = x.shape[0]
    rhs = ode.flow_dynamics(potential, running_costs=running_costs, trace=trace)
    zeros = (tf.zeros([n], tf.float64), tf.zeros([n, len(running_costs)], tf.float64))
    variables = [x, *potential.trainable_weights]
    gradients = []
    for solve in ("adjoint", "unrolled"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            weights = potential.read_weights()
            if solve == "adjoint":
                x1, (log_det, costs) = ode.quadrature_solve(
                    rhs, x, zeros, weights, num_steps=2, t0=0.0, t1=1.0, **options
                )
            else:
                x1, log_det, costs = unrolled_rk4(
                    rhs, x, weights, num_steps=2, t0=0.0, t1=1.0, seed=options.get("seed")
                )
            total = loss(x1, log_det, costs)
        gradients.append(tape.gradient(total, variables))
    for variable, a, b in zip(variables, *gradients):
        assert relative_error(a.numpy(), b.numpy()) < 1e-10, variable.name


def test_discrete_adjoint_differentiates_the_same_random_probe(rng):
    """RNODE's one-probe Frobenius estimate (d > 10): the adjoint pass redraws each stage's
    probe from the stage's seed, so it differentiates the estimate the forward pass made."""
    assert_adjoint_matches_unrolled(
        random_potential(11, width=4),
        tf.constant(rng.normal(size=(3, 11))),
        (regularizers.kinetic_jacobian,),
        lambda x1, log_det, costs: tf.reduce_sum(costs),
        seed=tf.constant([7, 11]),
    )


@pytest.mark.slow
def test_second_derivatives_through_the_solve_fail_loudly(rng):
    """The adjoint loop is not differentiated: a second derivative raises instead of being
    silently zero."""
    potential = random_potential(2, width=3, num_layers=2)
    x = tf.constant(rng.normal(size=(4, 2)))
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            total = tf.reduce_sum(ode.integrate(potential, x, num_steps=1).log_det)
        gradient = inner.gradient(total, x)
    assert gradient.shape == (4, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Second derivatives"):
        outer.gradient(gradient, x)


@pytest.mark.parametrize("vjp_rows", [None, 2, 4])
def test_row_chunked_adjoint_gives_the_same_gradients(vjp_rows, rng):
    """The backward stage VJPs over row chunks (7 rows: chunks of 2, 2, 2, 1 or 4, 3)."""
    assert_adjoint_matches_unrolled(
        random_potential(2, width=4),
        tf.constant(rng.normal(size=(7, 2))),
        COSTS["transport+hjb"],
        lambda x1, log_det, costs: (
            tf.reduce_sum(x1**2) + tf.reduce_sum(log_det) + tf.reduce_sum(costs)
        ),
        vjp_rows=vjp_rows,
    )


def test_hutchinson_trace_is_unbiased_with_the_rademacher_variance(rng):
    """Over many probes the estimate's mean is the exact trace (autodiff Hessian) and its
    variance is the Rademacher one, 2 Σ_{i≠j} H_ij², point by point (float64)."""
    d, n, copies = 4, 3, 4000
    potential = random_potential(d, width=6)
    x = tf.constant(rng.normal(size=(n, d)))
    t = tf.constant(0.3, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        gradient_x = potential.gradient(x, t)[0]
    hessian = tape.batch_jacobian(gradient_x, x).numpy()  # [n, d, d]
    exact = np.trace(hessian, axis1=1, axis2=2)
    off_diagonal = hessian - np.einsum("nii->ni", hessian)[:, :, None] * np.eye(d)
    variance = 2 * np.sum(off_diagonal**2, axis=(1, 2))
    tiled = tf.tile(x, [copies, 1])  # each row draws its own probe
    _, estimates = ode.hutchinson_trace(
        potential, tiled, t, potential.read_weights(), tf.constant([3, 5])
    )
    estimates = estimates.numpy().reshape(copies, n)
    standard_error = np.sqrt(variance / copies)
    np.testing.assert_array_less(np.abs(estimates.mean(axis=0) - exact), 5 * standard_error)
    np.testing.assert_allclose(estimates.var(axis=0), variance, rtol=0.15)
    assert np.all(variance > 0)  # the estimate is random: the test above can fail


def test_hutchinson_log_det_is_unbiased_and_its_gradient_is_the_adjoint_of_its_probes(rng):
    d = 3
    potential = random_potential(d, width=5)
    x = tf.constant(rng.normal(size=(2, d)))
    exact = ode.integrate(potential, x, num_steps=3).log_det.numpy()
    copies = 3000
    estimate = ode.integrate(potential, tf.tile(x, [copies, 1]), num_steps=3, trace="hutchinson")
    samples = estimate.log_det.numpy().reshape(copies, 2)
    standard_error = samples.std(axis=0) / np.sqrt(copies)
    assert np.all(standard_error > 0)
    np.testing.assert_array_less(np.abs(samples.mean(axis=0) - exact), 5 * standard_error)
    assert_adjoint_matches_unrolled(
        potential,
        x,
        (regularizers.transport,),
        lambda x1, log_det, costs: tf.reduce_sum(log_det**2) + tf.reduce_sum(costs),
        seed=tf.constant([7, 11]),
        trace="hutchinson",
    )


def test_unknown_trace_is_refused():
    with pytest.raises(ValueError, match="`trace` must be one of"):
        ode.integrate(random_potential(2), tf.zeros([1, 2], tf.float64), num_steps=1, trace="x")
