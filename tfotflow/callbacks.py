"""Keras callbacks of the OT-Flow training recipe; each also works alone with any Keras model.

The recipe of Onken et al. (2021): Adam, parameters clipped to [−1.5, 1.5] before every step,
the learning rate divided by 10 when the validation NLL stops improving, early stopping with
the best weights kept — plus a stop on the first non-finite loss and atomic checkpoints.
"""

import math
import os
import warnings

import numpy as np

from tfotflow import checkpoint
from tfotflow._keras import keras
from tfotflow.distribute import is_chief
from tfotflow.scoring import discretization_error
from tfotflow.settings import DEFAULTS, TRUST_NATS, WEIGHT_CLIP


class ClipWeights(keras.callbacks.Callback):
    """Clips every trainable weight to [−limit, limit] before each training step.

    Args:
        limit: the bound. Defaults to 1.5, the OT-Flow reference's value.
    """

    def __init__(self, limit=WEIGHT_CLIP):
        super().__init__()
        self.limit = float(limit)

    def on_train_batch_begin(self, batch, logs=None):
        self.clip(self.model.trainable_variables, self.limit)

    @staticmethod
    def clip(variables, limit=WEIGHT_CLIP):
        """Clips ``variables`` to [−limit, limit] in place (``limit`` None: leaves them)."""
        if limit is None:
            return
        for variable in variables:
            variable.assign(keras.ops.clip(variable, -limit, limit))


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or Inf; the message names the term and the step."""


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first step whose loss or any reported term is NaN or Inf.

    Raises :class:`NonFiniteLossError` out of ``fit`` naming the bad term(s), the step, and
    (when given) the last good checkpoint, which is left untouched.

    Args:
        checkpoint_path: the checkpoint to mention in the message. Defaults to None.
    """

    def __init__(self, checkpoint_path=None):
        super().__init__()
        self.checkpoint_path = checkpoint_path

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad = {name: value for name, value in logs.items() if not math.isfinite(float(value))}
        if not bad:
            return
        step = int(self.model.optimizer.iterations.numpy()) if self.model.optimizer else batch + 1
        terms = ", ".join(f"{name}={float(value)}" for name, value in bad.items())
        others = ", ".join(
            f"{name}={float(value):.4g}" for name, value in logs.items() if name not in bad
        )
        message = f"training stopped at step {step}: non-finite {terms}"
        if others:
            message += f" (finite: {others})"
        if self.checkpoint_path is not None and os.path.exists(self.checkpoint_path):
            message += f"; the last good checkpoint is {self.checkpoint_path}"
        elif self.checkpoint_path is not None:
            message += (
                "; no checkpoint was written before it (start again, e.g. with a lower rate)"
            )
        self.model.stop_training = True
        raise NonFiniteLossError(message)


