"""Checkpoints, the recipe's callbacks, resumable training and the stop on NaN."""

import os
import stat
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tfotflow import checkpoint, datasets, training
from tfotflow._keras import keras
from tfotflow.callbacks import (
    ClipWeights,
    NonFiniteLossError,
    SolverErrorControl,
    reference_recipe,
    refine_solve,
)
from tfotflow.model import OTFlowModel


def toy_data():
    return datasets.load("moons", seed=1, num_train=512, num_val=64, num_test=64)


def fresh_model():
    keras.utils.set_random_seed(7)
    model = OTFlowModel(2, width=6, num_steps=2, dtype="float64", alpha=(1.0, 10.0, 1.0))
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    return model


def weights_of(model):
    return [np.asarray(v) for v in model.weights]


class StopAfter(keras.callbacks.Callback):
    """Simulates a kill at the end of epoch ``epochs``, before its checkpoint is written (the
    caller's callbacks run before the recipe's): the last checkpoint is of epoch ``epochs``−1,
    and the resumed run must redo epoch ``epochs``."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.parametrize("solver_tolerance", [0.01, 1e-12])
def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path, solver_tolerance):
    # With a tolerance of 1e-12 the training steps double at every validation (2 → 16
    # before the kill): the resumed run must take them up from its checkpoint.
    tf.config.experimental.enable_op_determinism()
    data = toy_data()
    settings = dict(
        iterations=12, batch_size=64, validate_every=3, seed=5, solver_tolerance=solver_tolerance
    )

    straight = fresh_model()
    training.train(straight, data, run_dir=tmp_path / "straight", **settings)

    interrupted = fresh_model()
    with pytest.raises(KeyboardInterrupt):
        training.train(
            interrupted, data, run_dir=tmp_path / "resumed", callbacks=[StopAfter(3)], **settings
        )
    state = checkpoint.read(tmp_path / "resumed" / "last.npz")[1]["state"]
    assert state["epoch"] == 2

    resumed = fresh_model()  # a new process would start from scratch like this
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the steps doubling, when they do
        training.train(resumed, data, run_dir=tmp_path / "resumed", resume=True, **settings)
    assert int(resumed.optimizer.iterations) == int(straight.optimizer.iterations) == 12
    assert resumed.num_steps == straight.num_steps == (2 if solver_tolerance == 0.01 else 32)
    for a, b in zip(weights_of(straight), weights_of(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


def test_checkpoint_round_trip_and_corruption(tmp_path):
    model = fresh_model()
    model.fit(np.random.default_rng(0).normal(size=(32, 2)), batch_size=16, verbose=0)
    path = tmp_path / "last.npz"
    checkpoint.save(path, model, state={"epoch": 3})
    good = path.read_bytes()

    other = fresh_model()
    assert checkpoint.restore(path, other) == {"epoch": 3}
    for a, b in zip(weights_of(model), weights_of(other)):
        np.testing.assert_array_equal(a, b)
    assert int(other.optimizer.iterations) == int(model.optimizer.iterations) == 2

    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupted"):
        checkpoint.restore(path, fresh_model())
    flipped = bytearray(good)
    offset = good.find(np.asarray(model.potential.kernels[0]).tobytes())
    assert offset > 0
    flipped[offset + 5] ^= 0xFF  # corrupted inside an array's bytes
    path.write_bytes(bytes(flipped))
    with pytest.raises(checkpoint.CheckpointError, match="corrupted"):
        checkpoint.restore(path, fresh_model())
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.restore(tmp_path / "absent.npz", fresh_model())


def test_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = fresh_model()
    path = tmp_path / "last.npz"
    checkpoint.save(path, model, state={"epoch": 1})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, model, state={"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.npz"]  # no temporary left behind


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        checkpoint.atomic_write_bytes(tmp_path / "file", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "file").stat().st_mode) == 0o666 & ~umask


def test_checkpoint_from_another_model_is_refused(tmp_path):
    checkpoint.save(tmp_path / "c.npz", OTFlowModel(3, width=4))
    with pytest.raises(checkpoint.CheckpointError, match="shapes"):
        checkpoint.restore(tmp_path / "c.npz", fresh_model())


class PoisonAt(keras.callbacks.Callback):
    """Sets a weight to NaN before step ``step`` (1-based)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations) + 1 == self.step:
            self.model.potential.w.assign(np.full(self.model.potential.width, np.nan))


def test_nan_stops_training_naming_term_and_step_and_keeps_the_last_checkpoint(tmp_path):
    model = fresh_model()
    data = toy_data()
    with pytest.raises(NonFiniteLossError, match=r"step 5: non-finite .*nll=nan.*last.npz"):
        training.train(
            model,
            data,
            iterations=12,
            batch_size=64,
            validate_every=2,
            run_dir=tmp_path,
            callbacks=[PoisonAt(5)],
        )
    state = checkpoint.restore(tmp_path / "last.npz", fresh_model())
    assert state["epoch"] == 2 and all(np.isfinite(list(state["logs"].values())))


