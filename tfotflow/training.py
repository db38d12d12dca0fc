"""The one trainer: a flow-matching warm start, then maximum likelihood with the settings'
schedule, weight clip, solver-error control, validation, checkpoints and early stopping.

Every way of training an OT-Flow runs :func:`fit`: ``tfotflow train`` (through
:func:`tfotflow.runs.train_run` and :func:`train`), ``OTFlowModel.fit`` after a bare
``compile()`` (through :func:`fit_arrays_or_batches`), the images suite and every OT-Flow
contender of the benchmarks (which add only their clock and scoring as callbacks). The
settings are those of :mod:`tfotflow.settings` (a run's ``config["train"]``).

```none
warm start   settings["warm_start"] steps of FlowMatching (Adam at warm_start_learning_rate,
             constant or cosine-decayed to 0 by warm_start_schedule, batches of
             warm_start_batch_size, paired by warm_start_coupling: "ot" with
             warm_start_sinkhorn_iterations sweeps, or "independent"); as the main phase
             (no likelihood steps), validated on the flow-matching loss, the best weights
             kept, checkpointed
likelihood   Adam on J (OTFlowModel's objective), rate constant ("plateau": divided by 10 on
             validation plateaus) or cosine-decayed to 0 over the likelihood steps; before each
             step every weight clipped to ±weight_clip; every 50 steps the solve's error
             checked and its RK4 steps doubled above solver_tolerance; with validation data,
             early stopping on val_nll with the best weights kept (and, with a run directory,
             last.npz after every epoch and best.npz at each improvement)
```
"""

import math
import pathlib

import numpy as np
import tensorflow as tf

from tfotflow import checkpoint, serialization
from tfotflow._keras import keras
from tfotflow.callbacks import (
    Checkpoint,
    ClipWeights,
    SolverErrorControl,
    StopOnNonFinite,
    reference_recipe,
    refine_solve,
)
from tfotflow.distribute import shard_by_data
from tfotflow.flow_matching import FlowMatching
from tfotflow.hardware import use_xla
from tfotflow.settings import DEFAULTS, TRAIN_KEYS, check_schedule, rule_for
from tfotflow.validation import batch_points_and_conditions, check_int

# Rows of the solver-error check (SolverErrorControl): a diagnostic, not a fit.
CHECK_ROWS = 1000


def batch_stream(array, *, batch_size, seed, skip=0):
    """An endless stream of shuffled batches of ``array``'s rows, fixed by ``seed``.

    Pass e over the data is the stateless permutation seeded by (seed, e), so the stream is
    the same in every process and under every ``tf.distribute`` strategy, and ``skip``
    batches reproduce exactly where an interrupted run stopped. ``array`` may be a tuple of
    arrays with rows in step, e.g. (points, conditions): each batch is then a tuple.
    """
    n = len(array[0]) if isinstance(array, tuple) else len(array)
    points = tf.nest.map_structure(tf.constant, array)

    def permutation(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order)

    indices = tf.data.Dataset.range(2**62).flat_map(permutation)
    batches = indices.batch(batch_size, drop_remainder=True).skip(skip)
    batches = batches.map(
        lambda index: tf.nest.map_structure(lambda rows: tf.gather(rows, index), points)
    )
    return shard_by_data(batches.prefetch(tf.data.AUTOTUNE))


@serialization.register
class Cosine(keras.optimizers.schedules.CosineDecay):
    """Keras's ``CosineDecay`` from optimizer step ``start`` on: the rate is
    ``initial_learning_rate`` until ``start``, then ½ (1 + cos(π (step − start) / decay_steps))
    times it, and 0 after. A ``fit`` following the settings sets ``start`` to the step it
    begins at, so each ``fit`` runs its own cosine over its own steps."""

    def __init__(self, initial_learning_rate, decay_steps, start=0, **kwargs):
        super().__init__(initial_learning_rate, decay_steps, **kwargs)
        self.start = int(start)

    def __call__(self, step):
        return super().__call__(tf.maximum(tf.cast(step, tf.int64) - self.start, 0))

    def get_config(self):
        return {**super().get_config(), "start": self.start}


