"""Conditional OT-Flow p(x | y): the x-block trace, the unconditional limit, normalization for
every y, gradients, the TFP and Keras interfaces, and errors naming the condition."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfotflow import OTFlow, OTFlowModel, Potential, ode, testing
from tfotflow._keras import keras

from .test_potential import make_potential as random_potential

tfd = tfp.distributions


def make_potential(d, k, width=6, num_layers=3, seed=0):
    """A float64 conditional potential with every parameter random."""
    return random_potential(d, width, num_layers, seed=seed, condition_dim=k)


@pytest.mark.parametrize("d, k", [(1, 1), (2, 3), (4, 2)])
def test_trace_is_the_x_block_of_the_autodiff_hessian(d, k, rng):
    potential = make_potential(d, k)
    x = tf.constant(rng.normal(size=(7, d)))
    y = tf.constant(rng.normal(size=(7, k)))
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape(persistent=True) as inner:
            inner.watch([x, y])
            phi = potential(x, t=0.4, condition=y)
        gradient_x = inner.gradient(phi, x)
    hessian = outer.batch_jacobian(gradient_x, x)
    gradient_y = inner.gradient(phi, y)
    gradient, trace = potential.gradient_and_trace(x, 0.4, condition=y)
    assert gradient.shape == (7, d + k + 1)
    np.testing.assert_allclose(trace, tf.linalg.trace(hessian), rtol=1e-10)
    np.testing.assert_allclose(gradient[:, :d], gradient_x, rtol=1e-10)
    np.testing.assert_allclose(gradient[:, d:-1], gradient_y, rtol=1e-10)
    np.testing.assert_allclose(potential.gradient(x, 0.4, condition=y)[0], gradient_x, rtol=1e-10)


def test_condition_dim_zero_is_the_unconditional_model(rng):
    x = rng.normal(size=(6, 3))
    keras.utils.set_random_seed(3)
    plain = OTFlowModel(3, width=5, num_steps=3, dtype="float64")
    keras.utils.set_random_seed(3)
    zero = OTFlowModel(3, width=5, num_steps=3, dtype="float64", condition_dim=0)
    np.testing.assert_allclose(zero.log_prob(x), plain.log_prob(x), rtol=1e-14)
    assert zero.get_config()["condition_dim"] == 0


def test_the_condition_moves_the_density_and_solves_match_one_y_per_point(rng):
    """log p(x | y) per point equals the solve with y broadcast one point at a time."""
    potential = make_potential(2, 1)
    flow = OTFlow(potential, num_steps=3)
    x = rng.normal(size=(4, 2))
    y = rng.normal(size=(4, 1))
    ildj = flow.inverse_log_det_jacobian(x, event_ndims=1, conditional_input=y)
    one_by_one = [
        flow.inverse_log_det_jacobian(x[i], event_ndims=1, conditional_input=y[i])
        for i in range(4)
    ]
    np.testing.assert_allclose(ildj, np.stack(one_by_one), rtol=1e-12)
    shared = flow.inverse_log_det_jacobian(x, event_ndims=1, conditional_input=y[0])
    assert not np.allclose(shared, ildj)  # y matters
    assert shared.shape == (4,)
    many = flow.inverse_log_det_jacobian(x[0], event_ndims=1, conditional_input=y)
    np.testing.assert_allclose(many[0], ildj[0], rtol=1e-12)  # one x, many y: broadcast


@pytest.mark.parametrize("y", [-1.0, 0.0, 1.5])
def test_log_prob_integrates_to_one_over_x_for_each_y(y):
    """∫ p(x | y) dx = 1 on a grid (d = 2), for several y."""
    potential = make_potential(2, 1, width=8, num_layers=2, seed=1)
    for variable in potential.weights:
        variable.assign(variable * 0.5)  # a gentle flow, its density inside the grid
    distribution = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64)), OTFlow(potential, num_steps=8)
    )
    axis = np.linspace(-7.0, 7.0, 141)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    log_prob = distribution.log_prob(grid, bijector_kwargs={"conditional_input": [y]})
    mass = float(np.sum(np.exp(log_prob)) * (axis[1] - axis[0]) ** 2)
    assert abs(mass - 1.0) < 2e-3, mass


def test_log_det_and_round_trip_against_autodiff(rng):
    """The conditional flow's log-det (its RK4 trace integral) equals log |det| of autodiff's
    Jacobian of the solve at fixed y, to the discretization error, and forward inverts it."""
    potential = make_potential(3, 2)
    for variable in potential.weights:
        variable.assign(variable * 0.5)
    flow = OTFlow(potential, num_steps=16)
    y = tf.constant(rng.normal(size=(5, 2)))
    x = tf.constant(rng.normal(size=(5, 3)))
    testing.check_log_det_against_autodiff(flow, x, tolerance=1e-5, conditional_input=y)
    testing.check_round_trip(flow, x, tolerance=1e-4, conditional_input=y)
    testing.check_log_det_consistency(flow, x, tolerance=1e-4, conditional_input=y)


def test_gradients_reach_every_weight_and_the_condition(rng):
    model = OTFlowModel(2, width=5, num_steps=2, dtype="float64", condition_dim=2)
    x = tf.constant(rng.normal(size=(8, 2)))
    y = tf.constant(rng.normal(size=(8, 2)))
    testing.check_gradients_reach(
        lambda: -tf.reduce_mean(model.log_prob(x, y)),
        model.trainable_variables,
    )
    with tf.GradientTape() as tape:
        tape.watch(y)
        log_prob = model.log_prob(x, y)
    with tf.GradientTape() as check:
        check.watch(y)
        unrolled = -model.objective(x, y, num_steps=model.eval_num_steps)[1]["nll"]
    assert np.all(np.isfinite(tape.gradient(log_prob, y)))
    np.testing.assert_allclose(
        tf.reduce_mean(log_prob), unrolled, rtol=1e-12
    )  # log_prob and the objective's NLL agree
    assert np.any(check.gradient(unrolled, y) != 0)


def test_solve_gradient_in_the_condition_matches_autodiff_of_unrolled_rk4(rng):
    potential = make_potential(2, 2)
    x = tf.constant(rng.normal(size=(5, 2)))
    y = tf.constant(rng.normal(size=(5, 2)))

    def unrolled(y):
        def rhs(t, state):
            gradient, trace = potential.gradient_and_trace(state[0], t, condition=y)
            return -gradient[:, :2], -trace

        return ode.solve(rhs, (x, tf.zeros(5, tf.float64)), t0=0.0, t1=1.0, num_steps=3)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y)
        ours = ode.integrate(potential, x, num_steps=3, condition=y)
        loss = tf.reduce_sum(ours.x**2) + tf.reduce_sum(ours.log_det)
        x1, log_det = unrolled(y)
        expected = tf.reduce_sum(x1**2) + tf.reduce_sum(log_det)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    np.testing.assert_allclose(tape.gradient(loss, y), tape.gradient(expected, y), rtol=1e-10)


def test_keras_fit_sample_and_round_trip(tmp_path, rng):
    points = rng.normal(size=(64, 2)).astype("float32")
    conditions = rng.normal(size=(64, 1)).astype("float32")
    model = OTFlowModel(2, width=6, num_steps=2, condition_dim=1)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(points, conditions, batch_size=32, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["nll"]))
    pairs = tf.data.Dataset.from_tensor_slices((points, conditions)).batch(32)
    evaluated = model.evaluate(pairs, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        evaluated["nll"], -np.mean(model.log_prob(points, conditions)), rtol=1e-4
    )
    assert model.sample(5, conditions[0], seed=1).shape == (5, 2)
    assert model.sample(3, conditions[:4], seed=1).shape == (3, 4, 2)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.condition_dim == 1
    np.testing.assert_allclose(
        loaded.log_prob(points[:5], conditions[:5]), model.log_prob(points[:5], conditions[:5])
    )


def test_an_xla_step_takes_the_weights_and_data_as_run_time_inputs(rng):
    """Traced into an XLA-compiled step, the solve leaves the weights and the data as the
    program's parameters. (A nested compiled solve let XLA fold them in as constants, so a
    conditional training step was compiled again at every step: 40x slower.)"""
    x, y = tf.constant(rng.normal(size=(16, 3))), tf.constant(rng.normal(size=(16, 2)))
    model = OTFlowModel(3, width=4, num_steps=2, condition_dim=2, dtype="float64")
    model.log_prob(x[:2], y[:2])

    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = model.objective(x, y)[0]
        return tape.gradient(loss, model.trainable_variables)

    step = tf.function(gradients, jit_compile=True)
    hlo = step.experimental_get_compiler_ir(x, y)(stage="hlo")
    entry = hlo[hlo.index("ENTRY") :]
    parameters = entry[: entry.index("\n}")].count(" parameter(")
    assert parameters == 2 + len(model.weights)  # x, y and every weight
    for actual, expected in zip(step(x, y), tf.function(gradients)(x, y)):
        np.testing.assert_allclose(actual, expected, rtol=1e-9)


def test_bad_conditions_are_named(rng):
    model = OTFlowModel(2, width=4, num_steps=1, condition_dim=2)
    x = rng.normal(size=(3, 2))
    with pytest.raises(ValueError, match="`condition` is required"):
        model.log_prob(x)
    with pytest.raises(ValueError, match=r"`condition` must have shape \[..., 2\]"):
        model.log_prob(x, rng.normal(size=(3, 3)))
    with pytest.raises(ValueError, match="unconditional"):
        OTFlowModel(2, width=4).log_prob(x, rng.normal(size=(3, 2)))
    with pytest.raises(ValueError, match="points alone"):
        model.compile(optimizer="adam")
        model.fit(x, batch_size=3, epochs=1, verbose=0)
    flow = OTFlow(make_potential(2, 1), validate_args=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`conditional_input` must be finite"):
        flow.inverse(x, conditional_input=[[np.nan]] * 3)
    with pytest.raises(ValueError, match="`conditional_input` is required"):
        flow.inverse(x)
    with pytest.raises(ValueError, match="`condition_dim` must be at least 0"):
        Potential(condition_dim=-1)
