"""OTFlow bijector: round trip, log-dets against autodiff, density, caching, TFP composition."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfotflow import ode, testing
from tfotflow.bijector import OTFlow
from tfotflow.potential import Potential

tfd, tfb = tfp.distributions, tfp.bijectors


def random_potential(d, width=8, num_layers=2, seed=0, scale=0.3):
    potential = Potential(width=width, num_layers=num_layers, dtype="float64")
    potential.build((None, d))
    rng = np.random.default_rng(seed)
    for variable in potential.weights:
        variable.assign(rng.normal(scale=scale, size=variable.shape))
    return potential


def normal(d):
    return tfd.MultivariateNormalDiag(tf.zeros(d, tf.float64))


def test_round_trip_error_shrinks_like_h4(rng):
    flow = OTFlow(random_potential(3, scale=0.5), jit_compile=True)
    x = rng.normal(size=(16, 3))
    errors = [testing.check_round_trip(flow, x, tolerance=1.0, num_steps=n) for n in (4, 8, 16)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all(ratios > 10.0), (errors, ratios)
    assert errors[-1] < 1e-4


def test_log_det_matches_autodiff_jacobian(rng):
    flow = OTFlow(random_potential(3, num_layers=3), num_steps=6)
    testing.check_log_det_against_autodiff(flow, rng.normal(size=(5, 3)), tolerance=1e-5)


def test_forward_log_det_is_minus_inverse_log_det(rng):
    flow = OTFlow(random_potential(2), num_steps=8)
    testing.check_log_det_consistency(flow, rng.normal(size=(7, 2)), tolerance=1e-6)


def test_density_integrates_to_one_in_2d():
    flow = OTFlow(random_potential(2, width=6, scale=0.4), num_steps=8, jit_compile=True)
    distribution = tfd.TransformedDistribution(normal(2), flow)
    grid = np.linspace(-9.0, 9.0, 361)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    density = distribution.prob(points).numpy()
    mass = density.sum() * (grid[1] - grid[0]) ** 2
    assert abs(mass - 1.0) < 1e-3, mass


def test_log_prob_solves_once_and_agrees_with_the_bijector(monkeypatch, rng):
    flow = OTFlow(random_potential(2), num_steps=4)
    distribution = tfd.TransformedDistribution(normal(2), flow)
    x = tf.constant(rng.normal(size=(5, 2)))
    calls = []
    real = ode.integrate
    monkeypatch.setattr(ode, "integrate", lambda *a, **k: calls.append(k) or real(*a, **k))
    log_prob = distribution.log_prob(x)
    assert len(calls) == 1
    z = flow.inverse(tf.identity(x))
    expected = normal(2).log_prob(z) + flow.inverse_log_det_jacobian(tf.identity(x), 1)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-12)


def test_num_steps_per_call(rng):
    flow = OTFlow(random_potential(2), num_steps=2)
    distribution = tfd.TransformedDistribution(normal(2), flow)
    x = rng.normal(size=(4, 2))
    coarse = distribution.log_prob(x)
    fine = distribution.log_prob(x, bijector_kwargs={"num_steps": 6})
    np.testing.assert_allclose(
        fine,
        OTFlow(flow.potential, num_steps=6).inverse_log_det_jacobian(x, 1)
        + normal(2).log_prob(OTFlow(flow.potential, num_steps=6).inverse(x)),
        rtol=1e-12,
    )
    assert np.max(np.abs(coarse - fine)) > 1e-9  # the per-call step count took effect


def test_sampling_inverts_density_direction():
    flow = OTFlow(random_potential(2), num_steps=8)
    distribution = tfd.TransformedDistribution(normal(2), flow)
    samples = distribution.sample(6, seed=(1, 2))
    assert samples.shape == (6, 2) and samples.dtype == tf.float64
    np.testing.assert_array_equal(samples, distribution.sample(6, seed=(1, 2)))
    z = flow.inverse(tf.identity(samples))
    np.testing.assert_allclose(flow.forward(tf.identity(z)), samples, atol=1e-6)


def test_batch_shapes_broadcast(rng):
    flow = OTFlow(random_potential(2), num_steps=3)
    x = rng.normal(size=(2, 3, 2))
    y = flow.inverse(x)
    ildj = flow.inverse_log_det_jacobian(x, event_ndims=1)
    assert y.shape == (2, 3, 2) and ildj.shape == (2, 3)
    np.testing.assert_allclose(flow.inverse(x.reshape(6, 2)), np.reshape(y, (6, 2)), rtol=1e-12)
    # event_ndims=2 sums the per-point log-dets over the next axis, as TFP does.
    np.testing.assert_allclose(
        flow.inverse_log_det_jacobian(x, event_ndims=2), np.sum(ildj, axis=-1), rtol=1e-12
    )


def test_composes_in_a_chain(rng):
    flow = OTFlow(random_potential(2), num_steps=4)
    chain = tfb.Chain([tfb.Shift(tf.constant([1.0, -2.0], tf.float64)), flow])
    distribution = tfd.TransformedDistribution(normal(2), chain)
    x = rng.normal(size=(5, 2))
    shifted = tfd.TransformedDistribution(normal(2), flow).log_prob(x - [1.0, -2.0])
    np.testing.assert_allclose(distribution.log_prob(x), shifted, rtol=1e-12)


def test_trainable_variables_are_exposed_and_trainable(rng):
    potential = Potential(width=4, dtype="float64")
    flow = OTFlow(potential, num_steps=3)
    distribution = tfd.TransformedDistribution(normal(2), flow)
    assert flow.trainable_variables == ()  # not built yet: no weights exist
    distribution.log_prob(rng.normal(size=(3, 2)))
    names = {v.name for v in distribution.trainable_variables}
    assert len(distribution.trainable_variables) == len(potential.trainable_weights) == 7
    short_names = {name.split("/")[-1].split(":")[0] for name in names}
    # The constant c shifts Φ only, no density depends on it: a weight, but not trainable.
    assert short_names == {"A", "b", "w", "K_0", "b_0", "K_1", "b_1"}
    assert len(flow.variables) == len(potential.weights) == 8
    assert {id(v) for v in flow.trainable_variables} == {
        id(v.value) for v in potential.trainable_weights
    }

    x = tf.constant(rng.normal(size=(6, 2)))
    testing.check_gradients_reach(
        lambda: -tf.reduce_mean(distribution.log_prob(x)), distribution.trainable_variables
    )


def test_xla_bijector_matches_graph(rng):
    potential = random_potential(2)
    x = rng.normal(size=(5, 2))
    graph = tfd.TransformedDistribution(normal(2), OTFlow(potential, num_steps=4))
    xla = tfd.TransformedDistribution(normal(2), OTFlow(potential, num_steps=4, jit_compile=True))
    np.testing.assert_allclose(xla.log_prob(x), graph.log_prob(x), rtol=1e-12)


def test_float32_flow(rng):
    flow = OTFlow(Potential(width=8), num_steps=4)
    distribution = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(3)), flow)
    log_prob = distribution.log_prob(rng.normal(size=(4, 3)))
    assert log_prob.dtype == tf.float32 and np.all(np.isfinite(log_prob))


def test_bad_arguments(rng):
    with pytest.raises(TypeError, match="potential"):
        OTFlow(tf.keras.layers.Dense(3))
    with pytest.raises(ValueError, match="Received: num_steps=0"):
        OTFlow(Potential(), num_steps=0)
    with pytest.raises(ValueError, match="alpha_transport"):
        OTFlow(Potential(), alpha_transport=-1.0)
    flow = OTFlow(random_potential(2), num_steps=2)
    with pytest.raises(ValueError, match=r"y.shape=\[4, 3\]"):
        flow.inverse(rng.normal(size=(4, 3)))
    with pytest.raises(ValueError, match=r"x.shape=\[4, 5\]"):
        flow.forward(rng.normal(size=(4, 5)))
    with pytest.raises(TypeError, match=r"`y` .*y\.dtype=int32"):
        flow.inverse(tf.ones((4, 2), dtype=tf.int32))


def test_validate_args_rejects_non_finite_input():
    flow = OTFlow(random_potential(2), num_steps=2, validate_args=True)
    x = np.array([[0.0, np.nan], [1.0, 2.0]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite"):
        flow.inverse(x)
    xla = OTFlow(flow.potential, num_steps=2, validate_args=True, jit_compile=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite"):
        xla.forward(np.array([[np.inf, 0.0]]))


def test_gradients_under_a_plain_tape_with_and_without_xla(rng):
    """The solve's gradient (the discrete adjoint) crosses into and out of XLA as plain
    tensors, so an eager tape differentiates ``OTFlow(jit_compile=True)`` too."""
    potential = random_potential(2, num_layers=3)
    x = tf.constant(rng.normal(size=(5, 2)))
    gradients = []
    for jit_compile in (False, True):
        distribution = tfd.TransformedDistribution(
            normal(2), OTFlow(potential, num_steps=3, jit_compile=jit_compile)
        )
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = -tf.reduce_mean(distribution.log_prob(x))
        gradients.append(tape.gradient(loss, [x, *distribution.trainable_variables]))
    for graph, xla in zip(*gradients):
        np.testing.assert_allclose(xla, graph, rtol=1e-10)


def test_a_new_step_count_does_not_trace_again(rng):
    from tfotflow import ode

    flow = OTFlow(random_potential(2), num_steps=2)
    distribution = tfd.TransformedDistribution(normal(2), flow)
    x = rng.normal(size=(4, 2))
    distribution.log_prob(x)
    traces = ode.compiled_integrator(False).experimental_get_tracing_count()
    for num_steps in (3, 9, 17):
        distribution.log_prob(x, bijector_kwargs={"num_steps": num_steps})
    assert ode.compiled_integrator(False).experimental_get_tracing_count() == traces


def test_gradients_through_the_xla_solve_under_a_plain_tape(rng):
    """OTFlow(jit_compile=True) differentiates eagerly, as the graph-runtime solve does."""
    potential = random_potential(2, scale=0.5)
    x = tf.constant(rng.normal(size=(4, 2)))
    gradients = []
    for jit_compile in (False, True):
        flow = OTFlow(potential, num_steps=3, jit_compile=jit_compile)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(flow.inverse_log_det_jacobian(x, event_ndims=1))
        gradients.append(tape.gradient(loss, flow.trainable_variables))
    assert len(gradients[1]) == 7  # the constant c moves no density: not trainable
    for graph, xla in zip(*gradients):
        np.testing.assert_allclose(xla, graph, rtol=1e-10)