def learning_rate_schedule(learning_rate, schedule, iterations):
    """Adam's rate: constant (divided on plateaus by the recipe) or cosine-decayed to 0."""
    if check_schedule(schedule) == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, iterations)
    return learning_rate


def compile_for(model, settings, iterations):
    """Compiles ``model`` with Adam at the settings' rate and schedule over ``iterations``
    likelihood steps (at least one), XLA where it is faster (:func:`tfotflow.hardware.use_xla`)."""
    rate = learning_rate_schedule(
        settings["learning_rate"], settings["schedule"], max(iterations, 1)
    )
    with model.distribute_strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(rate), jit_compile=use_xla(model.dim))


# With validation data, the warm start validates at most this many times, evenly spaced, and
# stops after WARM_START_PATIENCE validations without improvement.
WARM_START_VALIDATIONS = 20
WARM_START_PATIENCE = 5


def flow_matching_phase(
    model,
    batches,
    settings,
    *,
    seed=0,
    validation_data=None,
    run_dir=None,
    resume_from=None,
    callbacks=(),
    verbose=0,
):
    """Fits ``model``'s potential by OT flow matching (:class:`tfotflow.FlowMatching`) for
    ``settings["warm_start"]`` steps on ``batches`` (a stream of point batches, or of
    (points, conditions) pairs), at ``warm_start_learning_rate`` (constant, or by
    ``warm_start_schedule="cosine"`` decayed to 0 over the steps), with
    each batch paired by ``warm_start_coupling`` (``warm_start_sinkhorn_iterations`` sweeps
    of the OT plan), the weights clipped after each step to ±``weight_clip`` (None: never).

    With ``validation_data`` (batches like ``batches``), the flow-matching loss of the
    validation rows (``val_flow_matching``, each row with fixed draws of z and t) is logged
    at up to :data:`WARM_START_VALIDATIONS` evenly spaced points; the phase stops after
    :data:`WARM_START_PATIENCE` of them without improvement and ends with the weights of the
    best. With a ``run_dir`` too, ``warm_start_last.npz`` is written at each validation and
    ``warm_start_best.npz`` at each improvement (weights, Adam's state, counters);
    ``resume_from``, the ``(arrays, record)`` of ``warm_start_last.npz``
    (:func:`tfotflow.checkpoint.read`), is restored and continues the phase where it stopped
    (``batches`` must skip the steps done: :func:`warm_start_steps_done`).

    Returns:
        The Keras ``History``: the ``flow_matching`` loss after each call of gcd(steps, 50)
        steps (several steps per call: a warm-start step is small and Python's per-step cost
        is not), or with validation after each validation.
    """
    steps = check_int("warm_start", settings["warm_start"], minimum=1)
    resume_state = resume_from[1]["state"] if resume_from else None
    per_call = math.gcd(steps, 50)
    epochs = steps // per_call
    policy = []
    if validation_data is not None:
        epochs = _warm_start_epochs(steps)
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_flow_matching",
            mode="min",
            patience=WARM_START_PATIENCE,
            restore_best_weights=True,
        )
        policy = [StopOnNonFinite(), stopper]
        if run_dir is not None:
            policy.append(
                Checkpoint(
                    str(run_dir),
                    monitor="val_flow_matching",
                    tracked=[stopper],
                    state={"seed": seed, "warm_start": steps},
                    resume_state=resume_state,
                    prefix="warm_start_",
                )
            )
    matching = flow_matching_model(model, settings, seed=seed, steps_per_execution=per_call)
    if resume_from:
        path = pathlib.Path(run_dir) / "warm_start_last.npz"
        checkpoint.restore(path, matching, contents=resume_from)
    history = matching.fit(
        batches,
        epochs=epochs,
        initial_epoch=resume_state["epoch"] if resume_state else 0,
        steps_per_epoch=steps // epochs,
        validation_data=validation_data,
        callbacks=[*callbacks, *policy],
        shuffle=False,
        verbose=verbose,
    )
    best = None if run_dir is None else pathlib.Path(run_dir) / "warm_start_best.npz"
    if validation_data is not None and best is not None and best.exists():
        checkpoint.restore(best, matching)  # also when a resume found the phase done
    return history