def test_nan_before_the_first_checkpoint_points_at_none(tmp_path):
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written") as caught:
        training.train(
            fresh_model(),
            toy_data(),
            iterations=12,
            batch_size=64,
            validate_every=4,
            run_dir=tmp_path,
            callbacks=[PoisonAt(1)],
        )
    assert "last.npz" not in str(caught.value) and not (tmp_path / "last.npz").exists()


def test_clip_weights_alone_on_any_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    model.layers[0].kernel.assign(np.full((2, 3), 5.0))
    model.fit(np.zeros((4, 2)), np.zeros((4, 3)), verbose=0, callbacks=[ClipWeights(1.5)])
    assert np.max(np.abs(model.layers[0].kernel.numpy())) == 1.5


def test_reference_recipe_contents(tmp_path):
    names = [type(c).__name__ for c in reference_recipe(checkpoint_directory=str(tmp_path))]
    assert names == [
        "ClipWeights",
        "StopOnNonFinite",
        "ReduceLROnPlateau",
        "EarlyStopping",
        "Checkpoint",
    ]


def test_warm_start_takes_the_sinkhorn_sweeps(monkeypatch):
    from tfotflow import flow_matching

    sweeps = []
    original = flow_matching.ot_pairs

    def counting(x0, z, *, seed, relative_epsilon=0.01, iterations=100):
        sweeps.append(iterations)
        return original(x0, z, seed=seed, relative_epsilon=relative_epsilon, iterations=iterations)

    monkeypatch.setattr(flow_matching, "ot_pairs", counting)
    data = datasets.load("moons", num_train=64, num_val=8, num_test=8)
    model = OTFlowModel(2, width=4, num_steps=1)
    training.warm_start(
        model, data, warm_start=2, warm_start_batch_size=32, warm_start_sinkhorn_iterations=7
    )
    assert sweeps and set(sweeps) == {7}  # traced with the run's setting


def largest_weight(model):
    return max(float(np.max(np.abs(v))) for v in model.potential.trainable_variables)


@pytest.mark.parametrize("weight_clip", [0.05, 0, None])
def test_training_and_warm_start_clip_the_weights_to_the_runs_bound(tmp_path, weight_clip):
    data = toy_data()
    model = fresh_model()
    assert largest_weight(model) > 0.1  # the initial weights exceed the bound below
    training.warm_start(
        model, data, warm_start=3, warm_start_batch_size=32, weight_clip=weight_clip
    )
    if weight_clip:  # the warm start clips after each update
        assert largest_weight(model) <= weight_clip
    else:
        assert largest_weight(model) > 0.1
    model.optimizer.learning_rate.assign(1e-3)
    training.train(
        model,
        data,
        iterations=4,
        batch_size=64,
        validate_every=2,
        run_dir=tmp_path,
        weight_clip=weight_clip,
        solver_tolerance=0,
    )
    if weight_clip:  # clipped before each step: at most one Adam step (≈ the rate) beyond
        assert largest_weight(model) <= weight_clip + 1.1e-3
    else:
        assert largest_weight(model) > 0.1


def test_runs_written_before_the_trace_setting_load_with_the_exact_trace():
    from tfotflow import runs

    config = {
        "model": {
            "width": 4,
            "num_layers": 2,
            "rank": 2,
            "alpha": [1.0, 30.0, 1.0],
            "num_steps": 2,
            "eval_num_steps": 2,
            "dtype": "float32",
        }
    }
    assert runs.new_model(config, 2).trace == "exact"
    config["model"]["trace"] = "hutchinson"
    assert runs.new_model(config, 2).trace == "hutchinson"


def test_refine_solve_doubles_the_steps_when_their_error_exceeds_the_tolerance():
    model = fresh_model()  # 2 training steps; evaluation takes 2 as well
    points = np.random.default_rng(3).normal(size=(40, 2))
    coarse, fine = (np.asarray(model.log_prob(points, num_steps=n)) for n in (2, 4))
    expected = np.abs(coarse - fine).mean()  # independent of scoring.discretization_error
    assert expected > 1e-9  # an untrained 2-step solve is not exact

    report, doubled = refine_solve(model, points, tolerance=10 * expected)
    assert not doubled and (model.num_steps, model.eval_num_steps) == (2, 2)
    np.testing.assert_allclose(report["mean"], expected, rtol=1e-10)
    assert (report["rows"], report["num_steps"]) == (40, 2)

    report, doubled = refine_solve(model, points, tolerance=expected / 10)
    assert doubled and (model.num_steps, model.eval_num_steps) == (4, 8)
    np.testing.assert_allclose(report["mean"], expected, rtol=1e-10)

    _, doubled = refine_solve(model, points, tolerance=1e-300, max_steps=7)
    assert not doubled and model.num_steps == 4  # 8 would exceed max_steps


