"""OTFlowModel: objective terms, fit, metrics, gradients, save/load, distribution sharing."""

import zipfile

import h5py
import numpy as np
import pytest
import tensorflow as tf

from tfotflow import ode, regularizers
from tfotflow._keras import keras
from tfotflow.model import OTFlowModel, negative_log_likelihood
from tfotflow.registry import PluginError


def small_model(**kwargs):
    settings = dict(width=6, num_steps=2, dtype="float64", alpha=(1.0, 10.0, 2.0))
    return OTFlowModel(2, **{**settings, **kwargs})


def test_objective_terms_equal_a_direct_computation(rng):
    model = small_model()
    x = rng.normal(size=(16, 2))
    loss, terms = model.objective(x)
    state = ode.integrate(
        model.potential,
        tf.constant(x),
        num_steps=2,
        running_costs=(regularizers.transport, regularizers.hjb),
    )
    C = 0.5 * np.sum(state.x.numpy() ** 2, 1) + np.log(2 * np.pi) - state.log_det.numpy()
    np.testing.assert_allclose(terms["nll"], C.mean(), rtol=1e-12)
    np.testing.assert_allclose(terms["transport"], state.costs[:, 0].numpy().mean(), rtol=1e-12)
    np.testing.assert_allclose(terms["hjb"], state.costs[:, 1].numpy().mean(), rtol=1e-12)
    np.testing.assert_allclose(
        loss, 1.0 * terms["transport"] + 10.0 * C.mean() + 2.0 * terms["hjb"], rtol=1e-12
    )
    # The NLL term is −log p of the model's own distribution.
    np.testing.assert_allclose(-model.log_prob(x, num_steps=2), C, rtol=1e-10)
    np.testing.assert_allclose(negative_log_likelihood(state), C, rtol=1e-12)


def test_one_epoch_lowers_the_loss_and_reports_finite_metrics(rng):
    model = small_model(width=8)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    x = rng.normal(size=(256, 2)) * [2.0, 0.5] + [1.0, -1.0]
    before = float(model.objective(x)[0])
    history = model.fit(x, batch_size=64, epochs=3, validation_data=(x[:64],), verbose=0)
    after = float(model.objective(x)[0])
    assert after < before
    for key in ["loss", "nll", "transport", "hjb", "val_loss", "val_nll", "val_hjb"]:
        assert np.all(np.isfinite(history.history[key])), key
    results = model.evaluate(x, batch_size=128, return_dict=True, verbose=0)
    assert set(results) == {"loss", "nll", "transport", "hjb"}


def test_every_trainable_weight_gets_a_gradient(rng):
    model = small_model(num_layers=3)
    x = tf.constant(rng.normal(size=(8, 2)))
    with tf.GradientTape() as tape:
        loss, _ = model.objective(x)
    gradients = tape.gradient(loss, model.trainable_variables)
    # Φ's constant c moves no density: kept (reference checkpoints), but not trained.
    assert "c" not in [variable.name for variable in model.trainable_variables]
    assert "c" in [variable.name for variable in model.weights]
    for variable, gradient in zip(model.trainable_variables, gradients):
        assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0, variable


def test_eval_steps_differ_from_training_steps(rng):
    model = small_model(num_steps=2, eval_num_steps=5)
    x = rng.normal(size=(4, 2))
    assert model.flow.num_steps == 5
    np.testing.assert_allclose(model(x), model.log_prob(x, num_steps=5), rtol=1e-12)
    np.testing.assert_allclose(model(x, training=True), model.log_prob(x, num_steps=2), rtol=1e-12)


def test_distribution_shares_the_weights_and_samples(rng):
    model = small_model()
    distribution = model.distribution
    ids = {id(v) for v in distribution.trainable_variables}
    assert ids == {id(v.value) for v in model.potential.trainable_weights}
    samples = model.sample(5, seed=(1, 2))
    assert samples.shape == (5, 2) and samples.dtype == tf.float64


def test_keras_file_round_trip_keeps_log_prob(tmp_path, rng):
    model = small_model(regularizers={"transport": 1.0, "hjb": 2.0})
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    x = rng.normal(size=(32, 2))
    model.fit(x, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, OTFlowModel) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))