def flow_matching_model(model, settings, *, seed=0, steps_per_execution=1):
    """The compiled :class:`tfotflow.FlowMatching` of ``model`` by the warm start's settings
    (Adam at ``warm_start_learning_rate`` by ``warm_start_schedule``, XLA where it is
    faster)."""
    with model.distribute_strategy.scope():
        matching = FlowMatching(
            model,
            seed=seed,
            sinkhorn_iterations=settings["warm_start_sinkhorn_iterations"],
            clip=settings["weight_clip"] or None,
            coupling=settings["warm_start_coupling"],
        )
        rate = settings["warm_start_learning_rate"]
        if settings["warm_start_schedule"] == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(rate, settings["warm_start"])
        matching.compile(
            optimizer=keras.optimizers.Adam(rate),
            jit_compile=use_xla(model.dim),
            steps_per_execution=steps_per_execution,
        )
    return matching


def _warm_start_epochs(steps):
    """The validated warm start's epochs: the most, up to :data:`WARM_START_VALIDATIONS`,
    that split ``steps`` into equal whole calls of gcd(steps, 50) steps."""
    calls = steps // math.gcd(steps, 50)
    return max(e for e in range(1, WARM_START_VALIDATIONS + 1) if calls % e == 0)


def warm_start_steps_done(resume_state, steps):
    """The warm-start steps a checkpoint's ``resume_state`` (None: none) has done, of ``steps``
    in all."""
    return resume_state["epoch"] * (steps // _warm_start_epochs(steps)) if resume_state else 0


def warm_start(model, data, *, seed=0, callbacks=(), verbose=0, **settings):
    """The warm start alone (:func:`flow_matching_phase`) on a
    :class:`tfotflow.datasets.Dataset`'s training split (with its conditions), in batches of
    ``warm_start_batch_size`` rows drawn reproducibly by ``seed``.

    Args:
        model: an :class:`tfotflow.OTFlowModel`.
        data: a :class:`tfotflow.datasets.Dataset`.
        seed: the data order's and the draws' seed. Defaults to 0.
        callbacks: Keras callbacks (a progress display, …).
        verbose: Keras's verbosity. Defaults to 0.
        **settings: the warm start's settings (``warm_start``: its steps,
            ``warm_start_batch_size``, ``warm_start_learning_rate``,
            ``warm_start_sinkhorn_iterations``, ``warm_start_coupling``,
            ``warm_start_schedule``, ``weight_clip``),
            each defaulting to :data:`tfotflow.settings.DEFAULTS`.

    Returns:
        The Keras ``History`` of :func:`flow_matching_phase`.
    """
    settings = _with_defaults("warm_start", settings)
    batches = _warm_start_stream(data.split("train"), len(data.train), settings, seed)
    return flow_matching_phase(
        model, batches, settings, seed=seed, callbacks=callbacks, verbose=verbose
    )


def _warm_start_stream(arrays, rows, settings, seed, skip=0):
    """The warm start's stream of ``arrays`` (``rows`` rows): batches of
    ``warm_start_batch_size`` rows, or all of them when there are fewer, from batch ``skip``."""
    size = check_int("warm_start_batch_size", settings["warm_start_batch_size"], minimum=1)
    return batch_stream(arrays, batch_size=min(size, rows), seed=seed, skip=skip)


def _with_defaults(caller, settings):
    """``settings`` over :data:`tfotflow.settings.DEFAULTS`' training settings.

    Raises:
        TypeError: for a keyword that is no training setting, naming it.
    """
    unknown = sorted(set(settings) - set(TRAIN_KEYS))
    if unknown:
        raise TypeError(
            f"`{caller}` got unknown setting(s) {', '.join(unknown)}; the training settings "
            f"are {', '.join(TRAIN_KEYS)}"
        )
    return {**{key: DEFAULTS[key] for key in TRAIN_KEYS}, **settings}


def fit(
    model,
    batches,
    settings,
    *,
    epochs,
    steps_per_epoch,
    warm_start_batches=None,
    validation_data=None,
    check=None,
    run_dir=None,
    resume_state=None,
    warm_start_checkpoint=None,
    seed=0,
    callbacks=(),
    warm_start_callbacks=(),
    verbose=0,
    **fit_kwargs,
):
    """The one trainer: the warm start (when ``warm_start_batches`` are given and the
    settings ask for steps), then maximum likelihood on ``batches`` for ``epochs`` Keras
    epochs of ``steps_per_epoch`` steps (none when ``epochs`` is 0).

    Args:
        model: a compiled :class:`tfotflow.OTFlowModel`.
        batches: an endless stream of likelihood batches.
        settings: the training settings (:data:`tfotflow.settings.TRAIN_KEYS`).
        epochs: Keras epochs (validations).
        steps_per_epoch: likelihood steps in each epoch.
        warm_start_batches: the warm start's stream, or None for no warm start.
        validation_data: validation batches (then ``val_nll`` is logged, the plateau schedule
            and early stopping watch it, and the best weights are kept; a warm start that
            is the main phase, ``epochs`` 0, validates on them too, and checkpoints:
            :func:`flow_matching_phase`), or None.
        check: ``(points, conditions)`` of the solver-error control, or None for none.
        run_dir: where ``last.npz`` and ``best.npz`` go, or None for no checkpoints.
        resume_state: the state of ``run_dir/last.npz`` when resuming (no warm start then).
        warm_start_checkpoint: the ``(arrays, record)`` of ``run_dir/warm_start_last.npz``
            when resuming within the warm start (restored by :func:`flow_matching_phase`).
        seed: the warm start's draws' seed (the batches carry the data order's).
        callbacks: more Keras callbacks of the likelihood phase.
        warm_start_callbacks: more Keras callbacks of the warm start.
        verbose: Keras's verbosity of both phases.
        **fit_kwargs: passed to Keras ``fit`` (e.g. ``validation_freq``).

    Without likelihood steps (``epochs`` 0) the solve's RK4 steps are doubled until their
    error on ``check`` is within ``solver_tolerance`` (:func:`tfotflow.callbacks.refine_solve`).

    Returns:
        The likelihood phase's Keras ``History`` (empty when ``epochs`` is 0); its
        ``warm_start`` attribute is the warm start's (None when there was none).
    """
    warm = None
    if warm_start_batches is not None and settings["warm_start"] and not resume_state:
        warm = flow_matching_phase(
            model,
            warm_start_batches,
            settings,
            seed=seed,
            # the main phase selects its own weights; a start before likelihood steps does not
            validation_data=None if epochs else validation_data,
            run_dir=None if epochs else run_dir,
            resume_from=warm_start_checkpoint,
            callbacks=warm_start_callbacks,
            verbose=verbose,
        )
    if not epochs:  # flow matching alone: the solve's steps from its error
        doubled = bool(settings["solver_tolerance"]) and check is not None
        while doubled:
            doubled = refine_solve(model, *check, tolerance=settings["solver_tolerance"])[1]
        history = keras.callbacks.History()
        history.warm_start = warm
        return history
    control = []
    if settings["solver_tolerance"] and check is not None:
        control = [SolverErrorControl(*check, tolerance=settings["solver_tolerance"])]
    if validation_data is not None:
        state = {key: settings[key] for key in ("iterations", "batch_size")}
        policy = reference_recipe(
            clip=settings["weight_clip"] or None,
            patience=settings["patience"],
            checkpoint_directory=None if run_dir is None else str(run_dir),
            state={"seed": seed, **state},
            resume_state=resume_state,
            reduce_on_plateau=settings["schedule"] == "plateau",
        )
    else:  # nothing to watch: the clip and the stop on a non-finite loss
        clip = settings["weight_clip"]
        policy = [*([ClipWeights(clip)] if clip else []), StopOnNonFinite()]
    history = keras.Model.fit(
        model,
        batches,
        epochs=epochs,
        initial_epoch=resume_state["epoch"] if resume_state else 0,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation_data,
        # The solver's control first, so that the logs hold its steps; then the caller's
        # callbacks: a metrics log written before the checkpoint of the same epoch is never
        # behind it (a resume truncates the log to the checkpoint).
        callbacks=[*control, *callbacks, *policy],
        shuffle=False,  # the streams are shuffled, reproducibly
        verbose=verbose,
        **fit_kwargs,
    )
    if run_dir is not None and (pathlib.Path(run_dir) / "best.npz").exists():
        with model.distribute_strategy.scope():
            checkpoint.restore(pathlib.Path(run_dir) / "best.npz", model)
    history.warm_start = warm
    return history


def train(
    model,
    data,
    *,
    run_dir,
    seed=0,
    resume=False,
    callbacks=(),
    warm_start_callbacks=(),
    verbose=0,
    **settings,
):
    """:func:`fit` on a :class:`tfotflow.datasets.Dataset`: its training split (with its
    conditions), validated on its validation split every ``validate_every`` steps, the
    solver checked on its first 1,000 validation rows, checkpointed in ``run_dir``.

    A model created under a ``tf.distribute`` strategy's scope trains under it:
    ``batch_size`` is then the global batch, split across replicas. ``resume`` continues from
    ``run_dir/last.npz`` (weights, optimizer, counters, data order, RK4 steps). An
    uncompiled model is compiled by :func:`compile_for`.

    Args:
        model: an :class:`tfotflow.OTFlowModel`.
        data: a :class:`tfotflow.datasets.Dataset`.
        run_dir: the checkpoint folder.
        seed: the data order's and the warm start's seed. Defaults to 0.
        resume: continue from ``run_dir/last.npz``, or, when the likelihood steps have
            not written one yet, the warm start from ``run_dir/warm_start_last.npz``.
            Defaults to False.
        callbacks: more Keras callbacks of the likelihood phase (a progress display, a
            metrics log, a benchmark's clock, …).
        warm_start_callbacks: more Keras callbacks of the warm start.
        verbose: Keras's verbosity. Defaults to 0.
        **settings: training settings (:data:`tfotflow.settings.TRAIN_KEYS`), each
            defaulting to :data:`tfotflow.settings.DEFAULTS`.

    Returns:
        The Keras ``History`` of :func:`fit`.

    Raises:
        TypeError: for a keyword that is no training setting, naming it.
    """
    settings = _with_defaults("train", settings)
    iterations = check_int("iterations", settings["iterations"], minimum=0)
    batch_size = min(check_int("batch_size", settings["batch_size"], minimum=1), len(data.train))
    validate_every = min(
        check_int("validate_every", settings["validate_every"], minimum=1), max(iterations, 1)
    )
    run_dir = pathlib.Path(run_dir)
    if getattr(model, "optimizer", None) is None:
        compile_for(model, settings, iterations)
    resume_state = warm_start_checkpoint = None
    if resume and not (run_dir / "last.npz").exists() and settings["warm_start"]:
        warm_start_checkpoint = checkpoint.read(run_dir / "warm_start_last.npz")
    elif resume:
        with model.distribute_strategy.scope():
            resume_state = checkpoint.restore(run_dir / "last.npz", model)
        SolverErrorControl.resume(model, resume_state.get("logs", {}))
    skip = resume_state["epoch"] * validate_every if resume_state else 0
    train = data.split("train")
    rows = slice(0, CHECK_ROWS)
    warm_start_state = warm_start_checkpoint[1]["state"] if warm_start_checkpoint else None
    warm_skip = warm_start_steps_done(warm_start_state, settings["warm_start"])
    return fit(
        model,
        batch_stream(train, batch_size=batch_size, seed=seed, skip=skip),
        {**settings, "batch_size": batch_size},
        epochs=math.ceil(iterations / validate_every),
        steps_per_epoch=validate_every,
        warm_start_batches=_warm_start_stream(
            train, len(data.train), settings, seed, skip=warm_skip
        )
        if settings["warm_start"]
        else None,
        validation_data=shard_by_data(
            tf.data.Dataset.from_tensor_slices(data.split("val")).batch(batch_size)
        ),
        check=(data.val[rows], data.conditions["val"][rows] if data.conditional else None),
        run_dir=run_dir,
        resume_state=resume_state,
        warm_start_checkpoint=warm_start_checkpoint,
        seed=seed,
        callbacks=callbacks,
        warm_start_callbacks=warm_start_callbacks,
        verbose=verbose,
    )


def fit_arrays_or_batches(
    model, x, y=None, *, batch_size=None, epochs=None, warm_start=None, **kwargs
):
    """Keras ``fit`` of a model compiled with no optimizer: :func:`fit` with the settings
    :func:`tfotflow.settings.recipe` gives for the data's d, k and n, ``batch_size`` and the
    step count (``epochs`` × steps per epoch) as given.

    ``x`` is points [n, d] (with conditions ``y`` [n, k]) or a ``tf.data.Dataset`` of
    batches (of (points, conditions) pairs), whose steps per epoch are ``steps_per_epoch`` or
    its cardinality. Each ``fit`` runs its own cosine from the settings' rate over its own
    steps (:class:`Cosine`; a second ``fit`` is a warm restart, continuing from the weights
    and Adam's moments); only the first runs the warm start unless ``warm_start`` says how
    many steps. Without ``validation_data`` or ``validation_split``, a random tenth of the
    rows is held out for validation (as a file run's split does): training keeps the weights
    of the best validation NLL (early stopping). The solver's error is checked on the first
    1,000 training rows. On the first ``fit``
    a model with a normalization that :meth:`~tfotflow.OTFlowModel.adapt` has not set yet is
    adapted to the points (and conditions), as ``tfotflow train FILE`` standardizes a file,
    with the rule's spread (for a ``tf.data.Dataset``, to its first 1,000 rows or more).

    Raises:
        ValueError: for a ``tf.data.Dataset`` of unknown or infinite cardinality without
            ``steps_per_epoch``, naming it.
    """
    steps_per_epoch = kwargs.pop("steps_per_epoch", None)
    validation_data = kwargs.pop("validation_data", None)
    validation_split = kwargs.pop("validation_split", None)
    first = int(model.optimizer.iterations.numpy()) == 0
    if isinstance(x, tf.data.Dataset):
        if steps_per_epoch is None:
            cardinality = int(x.cardinality().numpy())
            if cardinality <= 0:
                raise ValueError(
                    "`fit` on a tf.data.Dataset of unknown or infinite cardinality needs "
                    "`steps_per_epoch` (the cosine schedule spans epochs × steps_per_epoch). "
                    f"Received: cardinality={cardinality}, steps_per_epoch=None"
                )
            steps_per_epoch = cardinality
        batches, batch_size = x.repeat(), _batch_rows(x)
        head = list(batches.take(max(1, math.ceil(CHECK_ROWS / batch_size))))  # the check's
        points, conditions = _concatenate(head, model.condition_dim)
        points = np.asarray(points)
        conditions = None if conditions is None else np.asarray(conditions)
        rows, warm_batches = None, batches
    else:
        points = np.asarray(x)
        conditions = None if y is None else np.asarray(y)
        if validation_data is None:
            held = _hold_out(points, conditions, validation_split)
            if held is not None:
                (points, conditions), validation_data = held
        rows = len(points)
        arrays = points if conditions is None else (points, conditions)
    # the rule for these rows (for a tf.data.Dataset, its first 1,000 or more)
    settings = {
        **{key: DEFAULTS[key] for key in TRAIN_KEYS},
        **rule_for(points, model.condition_dim),
    }
    if first and model.normalization and not model.adapted:  # as a run standardizes a file
        model.adapt(points, conditions, spread=settings["spread"])
    if rows is not None:
        batch_size = min(batch_size or settings["batch_size"], rows)
        steps_per_epoch = steps_per_epoch or math.ceil(rows / batch_size)
        batches = batch_stream(arrays, batch_size=batch_size, seed=0)
        warm_batches = _warm_start_stream(arrays, rows, settings, seed=0)
    if epochs is None:  # the settings' likelihood steps (none: their flow matching alone)
        epochs = math.ceil(settings["iterations"] / steps_per_epoch)
    else:
        check_int("epochs", epochs, minimum=1)
    steps = epochs * steps_per_epoch
    schedule = model.optimizer._learning_rate
    schedule.initial_learning_rate = settings["learning_rate"]
    schedule.decay_steps = max(steps, 1)
    schedule.start = int(model.optimizer.iterations.numpy())
    model.train_function = None  # traced again: the schedule's constants changed
    warm_steps = settings["warm_start"] if first and warm_start is None else (warm_start or 0)
    warm_steps = check_int("warm_start", warm_steps, minimum=0)
    return fit(
        model,
        batches,
        {**settings, "warm_start": warm_steps, "iterations": steps, "batch_size": batch_size},
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        warm_start_batches=warm_batches if warm_steps else None,
        check=(
            np.asarray(points[:CHECK_ROWS], model.precision),
            None if conditions is None else np.asarray(conditions[:CHECK_ROWS], model.precision),
        ),
        validation_data=None
        if validation_data is None
        else _validation_batches(validation_data, batch_size, model.condition_dim),
        callbacks=kwargs.pop("callbacks", None) or (),
        verbose=kwargs.pop("verbose", "auto"),
        **kwargs,
    )


# The rows a settings-following ``fit`` of arrays holds out for validation by default: a file
# run's share (its split is 0.8 / 0.1 / 0.1).
HOLD_OUT = 0.1


def _hold_out(points, conditions, validation_split):
    """``((training points, conditions), validation)`` of arrays, or None to train on all
    rows: without ``validation_split``, a random :data:`HOLD_OUT` of the rows (seeded); with
    it, Keras's: its last fraction of the rows (0: none)."""
    n = len(points)
    if validation_split is None:
        order = np.random.default_rng(0).permutation(n)
        held = max(1, round(HOLD_OUT * n)) if n > 1 else 0
    else:
        if not 0 <= validation_split < 1:
            raise ValueError(
                f"`validation_split` must be in [0, 1). Received: {validation_split!r}"
            )
        order, held = np.arange(n), int(validation_split * n)
    if not held:
        return None
    train, val = order[: n - held], order[n - held :]
    if conditions is None:
        return (points[train], None), points[val]
    return (points[train], conditions[train]), (points[val], conditions[val])


def _validation_batches(validation_data, batch_size, condition_dim):
    """Keras's ``validation_data`` (arrays, a tuple of them, or a ``tf.data.Dataset``) as
    batches."""
    if isinstance(validation_data, tf.data.Dataset):
        return validation_data
    if isinstance(validation_data, (tuple, list)):
        parts = tuple(np.asarray(part) for part in validation_data if part is not None)
        validation_data = parts[0] if len(parts) == 1 or not condition_dim else parts[:2]
    return tf.data.Dataset.from_tensor_slices(validation_data).batch(batch_size)


def _batch_rows(batches):
    """Rows in the first batch of a stream of batches."""
    first = next(iter(batches.take(1)))
    return int(tf.shape(tf.nest.flatten(first)[0])[0])


def _concatenate(batches, condition_dim):
    """The points (and conditions) of a list of batches, concatenated."""
    pairs = [batch_points_and_conditions(batch, condition_dim) for batch in batches]
    points = tf.concat([p for p, _ in pairs], 0)
    conditions = None if pairs[0][1] is None else tf.concat([c for _, c in pairs], 0)
    return points, conditions
