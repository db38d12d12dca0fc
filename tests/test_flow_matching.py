"""The flow-matching warm start: the OT coupling, the loss, the Keras model and the phase."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linear_sum_assignment

import tfotflow
from tfotflow._keras import keras
from tfotflow.flow_matching import FlowMatching, flow_matching_loss, ot_pairs, sinkhorn_log_plan


def test_sinkhorn_plan_has_uniform_marginals_and_beats_independent_pairing(rng):
    x = rng.normal(size=(40, 2))
    z = rng.normal(size=(40, 2)) + 1.0
    cost = np.sum((x[:, None] - z[None]) ** 2, axis=-1)
    plan = np.exp(sinkhorn_log_plan(tf.constant(cost), epsilon=0.05, iterations=500).numpy())
    np.testing.assert_allclose(plan.sum(axis=0), 1 / 40, rtol=1e-10)
    np.testing.assert_allclose(plan.sum(axis=1), 1 / 40, rtol=1e-2)  # within the sweeps
    rows, columns = linear_sum_assignment(cost)
    optimal = cost[rows, columns].mean()
    assert np.sum(plan * cost) < 1.05 * optimal < 0.8 * cost.mean()


def test_ot_pairs_reorder_z_near_the_exact_assignment(rng):
    """Each output row is a row of z, and the pairing's cost is within a few percent of the
    exact assignment's (scipy), far below a random pairing's (float64)."""
    x = tf.constant(rng.normal(size=(64, 3)))
    z = tf.constant(rng.normal(size=(64, 3)) * 2.0)
    paired = ot_pairs(x, z, seed=tf.constant([1, 2]), relative_epsilon=0.002, iterations=400)
    distances = np.sum((paired.numpy()[:, None] - z.numpy()[None]) ** 2, axis=-1)
    assert np.all(distances.min(axis=1) == 0.0)  # rows of z
    cost = np.sum((x.numpy()[:, None] - z.numpy()[None]) ** 2, axis=-1)
    rows, columns = linear_sum_assignment(cost)
    achieved = np.mean(np.sum((x.numpy() - paired.numpy()) ** 2, axis=-1))
    assert achieved < 1.05 * cost[rows, columns].mean()
    assert achieved < 0.5 * cost.mean()


def test_flow_matching_loss_matches_autodiff_of_the_potential(rng):
    potential = tfotflow.Potential(width=6, num_layers=3, dtype="float64")
    potential.build((None, 2))
    for variable in potential.trainable_weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape))
    x0, z = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    t = rng.uniform(size=(5, 1))
    x_t = tf.constant((1 - t) * x0 + t * z)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        phi = potential(x_t, tf.constant(t))  # one time per point, [n, 1]
    expected = np.mean(np.sum((-tape.gradient(phi, x_t).numpy() / 2.0 - (z - x0)) ** 2, -1))
    received = flow_matching_loss(
        potential, tf.constant(x0), tf.constant(z), tf.constant(t), alpha_transport=2.0
    )
    np.testing.assert_allclose(received.numpy(), expected, rtol=1e-12)


def test_warm_start_learns_a_shift_and_keeps_weights_in_the_clip(rng):
    """Data N(μ, I): the optimal map to N(0, I) is the shift x − μ, a constant velocity. After a
    short warm start, the density of held-out points is near the truth's, and the loss is
    reported."""
    keras.utils.set_random_seed(0)
    mu = np.array([2.0, -1.0])
    data = (rng.normal(size=(4096, 2)) + mu).astype("float32")
    model = tfotflow.OTFlowModel(2, width=8, num_steps=4)
    test = rng.normal(size=(2000, 2)) + mu
    before = -float(np.mean(model.log_prob(test.astype("float32"))))
    matching = FlowMatching(model, sinkhorn_iterations=30)
    matching.compile(optimizer=keras.optimizers.Adam(0.05), steps_per_execution=25)
    history = matching.fit(data, batch_size=256, epochs=20, verbose=0)
    losses = history.history["flow_matching"]
    assert losses[-1] < 0.25 * losses[0]
    after = -float(np.mean(model.log_prob(test.astype("float32"))))
    entropy = np.log(2 * np.pi) + 1.0  # of a 2-D standard normal, shifted or not
    assert after - entropy < 0.15 < 1.0 < before - entropy
    assert all(np.max(np.abs(v.numpy())) <= 1.5 for v in model.potential.trainable_weights)


def test_warm_start_is_reproducible_from_its_seed(rng):
    x = rng.normal(size=(32, 2)).astype("float32")
    losses = []
    for _ in range(2):
        keras.utils.set_random_seed(0)  # the same initial weights
        matching = FlowMatching(tfotflow.OTFlowModel(2, width=4), seed=3)
        losses.append([float(matching.loss_on(x, step)) for step in (0, 1)])
    assert losses[0] == losses[1] and losses[0][0] != losses[0][1]


def test_the_independent_coupling_keeps_each_point_with_its_own_draw(rng):
    """With coupling="independent" the loss is the regression onto z − x₀ for the step's own
    draws z (in order); the OT coupling reorders them and its loss is lower."""
    x = rng.normal(size=(64, 2)).astype("float32") + 3.0
    model = tfotflow.OTFlowModel(2, width=4)
    independent = FlowMatching(model, seed=5, coupling="independent")
    seeds = tf.random.experimental.stateless_split(tf.constant([5, 0], tf.int64), 3)
    z = tf.random.stateless_normal(x.shape, seed=seeds[0])
    t = tf.random.stateless_uniform([64, 1], seed=seeds[2])
    expected = flow_matching_loss(model.potential, tf.constant(x), z, t)
    np.testing.assert_allclose(float(independent.loss_on(x, 0)), float(expected), rtol=1e-6)
    paired = FlowMatching(model, seed=5, coupling="ot")
    assert float(paired.loss_on(x, 0)) < float(independent.loss_on(x, 0))


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("relative_epsilon", 0.0, "relative_epsilon"),
        ("sinkhorn_iterations", 0, "sinkhorn_iterations"),
        ("clip", -1.0, "clip"),
        ("coupling", "sinkhorn", "coupling"),
    ],
)
def test_bad_flow_matching_options_are_named(option, value, match):
    with pytest.raises(ValueError, match=match):
        FlowMatching(tfotflow.OTFlowModel(2, width=4), **{option: value})


@pytest.mark.slow
def test_training_phase_writes_its_loss_then_trains_by_likelihood(tmp_path):
    data = tfotflow.datasets.load("8gaussians", num_train=2000, num_val=200, num_test=10)
    model = tfotflow.OTFlowModel(2, width=8, num_steps=2)
    history = tfotflow.training.warm_start(model, data, warm_start=60, warm_start_batch_size=128)
    assert len(history.history["flow_matching"]) == 6  # calls of gcd(60, 50) = 10 steps
    result = tfotflow.training.train(
        model,
        data,
        iterations=20,
        batch_size=256,
        validate_every=10,
        schedule="cosine",
        run_dir=tmp_path,
    )
    assert np.isfinite(result.history["val_nll"][-1])
    assert float(model.optimizer.learning_rate.numpy()) < 1e-6  # decayed to 0 at the end
    with pytest.raises(ValueError, match="`schedule` must be one of"):
        tfotflow.training.learning_rate_schedule(0.1, "linear", 10)
