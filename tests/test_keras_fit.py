"""Keras ``compile(); fit(...)`` runs the one trainer with the settings of the data: the rate
follows the settings at every d, ``tf.data`` input gets its schedule, a second ``fit`` trains
at a non-zero rate, and the warm start shows and can be skipped."""

import numpy as np
import pytest
import tensorflow as tf

from tfotflow import OTFlowModel, settings
from tfotflow._keras import keras


class FirstRate(keras.callbacks.Callback):
    """Reads the optimizer's rate at the first step of each ``fit``."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.rates.append(float(self.model.optimizer.learning_rate.numpy()))


def points(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype("float32")


@pytest.mark.parametrize("dim", [2, 43])
def test_fit_starts_from_the_settings_rate_at_every_dimension(dim):
    model = OTFlowModel(dim, width=4, num_steps=1)
    model.compile()
    rate = FirstRate()
    model.fit(points(64, dim), batch_size=32, epochs=1, warm_start=0, callbacks=[rate], verbose=0)
    assert rate.rates[0] == pytest.approx(settings.recipe_learning_rate(dim))
    assert rate.rates[0] == pytest.approx(settings.recipe(dim, 64)["learning_rate"])


def test_fit_on_tf_data_takes_its_schedule_from_the_cardinality():
    model = OTFlowModel(2, width=4, num_steps=1)
    model.compile()
    rate = FirstRate()
    batches = tf.data.Dataset.from_tensor_slices(points(128, 2)).batch(32)  # 4 batches
    model.fit(batches, epochs=2, warm_start=3, callbacks=[rate], verbose=0)
    assert model.optimizer._learning_rate.decay_steps == 8
    assert rate.rates[0] == pytest.approx(0.03)
    assert int(model.optimizer.iterations.numpy()) == 8
    assert float(model.optimizer.learning_rate.numpy()) < 1e-6  # the cosine ended


def test_fit_on_an_endless_tf_data_stream_needs_steps_per_epoch():
    model = OTFlowModel(2, width=4, num_steps=1)
    model.compile()
    endless = tf.data.Dataset.from_tensor_slices(points(64, 2)).batch(32).repeat()
    with pytest.raises(ValueError, match="needs `steps_per_epoch`"):
        model.fit(endless, warm_start=0, verbose=0)
    history = model.fit(endless, steps_per_epoch=3, epochs=1, warm_start=0, verbose=0)
    assert len(history.history["loss"]) == 1
    assert model.optimizer._learning_rate.decay_steps == 3


def test_a_second_fit_trains_at_a_non_zero_rate():
    model = OTFlowModel(2, width=4, num_steps=1)
    model.compile()
    x = points(64, 2)
    model.fit(x, batch_size=32, epochs=2, warm_start=0, verbose=0)
    assert float(model.optimizer.learning_rate.numpy()) < 1e-6  # the first cosine ended
    before = [w.numpy() for w in model.potential.trainable_weights]
    rate = FirstRate()
    model.fit(x, batch_size=32, epochs=2, callbacks=[rate], verbose=0)
    assert rate.rates[0] == pytest.approx(0.03)  # a new cosine over this fit's steps
    assert int(model.optimizer.iterations.numpy()) == 8
    after = [w.numpy() for w in model.potential.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_the_warm_start_is_in_its_own_history_and_skippable():
    model = OTFlowModel(2, width=4, num_steps=1)
    model.compile()
    x = points(64, 2)
    history = model.fit(x, batch_size=32, epochs=1, warm_start=20, verbose=0)
    assert len(history.warm_start.history["flow_matching"]) == 2  # two calls of 10 steps
    assert len(history.history["loss"]) == 1
    skipped = OTFlowModel(2, width=4, num_steps=1)
    skipped.compile()
    assert skipped.fit(x, batch_size=32, epochs=1, warm_start=0, verbose=0).warm_start is None


def test_fit_with_an_own_optimizer_is_plain_keras_and_refuses_a_warm_start():
    model = OTFlowModel(2, width=4, num_steps=1)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(points(64, 2), batch_size=32, epochs=1, verbose=0)
    assert sorted(history.history) == ["hjb", "loss", "nll", "transport"]
    with pytest.raises(ValueError, match="warm_start"):
        model.fit(points(64, 2), warm_start=5, verbose=0)


@pytest.mark.slow  # about two minutes: the settings' 1,000 warm-start and ~2,800 likelihood steps
def test_the_shortest_keras_path_reaches_the_posterior():
    """The README's shortest path, on 10,000 simulated pairs of the 10-D linear-Gaussian
    posterior: OTFlowModel(10, condition_dim=10), compile(), fit(θ, x) (adapted to the pairs
    as a run adapts a file) scores 2,000 held-out pairs within 0.1 nats of the exact
    posterior."""
    from tfotflow import datasets

    data = datasets.load("linear_gaussian", num_train=10_000, num_val=10, num_test=2_000)
    keras.utils.set_random_seed(0)
    model = OTFlowModel(10, condition_dim=10)
    model.compile()
    model.fit(data.train, data.conditions["train"], verbose=0)
    assert model.adapted
    theta, x = data.test, data.conditions["test"]
    nll = -float(np.mean(model.score_samples(theta, x)))
    exact = -float(np.mean(data.metadata.log_prob(theta, x)))
    assert nll - exact < 0.1, (nll, exact)


def test_a_model_following_the_settings_loads_in_a_fresh_interpreter(tmp_path):
    """Its optimizer's schedule (tfotflow.training.Cosine) is found by `import tfotflow`."""
    import subprocess
    import sys

    model = OTFlowModel(2, width=4, num_steps=1)
    model.compile()
    model.fit(points(64, 2), batch_size=32, epochs=1, warm_start=0, verbose=0)
    model.save(tmp_path / "model.keras")
    code = (
        "import sys, keras, tfotflow\n"
        "model = keras.models.load_model(sys.argv[1])\n"
        "schedule = model.optimizer._learning_rate\n"
        "print(type(schedule).__name__, schedule.decay_steps, schedule.start)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "model.keras")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split()[-3:] == ["Cosine", "2", "0"]  # 58 rows after the hold-out