def test_solver_error_control_recompiles_training_with_the_doubled_steps():
    model = fresh_model()
    traced = []  # the steps each compiled train and test step solves with
    objective = model.objective

    def recording(*args, num_steps=None, **kwargs):
        traced.append(num_steps or model.num_steps)
        return objective(*args, num_steps=num_steps, **kwargs)

    model.objective = recording
    points = np.random.default_rng(0).normal(size=(64, 2))
    control = SolverErrorControl(points[:20], tolerance=1e-12, every=3, max_steps=8)
    with pytest.warns(UserWarning, match="2-step training solve's error reached .* with 4"):
        history = model.fit(points, batch_size=16, epochs=2, callbacks=[control], verbose=0)
    # Checks after steps 3 and 6 (mid-epoch) and at each epoch's end (step 4, step 8): the
    # steps double at step 3 (to 4) and at step 4 (to 8), then reach max_steps.
    assert list(dict.fromkeys(traced)) == [2, 4, 8]  # Keras may trace a step twice
    assert history.history["num_steps"] == [8, 8]
    assert history.history["eval_num_steps"] == [16, 16]
    assert all(e > 0 for e in history.history["solver_error"])


@pytest.mark.slow
def test_a_killed_main_phase_of_flow_matching_resumes_where_it_stopped(tmp_path):
    # Flow matching alone (iterations=0) validates and checkpoints at each of its validations
    # (4 of 50 steps here); a run killed within it continues it, and the solve's steps come
    # from its error alone.
    tf.config.experimental.enable_op_determinism()
    data = toy_data()
    settings = dict(
        iterations=0,
        batch_size=64,
        seed=5,
        warm_start=200,
        warm_start_batch_size=32,
        warm_start_coupling="independent",
        warm_start_schedule="cosine",
        weight_clip=None,
    )
    straight = fresh_model()
    history = training.train(straight, data, run_dir=tmp_path / "straight", **settings)
    logged = history.warm_start.history
    assert len(logged["val_flow_matching"]) == 4  # validated after every 50 steps
    best = checkpoint.read(tmp_path / "straight" / "warm_start_best.npz")[1]["state"]
    assert best["best"] == pytest.approx(min(logged["val_flow_matching"]))

    interrupted = fresh_model()
    with pytest.raises(KeyboardInterrupt):
        training.train(
            interrupted,
            data,
            run_dir=tmp_path / "resumed",
            warm_start_callbacks=[StopAfter(3)],
            **settings,
        )
    assert not (tmp_path / "resumed" / "last.npz").exists()
    state = checkpoint.read(tmp_path / "resumed" / "warm_start_last.npz")[1]["state"]
    assert state["epoch"] == 2

    resumed = fresh_model()
    training.train(resumed, data, run_dir=tmp_path / "resumed", resume=True, **settings)
    assert resumed.num_steps == straight.num_steps
    for a, b in zip(weights_of(straight), weights_of(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_a_warm_start_before_likelihood_steps_is_not_validated(tmp_path):
    # Before likelihood steps the warm start is a start: the likelihood phase validates.
    data = toy_data()
    history = training.train(
        fresh_model(),
        data,
        run_dir=tmp_path,
        iterations=2,
        validate_every=2,
        warm_start=20,
        warm_start_coupling="independent",
    )
    assert "val_flow_matching" not in history.warm_start.history
    assert "val_nll" in history.history
    assert not (tmp_path / "warm_start_last.npz").exists()


def test_the_warm_start_ends_with_the_weights_of_its_best_validation(tmp_path):
    # A rate far too high makes later validations worse: the phase keeps the best one's
    # weights, stops after WARM_START_PATIENCE validations without improvement, and a
    # resume that finds the phase done starts from the same best weights.
    data = toy_data()
    model = fresh_model()
    settings = {
        **training._with_defaults("test", {}),
        "warm_start": 1000,
        "warm_start_learning_rate": 0.5,
        "warm_start_coupling": "independent",
        "weight_clip": None,
    }
    batches = training._warm_start_stream(data.split("train"), 512, settings, seed=0)
    validation = tf.data.Dataset.from_tensor_slices(data.val).batch(64)
    history = training.flow_matching_phase(
        model, batches, settings, validation_data=validation, run_dir=tmp_path
    )
    losses = history.history["val_flow_matching"]
    best = int(np.argmin(losses))
    assert len(losses) == min(best + 1 + training.WARM_START_PATIENCE, 20)
    matching = training.flow_matching_model(model, settings)
    assert float(matching.evaluate(validation, verbose=0)) == pytest.approx(losses[best])
    saved = checkpoint.read(tmp_path / "warm_start_best.npz")[0]
    for i, weight in enumerate(weights_of(model)):
        np.testing.assert_array_equal(saved[f"weight/{i}"], weight)


def test_flow_matching_alone_needs_warm_start_steps():
    from tfotflow.settings import DEFAULTS, build_config, check_config

    config = build_config(
        "moons",
        recommended={"num_steps": 2},
        overrides={"iterations": 0},
        seed=0,
        data_dir=None,
        options={},
    )
    with pytest.raises(ValueError, match=r"`iterations`=0 .* Received: warm_start=0"):
        check_config(config, 2)
    config["train"]["warm_start"] = DEFAULTS["warm_start_batch_size"]
    check_config(config, 2)