class Checkpoint(keras.callbacks.Callback):
    """Writes ``last.npz`` after every epoch and ``best.npz`` when ``monitor`` improves (each
    name after ``prefix``).

    Both are atomic (see :mod:`tfotflow.checkpoint`) and hold the optimizer state, so training
    resumes exactly. Nothing is written for an epoch whose logs hold a NaN or Inf, nor by a
    worker that is not the chief of a ``tf.distribute`` cluster.

    Args:
        directory: where the files go.
        monitor: the log to minimise for ``best.npz``. Defaults to "val_nll" (falls back to
            "nll" without validation).
        tracked: callbacks whose counters (``wait``, ``best``, ``cooldown_counter``) are saved
            too, e.g. ``ReduceLROnPlateau`` and ``EarlyStopping``. Defaults to none.
        state: extra JSON state to store (e.g. the data seed). Defaults to none.
        resume_state: the state of the checkpoint training resumes from; the tracked counters
            are put back when training begins (after the callbacks reset themselves).
        prefix: the start of both file names (e.g. "warm_start_"). Defaults to none.
    """

    COUNTERS = ("wait", "best", "cooldown_counter", "best_epoch")

    def __init__(
        self,
        directory,
        *,
        monitor="val_nll",
        tracked=(),
        state=None,
        resume_state=None,
        prefix="",
    ):
        super().__init__()
        self.directory = directory
        self.prefix = prefix
        self.monitor = monitor
        self.tracked = list(tracked)
        self.extra_state = dict(state or {})
        self.resume_state = resume_state
        self.best = math.inf

    def on_train_begin(self, logs=None):
        if self.resume_state:
            self.best = self.resume_state.get("best", math.inf)
            for callback, counters in zip(self.tracked, self.resume_state.get("tracked", [])):
                for key, value in counters.items():
                    setattr(callback, key, value)

    @property
    def last_path(self):
        return f"{self.directory}/{self.prefix}last.npz"

    @property
    def best_path(self):
        return f"{self.directory}/{self.prefix}best.npz"

    def on_epoch_end(self, epoch, logs=None):
        logs = {name: float(value) for name, value in (logs or {}).items()}
        chief = is_chief(self.model.distribute_strategy)
        if not all(math.isfinite(value) for value in logs.values()) or not chief:
            return
        value = logs.get(self.monitor, logs.get("nll", math.inf))
        improved = value < self.best
        if improved:
            self.best = value
        state = {
            **self.extra_state,
            "epoch": epoch + 1,
            "best": self.best,
            "logs": logs,
            "tracked": [
                {
                    key: _plain(getattr(callback, key))
                    for key in self.COUNTERS
                    if hasattr(callback, key)
                }
                for callback in self.tracked
            ],
        }
        checkpoint.save(self.last_path, self.model, state=state)
        if improved:
            checkpoint.save(self.best_path, self.model, state=state)


def refine_solve(model, points, conditions=None, *, tolerance=TRUST_NATS, max_steps=64):
    """Doubles the model's training RK4 steps n when their error on ``points`` exceeds
    ``tolerance``: e = mean |log p with n steps − with 2n| (nats, on up to 1,000 rows,
    :func:`tfotflow.scoring.discretization_error`). Evaluation then takes at least 2 · 2n
    steps. The training steps never exceed ``max_steps``.

    A caller that compiled a step around the model's solve must compile it again when the
    steps change.

    Returns:
        ``(report, doubled)``: the report of :func:`~tfotflow.scoring.discretization_error`
        (``rows``, ``num_steps`` n, ``mean`` e, ``max``), and whether the steps doubled.
    """
    n = model.num_steps
    report = discretization_error(model, points, conditions, num_steps=n)
    doubled = report["mean"] > tolerance and 2 * n <= max_steps
    if doubled:
        model.num_steps = 2 * n
        model.eval_num_steps = max(model.eval_num_steps, 4 * n)
    return report, doubled