def test_a_conditional_file_saved_before_the_conditional_shift_loads_with_none(tmp_path, rng):
    """A .keras file of a conditional model written before B existed holds one weight of the
    model's own fewer: it loads, with B = 0, as the densities it was trained with."""
    conditions = rng.normal(size=(64, 1))
    x = rng.normal(size=(64, 2)) + 3 * conditions
    model = OTFlowModel(2, width=4, num_steps=2, dtype="float64", condition_dim=1)
    model.adapt(x, conditions, regress=False)  # B = 0: the old model's densities
    model.save(tmp_path / "new.keras")
    weights = tmp_path / "model.weights.h5"
    with zipfile.ZipFile(tmp_path / "new.keras") as new:
        weights.write_bytes(new.read(weights.name))
        with h5py.File(weights, "a") as store:
            assert len(store["vars"]) == 5  # μ, σ, μ_y, σ_y, B
            del store["vars/4"]
        rewritten = tmp_path / "old.keras"
        with zipfile.ZipFile(rewritten, "w") as old:
            for name in new.namelist():
                changed = name == weights.name
                old.writestr(name, weights.read_bytes() if changed else new.read(name))
    loaded = keras.models.load_model(rewritten)
    np.testing.assert_array_equal(loaded.condition_shift, np.zeros([1, 2]))
    np.testing.assert_array_equal(
        loaded.log_prob(x[:5], conditions[:5]), model.log_prob(x[:5], conditions[:5])
    )


@pytest.mark.slow  # the command line's tests train float32 with XLA in the fast set
def test_float32_and_xla_training(rng):
    model = OTFlowModel(3, width=8, num_steps=2)
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=True)
    history = model.fit(
        rng.normal(size=(64, 3)).astype("float32"), batch_size=32, epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
    assert model.log_prob(np.zeros((2, 3), "float32")).dtype == tf.float32


def test_custom_regularizer_weights_and_unknown_names():
    model = small_model(regularizers={"kinetic_jacobian": 0.5})
    _, terms = model.objective(np.ones((3, 2)))
    assert set(terms) == {"nll", "kinetic_jacobian"}
    with pytest.raises(PluginError, match="Unknown regularizer 'nope'.*hjb.*transport"):
        small_model(regularizers={"nope": 1.0})
    with pytest.raises(ValueError, match="Received: hjb=-1"):
        small_model(regularizers={"hjb": -1})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": (1.0, 2.0)}, "alpha"),
        ({"alpha": (0.0, 1.0, 1.0)}, "alpha"),
        ({"alpha": (1.0, float("inf"), 1.0)}, "three finite numbers"),
        ({"alpha": (float("nan"), 1.0, 1.0)}, "three finite numbers"),
        ({"condition_dim": -1}, "condition_dim"),
        ({"num_steps": 0}, "num_steps=0"),
        ({"dtype": "int32"}, "float32 or float64"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        small_model(**kwargs)


def test_hutchinson_training_trace_with_exact_evaluation():
    """``trace="hutchinson"`` changes the training step only: validation, ``log_prob`` and the
    saved config keep the exact trace and round-trip the option."""
    model = OTFlowModel(3, width=4, num_steps=2, trace="hutchinson")
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    history = model.fit(x, batch_size=32, epochs=1, verbose=0, validation_data=(x,))
    assert np.isfinite(history.history["nll"][0]) and np.isfinite(history.history["val_nll"][0])
    exact = model.objective(x)[1]["nll"]
    evaluated = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)["nll"]
    np.testing.assert_allclose(evaluated, exact, rtol=1e-5)
    assert OTFlowModel.from_config(model.get_config()).trace == "hutchinson"
    with pytest.raises(ValueError, match="`trace` must be one of"):
        OTFlowModel(2, trace="autodiff")


def test_fit_on_data_with_a_nan_stops_with_finite_weights(rng):
    from tfotflow.callbacks import NonFiniteLossError

    points = rng.normal(size=(64, 2))
    points[37, 1] = np.nan
    model = OTFlowModel(2, width=4, num_steps=1, dtype="float64")
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    with pytest.raises(NonFiniteLossError, match="non-finite .*nll=nan"):
        model.fit(points, batch_size=32, epochs=1, shuffle=False, verbose=0)
    assert all(np.all(np.isfinite(variable.numpy())) for variable in model.weights)


def test_score_samples_follow_the_weights_and_the_map_after_a_first_call(rng):
    # score_samples runs a compiled log_prob kept between calls: it must read the weights and
    # the affine map as they are at each call, and take each step count.
    model = small_model(normalization="diagonal")
    x = rng.normal(size=(40, 2))
    model.score_samples(x)
    model.adapt(3.0 * x + 1.0)
    model.set_weights([w + 0.1 * rng.normal(size=w.shape) for w in model.get_weights()])
    for steps in (None, 3):
        np.testing.assert_allclose(
            model.score_samples(x, num_steps=steps), model.log_prob(x, num_steps=steps), rtol=1e-12
        )
