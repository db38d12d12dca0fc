"""Training a model on a dataset with the reference recipe, checkpointed and resumable."""

import math
import pathlib

import tensorflow as tf

from tfotflow import checkpoint
from tfotflow._keras import keras
from tfotflow.callbacks import WEIGHT_CLIP, SolverErrorControl, reference_recipe
from tfotflow.distribute import shard_by_data
from tfotflow.flow_matching import FlowMatching
from tfotflow.hardware import use_xla
from tfotflow.scoring import TRUST_NATS
from tfotflow.validation import check_int


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


SCHEDULES = ("plateau", "cosine")
# The smallest loop :func:`train` runs: one step of one point, validated after it.
LOOP_MINIMA = {"iterations": 1, "batch_size": 1, "validate_every": 1}


def learning_rate_schedule(learning_rate, schedule, iterations):
    """Adam's rate: constant (divided on plateaus by the recipe) or cosine-decayed to 0."""
    if schedule not in SCHEDULES:
        raise ValueError(f"`schedule` must be one of {SCHEDULES}. Received: {schedule!r}")
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, iterations)
    return learning_rate


def warm_start(
    model,
    data,
    *,
    steps,
    batch_size=256,
    learning_rate=0.02,
    sinkhorn_iterations=100,
    weight_clip=WEIGHT_CLIP,
    seed=0,
    callbacks=(),
    verbose=0,
):
    """Fits ``model``'s potential by OT flow matching (:class:`tfotflow.FlowMatching`).

    Args:
        model: an :class:`tfotflow.OTFlowModel`.
        data: a :class:`tfotflow.datasets.Dataset`; its training split is used (with its
            conditions, for a conditional model).
        steps: flow-matching steps.
        batch_size: points per step (the OT coupling is over the batch). Defaults to 256.
        learning_rate: Adam's rate. Defaults to 0.02.
        sinkhorn_iterations: Sinkhorn sweeps of each step's coupling. Defaults to 100.
        weight_clip: after each step the weights are clipped to [−weight_clip, weight_clip]
            (as in :func:`train`); 0 or None: never. Defaults to 1.5.
        seed: the data order's and the draws' seed. Defaults to 0.
        callbacks: Keras callbacks (a progress display, …).
        verbose: Keras' verbosity. Defaults to 0.

    Returns:
        The Keras ``History``: the ``flow_matching`` loss after each call of
        gcd(``steps``, 50) steps.
    """
    steps = check_int("steps", steps, minimum=1)
    batch_size = min(check_int("batch_size", batch_size, minimum=1), len(data.train))
    with model.distribute_strategy.scope():
        matching = FlowMatching(
            model, seed=seed, sinkhorn_iterations=sinkhorn_iterations, clip=weight_clip or None
        )
        # Several steps per call: a warm-start step is small and Python's per-step cost is not.
        per_call = math.gcd(steps, 50)
        matching.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            jit_compile=use_xla(model.dim),
            steps_per_execution=per_call,
        )
    stream = batch_stream(data.split("train"), batch_size=batch_size, seed=seed)
    return matching.fit(
        stream,
        epochs=steps // per_call,
        steps_per_epoch=per_call,
        callbacks=list(callbacks),
        shuffle=False,
        verbose=verbose,
    )