class SolverErrorControl(keras.callbacks.Callback):
    """Keeps the training solve a density: doubles its RK4 steps when their error grows.

    Trained with few RK4 steps, the potential can turn stiff late in training where the n-step
    solve cannot follow it; training then fits the solver's error, and the n-step
    log-density, which it maximizes, stops being a density (``benchmarks/README.md``). Every
    ``every`` training steps this measures e = mean |log p with n steps − with 2n| on
    ``points`` (validation rows) and, when e exceeds ``tolerance``, training goes on with 2n
    steps (:func:`refine_solve`; the train and test steps are compiled again), with a
    warning. The error stays below 1e-4
    nats in a healthy run and grows by orders of magnitude within a hundred or two steps at
    the onset, so the check is frequent and cheap (one solve of up to 1,000 rows at 2n
    steps, one at n).

    Each epoch's logs get ``num_steps`` and ``eval_num_steps`` (those of the next epoch) and
    ``solver_error`` (the last check's e), so ``metrics.csv`` and the checkpoints record
    them; :meth:`resume` puts a checkpoint's steps back.

    Args:
        points: rows to check on, [n, d] (validation rows: a diagnostic, not a fit).
        conditions: their conditions [n, k] for a conditional model, else None.
        tolerance: e in nats above which the steps double. Defaults to
            :data:`tfotflow.scoring.TRUST_NATS` (0.01), the threshold ``evaluate`` warns at.
        every: training steps between checks. Defaults to 50.
        max_steps: the most training steps it doubles to. Defaults to 64.
    """

    def __init__(self, points, conditions=None, *, tolerance=TRUST_NATS, every=50, max_steps=64):
        super().__init__()
        self.points, self.conditions = points, conditions
        self.tolerance, self.every, self.max_steps = tolerance, every, max_steps
        self.error = math.nan
        self._batches = self._checked_at = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._batches % self.every == 0:
            self._check()

    def on_epoch_end(self, epoch, logs=None):
        if self._checked_at != self._batches:  # every epoch's logs report a fresh check
            self._check()
        if logs is not None:
            logs["num_steps"] = self.model.num_steps
            logs["eval_num_steps"] = self.model.eval_num_steps
            logs["solver_error"] = self.error

    def _check(self):
        self._checked_at = self._batches
        report, doubled = refine_solve(
            self.model,
            self.points,
            self.conditions,
            tolerance=self.tolerance,
            max_steps=self.max_steps,
        )
        self.error, steps = report["mean"], report["num_steps"]
        if doubled:
            self.model.make_train_function(force=True)
            self.model.make_test_function(force=True)
            warnings.warn(
                f"the {steps}-step training solve's error reached {self.error:.3g} nats "
                f"(mean |log p at {steps} − {2 * steps} RK4 steps| on {report['rows']} "
                f"validation rows, above {self.tolerance}): "
                f"training continues with {self.model.num_steps} steps, evaluation with "
                f"{self.model.eval_num_steps}",
                UserWarning,
                stacklevel=2,
            )

    @staticmethod
    def resume(model, logs):
        """Puts back the RK4 steps recorded in a checkpoint's ``logs``, if any."""
        for key in ("num_steps", "eval_num_steps"):
            if key in logs:
                setattr(model, key, int(logs[key]))


def _plain(value):
    return float(value) if isinstance(value, (np.floating, float)) else value


def reference_recipe(
    *,
    clip=WEIGHT_CLIP,
    patience=DEFAULTS["patience"],
    stop_patience=None,
    checkpoint_directory=None,
    monitor="val_nll",
    state=None,
    resume_state=None,
    reduce_on_plateau=True,
):
    """The OT-Flow training recipe as a list of callbacks for ``fit``.

    Args:
        clip: weight bound before each step (None to disable). Defaults to 1.5.
        patience: epochs without improvement of ``monitor`` before the learning rate is divided
            by 10. Defaults to 10.
        stop_patience: epochs without improvement before stopping, restoring the best weights.
            Defaults to ``3 * patience``.
        checkpoint_directory: where :class:`Checkpoint` writes, or None for no checkpoints.
        monitor: the validation log to watch. Defaults to "val_nll".
        state: extra JSON state for the checkpoints.
        resume_state: the state of the checkpoint being resumed (see :class:`Checkpoint`).
        reduce_on_plateau: divide the learning rate on plateaus (False when the optimizer
            follows its own schedule). Defaults to True.

    Returns:
        ``[ClipWeights, StopOnNonFinite, ReduceLROnPlateau, EarlyStopping, Checkpoint]``
        (without those disabled).
    """
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, mode="min", factor=0.1, patience=patience
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor=monitor,
        mode="min",
        patience=stop_patience or 3 * patience,
        restore_best_weights=True,
    )
    callbacks = [] if clip is None else [ClipWeights(clip)]
    last = None if checkpoint_directory is None else f"{checkpoint_directory}/last.npz"
    tracked = [plateau, stopper] if reduce_on_plateau else [stopper]
    callbacks += [StopOnNonFinite(last), *tracked]
    if checkpoint_directory is not None:
        callbacks.append(
            Checkpoint(
                checkpoint_directory,
                monitor=monitor,
                tracked=tracked,
                state=state,
                resume_state=resume_state,
            )
        )
    return callbacks