def train(
    model,
    data,
    *,
    iterations,
    batch_size,
    run_dir,
    learning_rate=0.01,
    validate_every=50,
    patience=10,
    seed=0,
    resume=False,
    schedule="plateau",
    solver_tolerance=TRUST_NATS,
    weight_clip=WEIGHT_CLIP,
    callbacks=(),
    verbose=0,
):
    """Trains ``model`` on ``data.train``, validating on ``data.val`` every few iterations
    (with their conditions, for a conditional dataset and model).

    One Keras "epoch" is ``validate_every`` iterations. ``run_dir`` receives ``last.npz``
    after every epoch and ``best.npz`` at each validation improvement; at the end the best
    weights are restored. A model created under a ``tf.distribute`` strategy's scope trains
    under it: ``batch_size`` is then the global batch, split across replicas.

    Args:
        model: an :class:`tfotflow.OTFlowModel` (compiled here with Adam if it is not).
        data: a :class:`tfotflow.datasets.Dataset`.
        iterations: total optimizer steps.
        batch_size: points per step.
        run_dir: the checkpoint folder.
        learning_rate: Adam's initial rate when compiling here. Defaults to 0.01.
        validate_every: iterations between validations and checkpoints. Defaults to 50.
        patience: validations without improvement before the rate drops tenfold (and three
            times that before stopping). Defaults to 10.
        seed: the data-order seed. Defaults to 0.
        resume: continue from ``run_dir/last.npz`` (weights, optimizer, counters, data order).
        schedule: "plateau" (the reference recipe: a constant rate divided by 10 on
            validation plateaus) or "cosine" (decayed to 0 over ``iterations``; plateaus only
            stop early). Defaults to "plateau".
        solver_tolerance: nats of the training solve's error (mean |log p at n RK4 steps −
            at 2n| on 1,000 validation rows, checked every 50 steps) above which training
            doubles its steps (:class:`tfotflow.callbacks.SolverErrorControl`); 0 or None:
            never. Defaults to 0.01.
        weight_clip: before each step every weight is clipped to [−weight_clip,
            weight_clip] (:class:`tfotflow.callbacks.ClipWeights`); 0 or None: never.
            Defaults to 1.5, the OT-Flow reference's bound.
        callbacks: more Keras callbacks (a progress display, …).
        verbose: Keras' verbosity. Defaults to 0.

    Returns:
        The Keras ``History``.
    """
    iterations = check_int("iterations", iterations, minimum=LOOP_MINIMA["iterations"])
    batch_size = check_int("batch_size", batch_size, minimum=LOOP_MINIMA["batch_size"])
    validate_every = check_int(
        "validate_every", min(validate_every, iterations), minimum=LOOP_MINIMA["validate_every"]
    )
    run_dir = pathlib.Path(run_dir)
    rate = learning_rate_schedule(learning_rate, schedule, iterations)  # checks `schedule`
    with model.distribute_strategy.scope():
        if getattr(model, "optimizer", None) is None:
            model.compile(optimizer=keras.optimizers.Adam(rate), jit_compile=use_xla(model.dim))
        resume_state = checkpoint.restore(run_dir / "last.npz", model) if resume else None
    if resume_state:
        SolverErrorControl.resume(model, resume_state.get("logs", {}))
    control = []
    if solver_tolerance:
        rows = slice(0, 1000)
        conditions = data.conditions["val"][rows] if data.conditional else None
        control = [SolverErrorControl(data.val[rows], conditions, tolerance=solver_tolerance)]
    initial_epoch = resume_state["epoch"] if resume_state else 0
    epochs = math.ceil(iterations / validate_every)
    batch_size = min(batch_size, len(data.train))
    stream = batch_stream(
        data.split("train"), batch_size=batch_size, seed=seed, skip=initial_epoch * validate_every
    )
    validation = shard_by_data(
        tf.data.Dataset.from_tensor_slices(data.split("val")).batch(batch_size)
    )
    recipe = reference_recipe(
        clip=weight_clip or None,
        patience=patience,
        checkpoint_directory=str(run_dir),
        state={"seed": seed, "iterations": iterations, "batch_size": batch_size},
        resume_state=resume_state,
        reduce_on_plateau=schedule == "plateau",
    )
    history = model.fit(
        stream,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=validate_every,
        validation_data=validation,
        # The solver's control first, so that the logs hold its steps; then the caller's
        # callbacks: a metrics log written before the checkpoint of the same epoch is never
        # behind it (a resume truncates the log to the checkpoint).
        callbacks=[*control, *callbacks, *recipe],
        shuffle=False,  # the stream is shuffled, reproducibly, by batch_stream
        verbose=verbose,
    )
    if (run_dir / "best.npz").exists():
        with model.distribute_strategy.scope():
            checkpoint.restore(run_dir / "best.npz", model)
    return history
