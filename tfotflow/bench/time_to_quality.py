"""Time to a given test NLL, and inference at matched accuracy: OT-Flow against its peers.

The paper's speed claims are about accuracy per second, not per-iteration cost: FFJORD's
one-probe Hutchinson step is cheap, but its adaptive solver needs more and more evaluations
as its paths bend during training, while OT-Flow's straight paths keep a few RK4 steps
accurate. So each model trains on the same data for a budget of *training* seconds (the clock
stops while it is scored; tracing of the first step is not counted, of later phases it is),
its test NLL is recorded on a geometric schedule of training time, and then:

* **time to quality**: every score is an exact log-density from each model's reference solve
  (OT-Flow: 4× the training steps it has when scored; FFJORD: exact autodiff trace,
  DormandPrince rtol 1e-5; BayesFlow flow matching: exact trace, fixed 5th-order steps
  doubled until log p moves by less than 0.01 nats), so none is credited with discretization
  or trace-estimation error, on validation rows. Against each peer the target is the worse of
  the two best validation NLLs (a level both reached); each model's time is the training time
  at which its validation NLL first reached it, its bracket narrowed by the checkpoints kept
  between scores (:func:`refine_crossings`); the speed-up is the peer's time over OT-Flow's.
  Each model's quality is its test NLL at its best-validation checkpoint, the only score of
  the test rows (selection on validation).
* **alike treatment**: OT-Flow is ``tfotflow train``'s own path; every peer trains and is
  scored in the same coordinates, the affine map the run sets from the training rows
  (:class:`Standardized`, its log-determinant counted), and races with XLA or without,
  whichever a short probe of its step found faster (:func:`faster_compilation`; OT-Flow
  with the product's rule). What each got is recorded in the row's ``fair``.
* **inference at matched accuracy**: each trained model is then scored at every cheaper
  setting (fewer steps; looser tolerance); the cheapest one that, with every more accurate
  setting, stays within 0.01 nats of the reference NLL is chosen, and exact ``log_prob``
  throughput is timed there, interleaved with the others'.

On a conditional data set (points x with conditions y) every score is the conditional NLL
−log p(x | y) and the peers are those that take conditions (BayesFlow's flow matching; TFP's
FFJORD has none); on the linear-Gaussian task the posterior samples' mean and covariance are
also compared with the exact posterior's (:func:`posterior_moments`).

FFJORD runs as TFP ships it: ``tfb.FFJORD`` with the default DormandPrince solver, one-probe
Hutchinson trace in training, and Adam. BayesFlow's ``FlowMatching`` runs with its defaults
(benchmark-only extra; left out when BayesFlow is not installed).
"""

import bisect
import dataclasses
import functools
import importlib.util
import math
import pathlib
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfotflow import datasets, runs
from tfotflow._keras import keras
from tfotflow.bench import suite
from tfotflow.bench.peers import CountedField, ffjord_distribution, matched_hidden_width
from tfotflow.bench.timing import (
    TrainingTime,
    interleaved_medians,
    peak_memory_gb,
    training_step,
)
from tfotflow.datasets import conditional
from tfotflow.datasets.files import from_file
from tfotflow.flow_matching import FlowMatching
from tfotflow.hardware import machine, use_xla
from tfotflow.settings import (
    build_config,
    check_config,
    recommended_settings,
    rule_for,
)
from tfotflow.training import batch_stream
from tfotflow.validation import batch_points_and_conditions

TOLERANCE_NATS = 0.01
MAX_REFERENCE_STEPS = 128  # a fixed-step peer's reference solve: at most these steps
TIGHTENING_ROWS = 500  # the validation rows on which a reference is tightened


def geometric_schedule(first, last, factor):
    """Training-time checkpoints first, first·factor, … up to and including ``last``."""
    times, t = [], float(first)
    while t < last:
        times.append(t)
        t *= factor
    return [*times, float(last)]


class Clock:
    """Training seconds, the validation scores taken on a geometric schedule of them, and the
    model's checkpoints in between.

    Args:
        score: returns the current validation NLL (a float); its time is not counted.
        budget_seconds: training seconds to spend.
        first_score: training seconds before the first score.
        factor: then a score whenever the training time has grown by this factor since the
            last one, and one at the end.
        on_score: called with each new [iteration, training seconds, validation NLL] as it
            is scored (a progress log that survives an interrupted race), or None.
        snapshot: called for the model's state at each score and at ``between`` more times
            between two scores (their gap cut into ``between + 1`` equal ratios), or None:
            the checkpoints :meth:`refine` scores where a crossing needs them, and
            :meth:`restore_score` puts back.
        restore: puts a ``snapshot()`` back (needed with ``snapshot``).
        between: unscored checkpoints between two scores.
    """

    def __init__(
        self,
        score,
        *,
        budget_seconds,
        first_score=2.0,
        factor=1.4,
        on_score=None,
        snapshot=None,
        restore=None,
        between=3,
    ):
        self.score, self.on_score = score, on_score
        self.snapshot, self._restore = snapshot, restore
        self.budget_seconds = float(budget_seconds)
        scores = geometric_schedule(first_score, budget_seconds, factor)
        between = 0 if snapshot is None else between
        self.schedule = scores[:1]  # the scores' times, each gap cut geometrically
        for start, end in zip(scores, scores[1:]):
            ratio = end / start
            self.schedule += [start * ratio ** (j / (between + 1)) for j in range(1, between + 1)]
            self.schedule.append(end)
        self.scored_times = set(range(0, len(self.schedule), between + 1))  # their indices
        self.due = 0  # the index of the next time in the schedule
        self.trained, self.iterations, self.curve = 0.0, 0, []
        self.checkpoints = []  # [iteration, training seconds, state]: every time kept
        self.scored = []  # the index in ``checkpoints`` of each point of ``curve``
        self.untimed_seconds = 0.0  # each phase's first step: tracing and compiling

    def begin(self):
        """Scores the untrained model."""
        self._keep(scored=True)

    def add(self, seconds, iterations=1):
        """Counts ``seconds`` of training over ``iterations`` steps; keeps a checkpoint when
        one is due and scores it when a score is (once, however many scheduled times one
        stretch of training passed)."""
        self.trained += seconds
        self.iterations += iterations
        if not self.done and self.trained >= self.schedule[self.due]:
            scored = False
            while not self.done and self.trained >= self.schedule[self.due]:
                scored |= self.due in self.scored_times
                self.due += 1
            self._keep(scored)

    @property
    def done(self):
        """Whether the budget is spent (its last score taken)."""
        return self.due >= len(self.schedule)

    def finish(self):
        """Takes the last score now when training ended before the budget was spent."""
        if not self.done:
            self.due = len(self.schedule)
            self._keep(scored=True)

    def _keep(self, scored):
        state = None if self.snapshot is None else self.snapshot()
        self.checkpoints.append([self.iterations, self.trained, state])
        if scored:
            self._record(len(self.checkpoints) - 1)

    def _record(self, checkpoint):
        """Scores the model (in the state of ``checkpoint``) into the curve, in time order."""
        iteration, seconds, _ = self.checkpoints[checkpoint]
        point = [iteration, seconds, float(self.score())]
        at = bisect.bisect(self.scored, checkpoint)
        self.curve.insert(at, point)
        self.scored.insert(at, checkpoint)
        if self.on_score is not None:
            self.on_score(point)

    def restore_score(self, index):
        """Puts back the model's state at the ``index``-th point of ``curve``."""
        self._restore(self.checkpoints[self.scored[index]][2])

    def refine(self, target):
        """Scores one more checkpoint where the curve first reaches ``target``: the middle
        one of those kept between the last score above it and the first at or below it.
        Returns whether there was one (the crossing's bracket is then narrower; without,
        it is as narrow as the checkpoints allow)."""
        at = crossing_index(self.curve, target)
        if not at:
            return False
        inside = range(self.scored[at - 1] + 1, self.scored[at])
        if not inside:
            return False
        self._restore(self.checkpoints[inside[len(inside) // 2]][2])
        self._record(inside[len(inside) // 2])
        return True

    def result(self):
        """The race: ``curve`` (a list of [iteration, training seconds, validation NLL]),
        the ``iterations`` run, the ``first_iteration_seconds`` (tracing included; not
        counted in the training time), ``best_nll`` (the best validation NLL),
        ``best_index`` (its point in the curve), ``best_seconds`` (when), and
        ``still_improving``: whether that best came in the last fifth of the budget (the
        curve had not flattened)."""
        best = min(range(len(self.curve)), key=lambda i: self.curve[i][2])
        return {
            "curve": self.curve,
            "iterations": self.iterations,
            "first_iteration_seconds": self.untimed_seconds,
            "best_nll": self.curve[best][2],
            "best_index": best,
            "best_seconds": self.curve[best][1],
            "still_improving": self.curve[best][1] >= 0.8 * self.budget_seconds,
        }


def race(step, batches, clock):
    """Trains with ``step(batch)`` until ``clock`` (a :class:`Clock`) says the budget is
    spent; the first step, which traces and compiles, is not counted. Returns
    :meth:`Clock.result`."""
    start = time.perf_counter()
    step(next(batches)).numpy()  # traces and compiles: not training progress
    clock.untimed_seconds = time.perf_counter() - start
    clock.begin()
    while not clock.done:
        batch = next(batches)
        start = time.perf_counter()
        loss = float(step(batch).numpy())
        clock.add(time.perf_counter() - start)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss} at iteration {clock.iterations}"
            )
    return clock.result()


def refine_crossings(clocks, ours):
    """Narrows, by the checkpoints each :class:`Clock` kept, the bracket of every crossing a
    duel reads: OT-Flow's (the clock ``ours``) and each peer's first score at or below the
    duel's target (the worse of the two best validation NLLs), scoring a checkpoint within a
    bracket until none is left in any (a new score may move a best, so a target)."""
    refined = True
    while refined:
        refined = False
        for peer in (name for name in clocks if name != ours):
            duel = (clocks[ours], clocks[peer])
            target = max(min(point[2] for point in clock.curve) for clock in duel)
            for clock in duel:
                refined |= clock.refine(target)


def crossing_index(curve, target):
    """The index in ``curve`` of its first score after training began that is ≤ ``target``,
    or None when training never reached it."""
    return next((i for i, (step, _, nll) in enumerate(curve) if step and nll <= target), None)


def seconds_to_reach(curve, target):
    """Training seconds at the first score after training began that is ≤ ``target``.

    None when training never reached it.
    """
    at = crossing_index(curve, target)
    return None if at is None else curve[at][1]


def crossing_bracket(curve, target):
    """``(before, at)``: the training seconds of the last score above ``target`` and of the
    first at or below it after training began (the crossing lies between), or None."""
    at = crossing_index(curve, target)
    return (curve[at - 1][1], curve[at][1]) if at else None  # the first score opens none


# ------------------------------------------------------------------------------- the contenders


class ClockCallback(TrainingTime):
    """Keeps a :class:`Clock` during a Keras ``fit`` by :class:`TrainingTime`'s count: the
    steps, the validations, the checkpoints, the solver-error checks and a recompile when the
    steps double are training, all of which a user's run pays; the first call of each phase
    (tracing and compiling, as the peers' first step) and the scores are not. Stops
    training when the budget is spent."""

    def __init__(self, clock, contender):
        super().__init__()
        self.clock, self.contender = clock, contender

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        warm = isinstance(self.model, FlowMatching)  # the warm start fits its model's potential
        self.contender.model = self.model.flow if warm else self.model

    def first_call(self):
        self.clock.untimed_seconds = self.untimed
        if not self.clock.curve:
            self.clock.begin()

    def timed(self, seconds, steps):
        self.clock.add(seconds, steps)

    @property
    def done(self):
        return self.clock.done


class CompiledScores:
    """A contender's compiled log-densities, one per (setting, ``scoring_xla``): a race
    scores at a few settings many times, and a probe may switch XLA in between."""

    scoring_xla = False

    def compiled(self, key, log_prob):
        """The ``tf.function`` of ``log_prob()`` for ``key`` under the current
        ``scoring_xla``, built (``log_prob`` called) only the first time."""
        cache = self.__dict__.setdefault("_compiled", {})
        key = (key, self.scoring_xla)
        if key not in cache:
            cache[key] = tf.function(log_prob(), jit_compile=self.scoring_xla)
        return cache[key]

    def tighten(self, points):
        """Makes the reference setting accurate on ``points``: nothing to do where the
        contender's rule fixes it (OT-Flow's 4× its training steps, FFJORD's tolerance)."""


class NetworkSnapshots:
    """A peer whose whole state is the weights of its Keras ``network``."""

    def snapshot(self):
        """The network's weights now."""
        return self.network.get_weights()

    def restore(self, snapshot):
        """Puts a :meth:`snapshot` back."""
        self.network.set_weights(snapshot)


class OTFlowContender(CompiledScores):
    """OT-Flow as a user runs it: ``tfotflow train``'s own path
    (:func:`tfotflow.runs.train_run`, its checkpoints in a temporary run directory) with the
    data set's recommended settings, or those :func:`tfotflow.settings.recipe` gives a data
    set that recommends none, and ``overrides`` (a variant is only that; ``"main_phase"``
    among them asks the rule for that main phase instead of its own). The race adds its
    :class:`ClockCallback` to both phases; the model is scored at 4× the training RK4 steps
    it has when scored, and ends with its best-validation weights."""

    def __init__(self, data, *, name="otflow", overrides=None, seed=0):
        self.name, self.data = name, data
        overrides = dict(overrides or {})
        main_phase = overrides.pop("main_phase", None)  # the rule's other main phase
        if main_phase is None:
            recommended = recommended_settings(data)
        else:
            recommended = rule_for(data.train, data.metadata.condition_dim, main_phase=main_phase)
        self.config = build_config(
            data.metadata.name,
            recommended=recommended,
            overrides=overrides,
            seed=seed,
            data_dir=None,
            options={},
            source=data.metadata.source,
        )
        check_config(self.config, data.metadata.dim, data.metadata.condition_dim)
        self.model = self.new_model()  # the trained one replaces it

    def run(self, clock):
        """Trains by :func:`tfotflow.runs.train_run` until ``clock``'s budget is spent (or
        the settings' steps are done); returns :meth:`Clock.result` with the training solve's
        ``num_steps`` at the end and its ``doublings`` (by the solver-error control)."""
        with tempfile.TemporaryDirectory() as run_dir:
            timing = ClockCallback(clock, self)
            self.model, _ = runs.train_run(
                run_dir,
                self.config,
                data=self.data,
                callbacks=[timing],
                warm_start_callbacks=[timing],
            )
        clock.finish()
        planned = self.config["model"]["num_steps"]
        doublings = round(math.log2(self.model.num_steps / planned))
        return {**clock.result(), "num_steps": self.model.num_steps, "doublings": doublings}

    def snapshot(self):
        """The model's weights and RK4 steps now (its reference setting follows them)."""
        return self.model.get_weights(), (self.model.num_steps, self.model.eval_num_steps)

    def restore(self, snapshot):
        """Puts a :meth:`snapshot` back into the trained model."""
        weights, (self.model.num_steps, self.model.eval_num_steps) = snapshot
        self.model.set_weights(weights)

    def new_model(self):
        """An untrained model of the run's settings, as :func:`tfotflow.runs.train_run`
        builds it."""
        config = runs.recorded_config(self.config, self.data)
        return runs.new_model(config, self.data.metadata.dim)

    @property
    def condition_dim(self):
        return self.data.metadata.condition_dim

    @property
    def xla(self):
        """Whether its steps run under XLA: the product's rule
        (:func:`tfotflow.hardware.use_xla`), as ``tfotflow train`` runs them."""
        return use_xla(self.data.metadata.dim)

    @property
    def run_settings(self):
        """The run's settings, as ``config.json`` records them."""
        return {**self.config["model"], **self.config["train"]}

    @property
    def num_parameters(self):
        return int(sum(math.prod(v.shape) for v in self.model.potential.weights))

    def log_prob_fn(self, setting):
        """A compiled ``log_prob(x, y=None)`` of the current model with ``setting`` RK4
        steps."""
        model = self.model
        return self.compiled(
            (id(model), setting), lambda: lambda x, y=None: model.log_prob(x, y, num_steps=setting)
        )

    def sample(self, n, condition, seed):
        """``n`` samples [n, d] of p(x | y) for one ``condition`` y [k]."""
        return self.model.sample(n, condition, seed=seed)

    def evaluations(self, setting, x):
        """Field evaluations of one ``log_prob`` with ``setting`` RK4 steps: four a step."""
        return 4 * setting

    def reference_setting(self):
        """The reference accuracy: four times the training steps the model has now."""
        return 4 * self.model.num_steps

    def settings(self):
        """Step counts to try, cheapest first."""
        return [s for s in (1, 2, 3, 4, 6, 8, 12, 16, 24) if s < self.reference_setting()]


class FFJORDContender(CompiledScores, NetworkSnapshots):
    """TFP's FFJORD: an MLP field (tanh), default DormandPrince, Hutchinson training, Adam;
    scored by its exact log-density (the autodiff trace) at every d."""

    name = "ffjord"

    condition_dim = 0  # FFJORD takes no conditions

    def __init__(self, d, *, hidden, learning_rate, dtype, jit_compile=False):
        self.d, self.dtype, self.xla = d, dtype, bool(jit_compile)
        self.field = CountedField(d, hidden, dtype)
        self.optimizer = keras.optimizers.Adam(learning_rate)
        distribution = ffjord_distribution(self.field, d, dtype, trace="hutchinson")
        self.step = training_step(
            lambda x: -tf.reduce_mean(distribution.log_prob(x)),
            self.network.trainable_variables,
            self.optimizer,
            jit_compile=self.xla,
        )

    @property
    def network(self):
        """The field's Keras network: the weights it trains."""
        return self.field.network

    @property
    def num_parameters(self):
        return self.field.num_parameters

    def batches(self, train, *, batch, seed):
        """Training batches of ``batch`` rows, shuffled by ``seed``."""
        return iter(batch_stream(train, batch_size=batch, seed=seed))

    def log_prob_fn(self, setting):
        """A compiled exact ``log_prob`` with DormandPrince at rtol = ``setting``, atol =
        rtol/1000."""

        def log_prob():
            solver = tfp.math.ode.DormandPrince(rtol=setting, atol=setting * 1e-3)
            return ffjord_distribution(
                self.field, self.d, self.dtype, trace="exact", solver=solver.solve
            ).log_prob

        return self.compiled(setting, log_prob)

    def evaluations(self, setting, x):
        """Field evaluations of one ``log_prob`` of ``x`` at tolerance ``setting``, counted."""
        self.field.evaluations.assign(0)
        self.log_prob_fn(setting)(x).numpy()
        return int(self.field.evaluations.numpy())

    def reference_setting(self):
        """The reference accuracy: rtol 1e-5."""
        return 1e-5

    def settings(self):
        """Relative tolerances to try, loosest first (TFP's default is 1e-3)."""
        return [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]


class FlowMatchingContender(CompiledScores, NetworkSnapshots):
    """BayesFlow 2's ``FlowMatching`` (Keras 3): its residual time-MLP field, trained by
    conditional flow matching (independent coupling, uniform t).

    Two settings: ``widths`` with no dropout and Adam at ``learning_rate`` (tuned), or
    ``defaults=True``: the network exactly as ``FlowMatching()`` builds it (five 256-wide
    residual layers, dropout 0.05, layer norm) and the optimizer ``BasicWorkflow`` gives an
    offline fit at its defaults (AdamW, weight decay 5e-3, clipnorm 1.5, rate 5e-4 after a
    linear warm-up over 5 % of the steps from a tenth of it, then a cosine decay to 0) over
    ``total_steps`` (100 epochs of batch 32 on the training rows); with ``widths`` or
    ``learning_rate`` too, those replace the subnet's widths and the peak rate (a tuning
    grid's points, everything else at BayesFlow's defaults).

    Scored by its exact log-density (``log_prob``: the exact Jacobian trace along a fixed-step
    solve of ``setting`` Dormand–Prince 5th-order steps, six evaluations each — BayesFlow's
    "rk45" without step-size control; the reference's steps set by :meth:`tighten`).
    BayesFlow is a benchmark-only dependency (``pip install tfotflow[bench]``).
    """

    def __init__(
        self,
        d,
        *,
        name="bayesflow_fm",
        widths=None,
        learning_rate=None,
        dtype,
        condition_dim=0,
        defaults=False,
        total_steps=None,
        jit_compile=False,
    ):
        from bayesflow.networks import FlowMatching as BayesFlowMatching

        self.name, self.xla = name, bool(jit_compile)
        if defaults:
            subnet = {} if widths is None else {"subnet_kwargs": {"widths": tuple(widths)}}
            self.network = BayesFlowMatching(**subnet)
            peak = 5e-4 if learning_rate is None else learning_rate
            warmup = int(0.05 * total_steps)
            schedule = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=0.1 * peak,
                warmup_target=peak,
                warmup_steps=warmup,
                decay_steps=total_steps - warmup,
                alpha=0.0,
            )
            self.optimizer = keras.optimizers.AdamW(schedule, weight_decay=5e-3, clipnorm=1.5)
        else:
            self.network = BayesFlowMatching(
                subnet_kwargs={"widths": tuple(widths), "dropout": 0.0}
            )
            self.optimizer = keras.optimizers.Adam(learning_rate)
        self.network.build((None, d), (None, condition_dim) if condition_dim else None)
        self.d, self.dtype, self.condition_dim = d, dtype, condition_dim
        self.steps = 8  # the reference's, until :meth:`tighten` doubles them

        def loss(batch):
            x, y = batch_points_and_conditions(batch, condition_dim)
            return self.network.compute_metrics(x, conditions=y, stage="training")["loss"]

        self.step = training_step(
            loss, self.network.trainable_variables, self.optimizer, jit_compile=self.xla
        )

    @property
    def num_parameters(self):
        return int(sum(math.prod(v.shape) for v in self.network.trainable_variables))

    def batches(self, train, *, batch, seed):
        """Training batches of ``batch`` rows, shuffled by ``seed``."""
        return iter(batch_stream(train, batch_size=batch, seed=seed))

    def log_prob_fn(self, setting):
        """A compiled exact ``log_prob(x, y=None)`` with ``setting`` fixed 5th-order steps."""
        network = self.network
        return self.compiled(
            setting,
            lambda: (
                lambda x, y=None: network.log_prob(x, conditions=y, method="rk45", steps=setting)
            ),
        )

    def tighten(self, points):
        """Doubles the reference's steps until the log-densities of ``points`` (x, or
        (x, y)) move by less than :data:`TOLERANCE_NATS` when they double again: the mean
        over the rows of |log p at n steps − at 2n|, the check OT-Flow's training solve
        passes. The steps start at 8, never go back down, and stop at 128."""
        x, y = batch_points_and_conditions(points, self.condition_dim)
        args = [tf.constant(x)] + ([] if y is None else [tf.constant(y)])
        while self.steps < MAX_REFERENCE_STEPS:
            coarse = self.log_prob_fn(self.steps)(*args)
            fine = self.log_prob_fn(2 * self.steps)(*args)
            if float(tf.reduce_mean(tf.abs(fine - coarse))) < TOLERANCE_NATS:
                return
            self.steps *= 2

    def sample(self, n, condition, seed):
        """``n`` samples [n, d] of p(x | y) for one ``condition`` y [k] (reference steps)."""
        conditions = tf.tile(tf.reshape(tf.cast(condition, self.dtype), [1, -1]), [n, 1])
        return self.network.sample(
            (n,), conditions=conditions, seed=seed, method="rk45", steps=self.reference_setting()
        )

    def evaluations(self, setting, x):
        """Field evaluations of one ``log_prob`` with ``setting`` steps: six a step."""
        return 6 * setting

    def reference_setting(self):
        """The reference accuracy: the steps :meth:`tighten` last chose."""
        return self.steps

    def settings(self):
        """Step counts to try, cheapest first."""
        return [s for s in (1, 2, 4, 8, 16, 32, 64) if s < self.steps]


class Standardized(CompiledScores):
    """A peer given OT-Flow's preprocessing: it trains on, and is scored in, the coordinates
    of the affine map that ``tfotflow train`` sets from the training rows
    (:meth:`tfotflow.OTFlowModel.adapt`: standardized or whitened points, a conditional
    set's points shifted by their linear fit on the standardized conditions), and its
    log-density is counted in the data's units, log p(x) = log p̃(x̃) + log |det ∂x̃/∂x|. The
    map is ``model``'s (an adapted :class:`tfotflow.OTFlowModel`; its flow is not used)."""

    def __init__(self, peer, model):
        self.peer, self.model = peer, model
        self.name, self.condition_dim, self.xla = peer.name, peer.condition_dim, peer.xla

    @property
    def scoring_xla(self):
        """The peer's: whether its ``log_prob`` (and the map's around it) runs under XLA."""
        return self.peer.scoring_xla

    @scoring_xla.setter
    def scoring_xla(self, value):
        self.peer.scoring_xla = value

    def transform(self, split):
        """``split`` (points, or (points, conditions)) in the map's coordinates, as NumPy."""
        x, y = batch_points_and_conditions(split, self.condition_dim)
        dtype = x.dtype
        x_tilde, y_tilde = self.model.standardize(tf.constant(x, self.model.precision), y)
        x_tilde = np.asarray(x_tilde, dtype)
        return x_tilde if y is None else (x_tilde, np.asarray(y_tilde, dtype))

    @property
    def step(self):
        return self.peer.step

    @property
    def num_parameters(self):
        return self.peer.num_parameters

    def snapshot(self):
        """The peer's state now."""
        return self.peer.snapshot()

    def restore(self, snapshot):
        """Puts the peer's :meth:`snapshot` back."""
        self.peer.restore(snapshot)

    def batches(self, train, *, batch, seed):
        """The peer's training batches of ``train`` in the map's coordinates."""
        return self.peer.batches(self.transform(train), batch=batch, seed=seed)

    def log_prob_fn(self, setting):
        """The peer's compiled ``log_prob`` at ``setting``, of points in the data's units."""
        inner, model = self.peer.log_prob_fn(setting), self.model

        def log_prob(x, y=None):
            x = tf.cast(x, model.precision)
            x_tilde, y_tilde = model.standardize(x, y)
            kwargs = model.affine_kwargs(y_tilde)
            jacobian = model.affine.inverse_log_det_jacobian(x, event_ndims=1, **kwargs)
            args = [tf.cast(x_tilde, x.dtype)] + ([] if y is None else [y_tilde])
            return tf.cast(inner(*args), x.dtype) + jacobian

        return self.compiled(setting, lambda: log_prob)

    def sample(self, n, condition, seed):
        """The peer's draws mapped back to the data's units."""
        y_tilde = self.model.standardize_condition(
            tf.reshape(tf.cast(condition, self.model.precision), [1, -1])
        )
        draws = tf.cast(self.peer.sample(n, y_tilde[0], seed), self.model.precision)
        kwargs = self.model.affine_kwargs(tf.tile(y_tilde, [n, 1]))
        return self.model.affine.forward(draws, **kwargs)

    def evaluations(self, setting, x):
        """The peer's count for points ``x`` (a conditional peer counts by its setting alone,
        without the points)."""
        return self.peer.evaluations(setting, x if self.condition_dim else self.transform(x))

    def tighten(self, points):
        """The peer's reference made accurate on ``points`` in the map's coordinates."""
        self.peer.tighten(self.transform(points))

    def reference_setting(self):
        """The peer's reference accuracy."""
        return self.peer.reference_setting()

    def settings(self):
        """The peer's settings to try, cheapest first."""
        return self.peer.settings()


def shared_affine(ours):
    """The affine map ``ours`` (an :class:`OTFlowContender`) sets from the training rows, as
    an adapted :class:`tfotflow.OTFlowModel`, or None when its run keeps the identity."""
    model = ours.new_model()
    return model if runs.adapt_to(model, ours.config, ours.data) else None


def _time_both_ways(call_for, *, rounds, give_up=None):
    """``{"false": seconds, "true": seconds}``: for ``jit_compile`` False then True,
    ``call_for(jit_compile)`` gives a call without arguments, timed as the median of ``rounds``
    calls after a compiling one (a way stops early once a call takes ``give_up`` × the other
    way's median: it has lost). A way that fails to build or compile gets
    ``"failed: ErrorName"`` in place of its seconds."""
    seconds = {}
    for jit_compile in (False, True):
        timed = [value for value in seconds.values() if isinstance(value, float)]
        limit = give_up * min(timed) if give_up and timed else math.inf
        try:
            call = call_for(jit_compile)
            call()  # traced and compiled
            times = []
            while len(times) < rounds and (not times or times[-1] <= limit):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            seconds[str(jit_compile).lower()] = float(np.median(times))
        except Exception as error:  # noqa: BLE001  (XLA may not compile a contender's work)
            seconds[str(jit_compile).lower()] = f"failed: {type(error).__name__}"
    return seconds


def _faster_way(seconds):
    """Whether XLA (``"true"``) won among the ways of :func:`_time_both_ways` that ran, or
    None when neither did."""
    timed = {key: value for key, value in seconds.items() if isinstance(value, float)}
    return min(timed, key=timed.get) == "true" if timed else None


def faster_compilation(make, train, *, batch, seed, steps=5):
    """Whether a peer trains faster with XLA: ``make(jit_compile)`` builds a throwaway
    contender each way, whose median step over ``steps`` steps (after a compiling one) is
    timed; a setting that fails to compile loses. Returns ``(jit_compile, seconds)``."""

    def call_for(jit_compile):
        contender = make(jit_compile)
        stream = contender.batches(train, batch=batch, seed=seed)
        batches = iter([next(stream) for _ in range(steps + 1)])  # drawn outside the clock
        return lambda: contender.step(next(batches)).numpy()

    seconds = _time_both_ways(call_for, rounds=steps)
    return bool(_faster_way(seconds)), seconds


SCORING_PROBE_ROWS = 200  # the rows of the scoring compilation's probe


def faster_scoring(contender, points, *, rounds=3):
    """Whether ``contender``'s exact ``log_prob`` at its reference setting runs faster with
    XLA on ``points`` (points, or (points, conditions)): the median of up to ``rounds`` calls
    after a compiling one, each way (a way stops early once a call takes 3× the other's
    median: it has lost); a way that fails to compile loses. Sets ``contender.scoring_xla``
    to the faster way (its scores and its log-density timings then run that way) and
    returns the seconds of each."""
    x, y = batch_points_and_conditions(points, contender.condition_dim)
    args = [tf.constant(x)] + ([] if y is None else [tf.constant(y)])

    def call_for(jit_compile):
        contender.scoring_xla = jit_compile
        log_prob = contender.log_prob_fn(contender.reference_setting())
        return lambda: log_prob(*args).numpy()

    seconds = _time_both_ways(call_for, rounds=rounds, give_up=3)
    faster = _faster_way(seconds)
    if faster is None:
        raise RuntimeError(f"{contender.name}'s log_prob failed with and without XLA: {seconds}")
    contender.scoring_xla = faster
    return seconds


def first_rows(data, n):
    """The first ``n`` rows of points, or of (points, conditions)."""
    return tuple(part[:n] for part in data) if isinstance(data, tuple) else data[:n]


def reference_nll(contender, split, probe):
    """−mean log p over ``split`` at ``contender``'s reference setting, that setting first
    tightened on the ``probe`` rows (:meth:`CompiledScores.tighten`)."""
    contender.tighten(probe)
    return mean_nll(contender, contender.reference_setting(), split)


def mean_nll(contender, setting, test, chunk=5000):
    """−mean log p(x) (or log p(x | y)) over ``test``: points, or (points, conditions)."""
    log_prob = contender.log_prob_fn(setting)
    points, conditions = batch_points_and_conditions(test, contender.condition_dim)
    total = 0.0
    for i in range(0, len(points), chunk):
        args = [tf.constant(points[i : i + chunk])]
        if conditions is not None:
            args.append(tf.constant(conditions[i : i + chunk]))
        total += float(tf.reduce_sum(log_prob(*args)).numpy())
    return -total / len(points)


def posterior_moments(contenders, data, *, conditions=5, samples=4000, seed=0):
    """Posterior samples' mean and covariance against the exact posterior's (linear-Gaussian
    task): for each of the first ``conditions`` test observations x, ``samples`` draws of
    θ | x from each model; the largest absolute errors of the mean and of the covariance
    entries, averaged over the observations."""
    observations = data.conditions["test"][:conditions]
    means, variance = conditional.linear_gaussian_posterior(observations)
    rows = {}
    for contender in contenders:
        mean_errors, covariance_errors = [], []
        for i, x in enumerate(observations):
            draws = contender.sample(samples, tf.constant(x), seed=1000 * seed + i)
            draws = np.asarray(draws, np.float64)
            mean_errors.append(np.max(np.abs(draws.mean(0) - means[i])))
            covariance = np.cov(draws, rowvar=False)
            covariance_errors.append(np.max(np.abs(covariance - variance * np.eye(len(x)))))
        rows[contender.name] = {
            "mean_max_abs_error": float(np.mean(mean_errors)),
            "covariance_max_abs_error": float(np.mean(covariance_errors)),
        }
    sampling_noise = math.sqrt(variance / samples)  # the standard error of a mean entry
    return {
        "exact_variance": variance,
        "observations": conditions,
        "samples": samples,
        "mean_standard_error": sampling_noise,
        "models": rows,
    }


EQUAL_NLL_NATS = 0.05  # models of equal quality: test NLLs within this of each other


def equal_quality_checkpoints(races, names, test_nll_at):
    """The checkpoints at which the races ``names`` (in ``races``, a dict of race results)
    are of equal quality: the level ``target_nll``, the worst of their best validation NLLs
    (one each of them reached), and for each the ``index`` of its first score at or below it
    (of its curve), that score's ``iteration``, ``seconds``, ``validation_nll`` and
    ``test_nll`` (``test_nll_at(name, index)``); ``test_nll_spread`` (the largest minus the
    smallest of those test NLLs) and ``equal`` (whether it is within
    :data:`EQUAL_NLL_NATS`)."""
    target = max(races[name]["best_nll"] for name in names)
    index, at = {}, {}
    for name in names:
        curve = races[name]["curve"]
        index[name] = next(i for i, point in enumerate(curve) if point[2] <= target)
        iteration, seconds, validation_nll = curve[index[name]]
        at[name] = {
            "iteration": iteration,
            "seconds": seconds,
            "validation_nll": validation_nll,
            "test_nll": test_nll_at(name, index[name]),
        }
    test_nlls = [point["test_nll"] for point in at.values()]
    spread = max(test_nlls) - min(test_nlls)
    return {
        "target_nll": target,
        "index": index,
        "at": at,
        "test_nll_spread": spread,
        "equal": spread <= EQUAL_NLL_NATS,
    }


def matched_accuracy(contenders, test, *, batch, rounds):
    """The cheapest setting that keeps each model's NLL within 0.01 nats of its reference
    NLL (it and every more accurate setting tried), and the ``log_prob`` throughput there."""
    rows, timed = {}, {}
    x, y = batch_points_and_conditions(first_rows(test, batch), contenders[0].condition_dim)
    x = tf.constant(x)
    args = [x] + ([] if y is None else [tf.constant(y)])
    for contender in contenders:
        reference = mean_nll(contender, contender.reference_setting(), test)
        tried = {str(s): mean_nll(contender, s, test) for s in contender.settings()}
        chosen = contender.reference_setting()
        for setting in reversed(contender.settings()):  # most accurate first
            if abs(tried[str(setting)] - reference) > TOLERANCE_NATS:
                break
            chosen = setting
        rows[contender.name] = {
            "reference_setting": contender.reference_setting(),
            "reference_nll": reference,
            "tried": tried,
            "setting": chosen,
            "nll": tried.get(str(chosen), reference),
            "function_evaluations": contender.evaluations(chosen, x),
        }
        timed[contender.name] = functools.partial(contender.log_prob_fn(chosen), *args)
    seconds = interleaved_medians(timed, rounds=rounds)
    for name, row in rows.items():
        row["log_prob_seconds"] = seconds[name]
        row["log_prob_per_second"] = batch / seconds[name]
    return rows


# ------------------------------------------------------------------------------- the problems


# Each problem: its contenders' settings, keyed by name ("otflow…", "ffjord", "bayesflow_fm…").
# OT-Flow's are overrides of the settings ``tfotflow train`` gives the data set ("otflow": none,
# the user's path); the peers' are their constructors' arguments. ``batch``: the peers' batch
# sizes (OT-Flow's is its settings'), and every contender's name; ``budgets``: training seconds.
PROBLEMS = {
    # The toy sets: tfotflow's toy preset (the quick start's); "otflow_warm300": 300 warm-start
    # steps instead of 1,000; "otflow_long": those, then a cosine over 2,500 likelihood steps.
    # FFJORD's toy field width with a matched depth, batch and learning rate from FFJORD's toy
    # recipe; BayesFlow's flow matching with the same widths and its usual batch and rate.
    "8gaussians": dict(
        otflow={},
        otflow_warm300={"warm_start": 300},
        otflow_long={"warm_start": 300, "iterations": 2500},
        ffjord=dict(hidden=64, learning_rate=1e-3),
        bayesflow_fm=dict(widths=(64, 64), learning_rate=1e-3),
        batch=dict(
            otflow=None, otflow_warm300=None, otflow_long=None, ffjord=100, bayesflow_fm=256
        ),
        dtype="float32",
        # The same wall budget for every contender; OT-Flow's settings end their steps
        # sooner (its curve then ends).
        budgets=dict.fromkeys(
            ("otflow", "otflow_warm300", "otflow_long", "ffjord", "bayesflow_fm"), 300.0
        ),
        # Raced only when named.
        variants=("otflow_warm300", "otflow_long"),
        # Scored on 5,000 validation and 5,000 test rows (each peer's exact score of 10,000
        # took as long as a few seconds of its training at every point of a dense curve).
        test_size=5_000,
    ),
    # OT-Flow's MINIBOONE preset (the paper's width 256, α = (1, 100, 15), 6 steps, batch 2000)
    # with a 3,000-step warm start, the one-probe trace in training and the rate 0.01; FFJORD
    # and BayesFlow with fields of about the same parameter count, FFJORD's tabular batch.
    "miniboone": dict(
        otflow=dict(learning_rate=0.01, warm_start=3000, trace="hutchinson"),
        ffjord=dict(hidden=None, learning_rate=1e-3),
        bayesflow_fm=dict(widths=(224, 224), learning_rate=1e-3),
        batch={"otflow": None, "ffjord": 1000, "bayesflow_fm": 512},
        dtype="float32",
        budgets={"otflow": 1800.0, "ffjord": 1800.0, "bayesflow_fm": 1800.0},
        # A fixed 1,000 of the 3,648 test points: the peers' exact-trace scores at d = 43 take
        # one Jacobian row per dimension at every solver stage.
        test_size=1000,
    ),
}
PROBLEMS["checkerboard"] = PROBLEMS["8gaussians"]  # the same settings on the other toy set
# The real-dimension set with an exact density (d = 43, 100,000 training rows), 180 s each:
# OT-Flow with the settings a 100,000-row, 43-column set gets ("otflow": whitened, the cosine
# from 0.01, the one-probe trace in training, 20 Sinkhorn sweeps); from 0.03 ("otflow_03"),
# also with diagonal scaling ("otflow_fast"), also with the exact trace and 100 sweeps
# ("otflow_exact"), and whitened from 0.03 over the 600 likelihood steps that fit
# ("otflow_tuned"). FFJORD at OT-Flow's parameter count (first seed only unless named: its
# exact scores are slow); BayesFlow's flow matching with MINIBOONE's widths (224-224, no
# dropout, Adam 1e-3, batch 512) and at its defaults. Scored exactly on 1,000 test rows.
_MIXTURE_FAST = {"learning_rate": 0.03, "normalization": "diagonal"}
_MIXTURE_BATCH = {
    "otflow": None,
    "otflow_03": None,
    "otflow_fast": None,
    "otflow_exact": None,
    "otflow_tuned": None,
    "ffjord": 1000,
    "bayesflow_fm": 512,
    "bayesflow_fm_defaults": 32,
}
PROBLEMS["miniboone_mixture"] = dict(
    otflow={},
    otflow_03={"learning_rate": 0.03},
    otflow_fast=_MIXTURE_FAST,
    otflow_exact={**_MIXTURE_FAST, "trace": "exact", "warm_start_sinkhorn_iterations": 100},
    otflow_tuned={"learning_rate": 0.03, "iterations": 600},
    ffjord=dict(hidden=None, learning_rate=1e-3),
    bayesflow_fm=dict(widths=(224, 224), learning_rate=1e-3),
    bayesflow_fm_defaults=dict(defaults=True),
    batch=_MIXTURE_BATCH,
    first_seed_only=("ffjord",),
    variants=("otflow_03", "otflow_fast", "otflow_exact", "otflow_tuned"),
    # Exact scores at d = 43 trace one Jacobian row per dimension: the variants are raced only.
    matched_accuracy=("otflow", "ffjord", "bayesflow_fm"),
    dtype="float32",
    budgets=dict.fromkeys(_MIXTURE_BATCH, 180.0),
    test_size=1000,
)
# Conditional sets: OT-Flow with the data set's recommended settings against BayesFlow's flow
# matching with the same conditions (FFJORD takes none), as on the 2-D toys unless the set
# says otherwise.
_CONDITIONAL = dict(
    widths=(64, 64),
    budgets={"otflow": 120.0, "bayesflow_fm": 300.0},
    test_size=10_000,
    num_train=100_000,
)
_CONDITIONAL_SETS = {
    "rotating_gaussians": _CONDITIONAL,
    "banana": _CONDITIONAL,
    # The posterior is learned from 10,000 simulated (θ, x) pairs and scored on 2,000 held-out
    # ones: BayesFlow's exact score (one Jacobian row per dimension) took about a minute on
    # 10,000 at 32 fifth-order steps.
    "linear_gaussian": dict(
        widths=(128, 128),
        budgets={"otflow": 180.0, "bayesflow_fm": 180.0},
        test_size=2_000,
        num_train=10_000,
    ),
}
for _name, _set in _CONDITIONAL_SETS.items():
    PROBLEMS[_name] = dict(
        otflow={},
        bayesflow_fm=dict(widths=_set["widths"], learning_rate=1e-3),
        batch={"otflow": None, "bayesflow_fm": 256},
        dtype="float32",
        budgets=_set["budgets"],
        test_size=_set["test_size"],
        num_train=_set["num_train"],
    )
# On the linear-Gaussian posterior, the variants, raced when named: the points as they come,
# without the linear-Gaussian start ("otflow_identity"), the same with 300 warm-start steps
# ("otflow_warm300"), and BayesFlow at its defaults (as on `miniboone_mixture`: 100 epochs of
# batch 32, 31,300 steps).
_LINEAR = PROBLEMS["linear_gaussian"]
_IDENTITY = {"standardize": False}
_LINEAR.update(
    otflow_identity=_IDENTITY,
    otflow_warm300={**_IDENTITY, "warm_start": 300},
    bayesflow_fm_defaults=dict(defaults=True),
    batch={
        **_LINEAR["batch"],
        "otflow_identity": None,
        "otflow_warm300": None,
        "bayesflow_fm_defaults": 32,
    },
    budgets=dict(
        otflow=60.0,
        otflow_identity=60.0,
        otflow_warm300=90.0,
        bayesflow_fm=180.0,
        bayesflow_fm_defaults=240.0,
    ),
    variants=("otflow_identity", "otflow_warm300", "bayesflow_fm_defaults"),
    matched_accuracy=("otflow", "bayesflow_fm"),
)

# The generalization suite (tfotflow.bench.suite): a table of 100,000 training rows raced as
# `tfotflow train FILE` runs it, against BayesFlow's flow matching at its defaults (the network
# and offline fit `FlowMatching()` gives a user) and FFJORD at OT-Flow's parameter count, with
# wall budgets sized to two cores. The variants, raced when named: the rule's likelihood main
# phase ("otflow_likelihood", as it chooses for small tables); its flow-matching main phase
# with five layers ("otflow_fm_deep") or the OT coupling's 20 Sinkhorn sweeps
# ("otflow_fm_ot"); the likelihood path with a cosine over 3,000 or 4,000 likelihood steps
# ("otflow_steps3000", "otflow_steps4000"), twice the width ("otflow_wide") or 2 RK4 steps
# ("otflow_rk2", doubled by the solver-error control when their error exceeds its tolerance);
# batches of 256 over a cosine of 6,000 steps from the rule's rate or from 0.01
# ("otflow_batch256", "otflow_batch256_rate01").
SUITE_BUDGETS = {4: 120.0, 16: 300.0, 64: 900.0}
SUITE_VARIANTS = {
    "otflow_likelihood": {"main_phase": "likelihood"},
    "otflow_fm_deep": {"num_layers": 5},
    "otflow_fm_ot": {"warm_start_coupling": "ot", "warm_start_sinkhorn_iterations": 20},
    "otflow_steps3000": {"main_phase": "likelihood", "iterations": 3000},
    "otflow_steps4000": {"main_phase": "likelihood", "iterations": 4000},
    "otflow_wide": {"main_phase": "likelihood", "width": 64},
    "otflow_rk2": {"main_phase": "likelihood", "num_steps": 2, "eval_num_steps": 4},
    "otflow_batch256": {"main_phase": "likelihood", "batch_size": 256, "iterations": 6000},
    "otflow_batch256_rate01": {
        "main_phase": "likelihood",
        "batch_size": 256,
        "iterations": 6000,
        "learning_rate": 0.01,
    },
}


def suite_problem(dim):
    """The race of a generalization-suite set of dimension ``dim``."""
    budget = SUITE_BUDGETS.get(dim, max(SUITE_BUDGETS.values()))
    batch = {
        "otflow": None,
        **dict.fromkeys(SUITE_VARIANTS),
        "bayesflow_fm_defaults": 32,
        "ffjord": 1000,
    }
    return dict(
        otflow={},
        **SUITE_VARIANTS,
        bayesflow_fm_defaults=dict(defaults=True),
        ffjord=dict(hidden=None, learning_rate=1e-3),
        batch=batch,
        dtype="float32",
        budgets=dict.fromkeys(batch, budget),
        variants=tuple(SUITE_VARIANTS),
        matched_accuracy=("otflow", "bayesflow_fm_defaults"),
        test_size=5_000 if dim <= 16 else 2_000,
    )


def load_problem(name, *, quick=False, data_dir=None):
    """(data, problem) of a registered toy set, or of a generalization-suite set named by
    :func:`tfotflow.bench.suite.name` (its file written under ``data_dir`` once, split as
    ``tfotflow train FILE`` splits it, its true density known)."""
    parsed = suite.parse(name)
    if parsed is None:
        size = 2000 if quick else PROBLEMS[name].get("num_train", 100_000)
        data = datasets.load(name, num_train=size, num_val=10_000, num_test=10_000)
        return data, PROBLEMS[name]
    folder = pathlib.Path(data_dir or datasets.default_data_dir())
    rows = 2_500 if quick else suite.ROWS
    data = from_file(suite.write(folder / f"suite_{rows}_rows", *parsed, rows=rows))
    exact = suite.make(*parsed).log_prob  # the true density: the race reports its test NLL
    metadata = dataclasses.replace(data.metadata, log_prob=exact)
    return dataclasses.replace(data, metadata=metadata), suite_problem(parsed[1])


def race_splits(data, dtype, test_size):
    """The training split, and the first ``test_size`` validation and test rows of ``data``,
    as ``dtype``: arrays, or (points, conditions) pairs of a conditional set."""

    def cast(split):
        if data.metadata.condition_dim:
            return tuple(part.astype(dtype) for part in split)
        return split.astype(dtype)

    return (
        cast(data.split("train")),
        first_rows(cast(data.split("val")), test_size),
        first_rows(cast(data.split("test")), test_size),
    )


def grid_options(peer, base, point):
    """The constructor's options of ``peer`` at a grid ``point`` over the problem's ``base``
    options (``widths_factor`` scales BayesFlow's widths)."""
    options = {**base, **point}
    factor = options.pop("widths_factor", None)
    if factor is not None:
        options["widths"] = tuple(factor * width for width in options["widths"])
    return options


def build_peer(name, options, problem, train, ours, affine, *, seed):
    """The peer ``name`` ("ffjord" or "bayesflow_fm…") built from ``options`` (its
    constructor's arguments; FFJORD's ``hidden`` None is OT-Flow's weight count, and either
    width is multiplied by ``width_factor`` when given), in the coordinates of ``affine``
    (None: the data's), with its faster compilation by :func:`faster_compilation` on
    ``train``. Returns ``(contender, settings as recorded, the compilation probe's
    seconds)``, or None for a peer that cannot race here (FFJORD on a conditional set,
    BayesFlow not installed)."""
    d, k, dtype = ours.data.metadata.dim, ours.condition_dim, problem["dtype"]
    options = dict(options)
    if name == "ffjord":
        if k:  # FFJORD takes no conditions
            return None
        hidden = options["hidden"] or matched_hidden_width(d, ours.num_parameters)
        options["hidden"] = round(options.pop("width_factor", 1) * hidden)
        make = functools.partial(FFJORDContender, d, dtype=dtype, **options)
        options["solver"] = "DormandPrince (TFP defaults)"
    elif name.startswith("bayesflow_fm"):
        if not bayesflow_available():
            return None
        if options.get("defaults"):  # BasicWorkflow's offline fit: 100 epochs of batch 32
            rows = len(batch_points_and_conditions(train, k)[0])
            options["total_steps"] = 100 * math.ceil(rows / 32)
        make = functools.partial(
            FlowMatchingContender, d, name=name, dtype=dtype, condition_dim=k, **options
        )
    else:
        raise ValueError(f"unknown contender {name!r}")

    def build(jit_compile):
        peer = make(jit_compile=jit_compile)
        return peer if affine is None else Standardized(peer, affine)

    jit, probe = faster_compilation(build, train, batch=problem["batch"][name], seed=seed)
    return build(jit), {**options, "jit_compile": jit}, probe


# How OT-Flow's settings were chosen, recorded beside each race (benchmarks/README.md says on
# which sets each was tuned, and when it was frozen).
OTFLOW_TUNING = "frozen: the set's recommended settings, else tfotflow.settings.recipe's"
UNTUNED = "none: the problem's settings"


def tuned_options(tuned, problem, d):
    """``(tuning, options)``: each contender's options in ``problem``, a peer of ``tuned``
    (results of :func:`tfotflow.bench.tuning.tune`) at the point its grid chose, and for each
    contender how its settings were chosen (OT-Flow's: :data:`OTFLOW_TUNING` and the
    problem's overrides; a tuned peer's: its grid). Raises ValueError for a result of another
    dimension than ``d`` or for a peer the problem does not race."""
    options = {name: problem[name] for name in problem["batch"]}
    tuning = {
        name: OTFLOW_TUNING + (f"; overridden: {problem[name]}" if problem[name] else "")
        if name.startswith("otflow")
        else UNTUNED
        for name in options
    }
    for result in tuned:
        peer = result["peer"]
        if peer not in options:
            raise ValueError(f"`tuned` names {peer!r}, which this race does not run")
        if result["d"] != d:
            raise ValueError(
                f"`tuned` holds {peer!r} tuned at d = {result['d']} for a race at d = {d}"
            )
        options[peer] = grid_options(peer, problem[peer], result["chosen"])
        tuning[peer] = {
            "grid_points": len(result["grid"]),
            "tuning_set": result["dataset"],
            "budget_s": result["budget_seconds"],
            "chosen": result["chosen"],
        }
    return tuning, options


def compete(
    data,
    problem,
    *,
    budgets=None,
    inference_batch=2000,
    rounds=3,
    seed=0,
    on_score=None,
    posterior_samples=4000,
    only=None,
    inference=True,
    tuned=(),
):
    """Races OT-Flow against each peer on ``data`` and compares them at matched accuracy.

    The contenders are the names in ``problem["batch"]`` ("otflow…", "ffjord",
    "bayesflow_fm…"), each built from ``problem[name]``; ``only`` keeps the named ones, and
    OT-Flow's "otflow" too unless it names another OT-Flow setting. The first OT-Flow setting
    kept is the one the peers are compared with. ``budgets`` maps contender names to training
    seconds (default: the problem's); ``on_score(name, point)`` sees each curve point as it is
    scored; on the linear-Gaussian task each model draws ``posterior_samples`` per observation
    for :func:`posterior_moments`.
    """
    d, k, dtype = data.metadata.dim, data.metadata.condition_dim, problem["dtype"]
    train, validation, test = race_splits(data, dtype, problem["test_size"])
    keras.utils.set_random_seed(seed)
    names = list(problem["batch"])
    if only is not None:
        named_ours = [name for name in names if name.startswith("otflow") and name in only]
        names = [name for name in names if name in only or (name == "otflow" and not named_ours)]
    first = next(name for name in names if name.startswith("otflow"))
    ours = OTFlowContender(data, name=first, overrides=problem[first], seed=seed)
    affine = shared_affine(ours)  # every contender trains in the same coordinates
    preprocessing = "none" if affine is None else f"{ours.config['model']['normalization']}"
    contenders, settings = [ours], {ours.name: ours.run_settings}
    fair = {"xla": {ours.name: ours.xla}, "xla_probe": {}, "preprocessing": {}}
    tuning, options = tuned_options(tuned, problem, d)
    fair["preprocessing"][ours.name] = preprocessing
    for name in names:
        if name == ours.name:
            continue
        if name.startswith("otflow"):
            contenders.append(OTFlowContender(data, name=name, overrides=problem[name], seed=seed))
            fair["xla"][name] = contenders[-1].xla
            fair["preprocessing"][name] = preprocessing
            settings[name] = contenders[-1].run_settings
            continue
        built = build_peer(name, options[name], problem, train, ours, affine, seed=seed)
        if built is None:
            continue
        contender, settings[name], fair["xla_probe"][name] = built
        contenders.append(contender)
        fair["xla"][name], fair["preprocessing"][name] = contender.xla, preprocessing
    budgets = {**problem["budgets"], **(budgets or {})}
    # Each contender's scores and log-density timings run compiled its faster way, by a probe
    # on the first validation rows (untimed, as the scores are).
    probe_rows = first_rows(validation, SCORING_PROBE_ROWS)
    fair["scoring_xla_probe"] = {c.name: faster_scoring(c, probe_rows) for c in contenders}
    fair["scoring_xla"] = {c.name: c.scoring_xla for c in contenders}
    tightening_rows = first_rows(validation, TIGHTENING_ROWS)
    races, clocks, ended = {}, {}, {}
    for contender in contenders:
        batch, budget = problem["batch"][contender.name], budgets[contender.name]
        clock = clocks[contender.name] = Clock(
            lambda c=contender: reference_nll(c, validation, tightening_rows),
            budget_seconds=budget,
            factor=problem.get("score_factor", 1.4),
            on_score=None if on_score is None else functools.partial(on_score, contender.name),
            snapshot=contender.snapshot,
            restore=contender.restore,
        )
        if isinstance(contender, OTFlowContender):
            races[contender.name] = contender.run(clock)
            batch = contender.config["train"]["batch_size"]
        else:
            batches = iter(contender.batches(train, batch=batch, seed=seed))
            races[contender.name] = race(contender.step, batches, clock)
        ended[contender.name] = contender.snapshot()
        races[contender.name].update(
            budget_seconds=budget, batch_size=batch, parameters=contender.num_parameters
        )
    refine_crossings(clocks, ours.name)
    by_name = {contender.name: contender for contender in contenders}

    def test_nll_at(name, index):  # the test NLL of the model at its curve's index-th score
        clocks[name].restore_score(index)
        return reference_nll(by_name[name], test, tightening_rows)

    for name, clock in clocks.items():
        races[name].update(clock.result())
        races[name]["test_nll_at_best"] = test_nll_at(name, races[name]["best_index"])
        races[name]["reference_setting"] = by_name[name].reference_setting()
    checkpoints = None
    if inference:  # at matched accuracy: every contender, or the problem's choice of them
        matched_names = problem.get("matched_accuracy", [c.name for c in contenders])
        chosen = [c for c in contenders if c.name in matched_names or c is ours]
        checkpoints = equal_quality_checkpoints(races, [c.name for c in chosen], test_nll_at)
    for contender in contenders:  # the models as they ended
        contender.restore(ended[contender.name])
    fair["budget_s"] = {name: race_["budget_seconds"] for name, race_ in races.items()}
    fair["still_improving"] = {name: race_["still_improving"] for name, race_ in races.items()}
    fair["tuning"] = {name: tuning[name] for name in races}
    versus = {peer: head_to_head(races, ours.name, peer) for peer in races if peer != ours.name}
    test_x, test_y = batch_points_and_conditions(test, k)
    test_points = len(test_x)
    exact = data.metadata.log_prob  # the true density, when known: its NLL on these points
    exact_nll = None
    if exact is not None:
        exact_nll = -float(np.mean(exact(test_x) if test_y is None else exact(test_x, test_y)))
    posterior = (
        posterior_moments(contenders, data, samples=posterior_samples)
        if data.metadata.name == "linear_gaussian"
        else None
    )
    matched = None
    if inference:
        for contender in chosen:  # each model at its first score at the common level
            clocks[contender.name].restore_score(checkpoints["index"][contender.name])
        matched = matched_accuracy(
            chosen, test, batch=min(inference_batch, test_points), rounds=rounds
        )
    return {
        "dataset": data.metadata.name,
        "d": d,
        "condition_dim": k,
        "dtype": dtype,
        "test_points": test_points,
        "true_entropy": data.metadata.entropy,
        "exact_test_nll": exact_nll,
        "races": races,
        "versus": versus,
        "inference": matched,
        "inference_checkpoints": checkpoints,
        "inference_speedups": {
            name: row["log_prob_seconds"] / matched[ours.name]["log_prob_seconds"]
            for name, row in (matched or {}).items()
            if name != ours.name
        },
        **({"posterior": posterior} if posterior else {}),
        "settings": settings,
        "fair": fair,
        "seed": seed,
        "peak_memory_gb": peak_memory_gb(),
        "machine": machine(),
    }


def head_to_head(races, ours, peer):
    """Time to quality of the race ``ours`` against ``peer`` (names in ``races``, a dict of
    :func:`race` results): the target is the worse of the two best validation NLLs, each
    side's time the training seconds at which its validation NLL first reached it, and the
    speed-up the peer's time over ours (None when either never reached it); each side's
    quality is its test NLL where its validation NLL was best."""
    target = max(races[peer]["best_nll"], races[ours]["best_nll"])
    reach = {name: seconds_to_reach(races[name]["curve"], target) for name in (ours, peer)}
    return {
        "target_nll": target,
        # None for races scored before validation rows were (committed results)
        "test_nll_at_best": {name: races[name].get("test_nll_at_best") for name in (ours, peer)},
        "seconds_to_target": reach,
        "time_to_quality_speedup": (
            reach[peer] / reach[ours] if reach[peer] and reach[ours] else None
        ),
    }


def across_seeds(rows):
    """Medians over one data set's races with different seeds (rows of :func:`compete`).

    For every OT-Flow setting raced on every seed (a contender named "otflow…") against every
    other contender raced on every seed, keyed "ours vs other": the speed-up and the target
    of each seed (:func:`head_to_head`) and their median (None unless every seed reached the
    target); for each contender, the median best test NLL."""
    contenders = sorted(set.intersection(*(set(row["races"]) for row in rows)))
    versus = {}
    for ours in (name for name in contenders if name.startswith("otflow")):
        for other in (name for name in contenders if name != ours):
            duels = [head_to_head(row["races"], ours, other) for row in rows]
            speedups = [duel["time_to_quality_speedup"] for duel in duels]
            reached = [x for x in speedups if x is not None]
            versus[f"{ours} vs {other}"] = {
                "speedups": speedups,
                "median_speedup": float(np.median(reached)) if len(reached) == len(rows) else None,
                "target_nlls": [duel["target_nll"] for duel in duels],
            }
    return {
        "dataset": rows[0]["dataset"],
        "seeds": [row["seed"] for row in rows],
        "versus": versus,
        "median_best_nll": {
            name: float(np.median([row["races"][name]["best_nll"] for row in rows]))
            for name in contenders
        },
    }


def race_summary(rows):
    """One row per (data set, peer) of finished races (rows of :func:`compete`, any seeds):
    ``dataset``, ``d``, ``peer``, ``seeds``; ``median_speedup`` (the median over seeds of
    the peer's time to the worse of the two best validation NLLs over OT-Flow's time to it;
    None unless every seed reached it), ``speedup_range`` ([min, max] over seeds) and
    ``speedup_bounds`` (per seed, the ratio's range from the scores that bracket each
    crossing: its resolution); ``otflow_test_nll`` and ``peer_test_nll`` (medians of each
    contender's test NLL at its best validation); and ``fair``: what each contender got
    (``xla``, ``preprocessing``, ``tuning``, ``budget_s``, and ``still_improving`` per seed).
    OT-Flow is the "otflow" race (the settings users get). Races against a peer at its
    defaults and at a tuned point (``fair["tuning"]``, :func:`tuned_options`) are summarized
    apart: ``peer_tuned`` says which the row is."""
    groups = {}
    for row in (row for row in rows if "otflow" in row["races"]):
        for peer in (name for name in row["races"] if not name.startswith("otflow")):
            tuned = isinstance(row.get("fair", {}).get("tuning", {}).get(peer), dict)
            groups.setdefault((row["dataset"], peer, tuned), []).append(row)
    summary = []
    for (dataset, peer, tuned), seeded in groups.items():
        duels = [head_to_head(row["races"], "otflow", peer) for row in seeded]
        speedups = [duel["time_to_quality_speedup"] for duel in duels]
        bounds = []
        for row, duel in zip(seeded, duels):
            ours = crossing_bracket(row["races"]["otflow"]["curve"], duel["target_nll"])
            theirs = crossing_bracket(row["races"][peer]["curve"], duel["target_nll"])
            bounds.append(
                None
                if ours is None or theirs is None or not ours[0] or not ours[1]
                else [theirs[0] / ours[1], theirs[1] / ours[0]]
            )
        reached = [x for x in speedups if x is not None]
        fair = {key: {} for key in ("xla", "preprocessing", "tuning", "budget_s")}
        fair["still_improving"] = {}
        record = seeded[0].get("fair", {})
        for name in ("otflow", peer):
            for key in ("xla", "preprocessing", "tuning"):
                fair[key][name] = record.get(key, {}).get(name, "not recorded")
            fair["budget_s"][name] = seeded[0]["races"][name]["budget_seconds"]
            fair["still_improving"][name] = [
                row["races"][name].get("still_improving") for row in seeded
            ]
        summary.append(
            {
                "dataset": dataset,
                "d": seeded[0]["d"],
                "peer": peer,
                "peer_tuned": tuned,
                "seeds": [row["seed"] for row in seeded],
                "median_speedup": (
                    float(np.median(reached)) if len(reached) == len(seeded) else None
                ),
                "speedup_range": [min(reached), max(reached)] if reached else None,
                "speedups": speedups,
                "speedup_bounds": bounds,
                "otflow_test_nll": _median_of(seeded, "otflow", "test_nll_at_best"),
                "peer_test_nll": _median_of(seeded, peer, "test_nll_at_best"),
                "fair": fair,
            }
        )
    return summary


def generalization_summary(rows):
    """One row per generalization-suite set of finished races (rows of :func:`compete`, any
    seeds): ``dataset``, ``d``, ``character``, ``seeds``; the medians over seeds of each
    contender's test NLL at its best validation (``otflow_test_nll``, ``bayesflow_test_nll``,
    ``ffjord_test_nll``; None for a peer not raced), of the peer's time to the worse of the two
    best validation NLLs over OT-Flow's (``speedup_vs_bayesflow``, ``speedup_vs_ffjord``; None
    unless every seed reached it), of OT-Flow's training seconds with its compilation
    (``otflow_wall_s``; scores not counted) and the exact NLL of the test rows; ``doublings``,
    the most times any seed's training solve doubled; ``weights`` per contender."""
    groups = {}
    for row in rows:
        parsed = suite.parse(pathlib.Path(row["dataset"]).stem)
        if parsed is not None:
            groups.setdefault(row["dataset"], (parsed, []))[1].append(row)
    summary = []
    for dataset, ((character, dim, _), seeded) in groups.items():
        peers = {"bayesflow": "bayesflow_fm_defaults", "ffjord": "ffjord"}
        entry = {
            "dataset": dataset,
            "d": dim,
            "character": character,
            "seeds": [row["seed"] for row in seeded],
            "exact_test_nll": float(np.median([row["exact_test_nll"] for row in seeded])),
            "otflow_test_nll": _median_of(seeded, "otflow", "test_nll_at_best"),
        }
        for short, peer in peers.items():
            raced = all(peer in row["races"] for row in seeded)
            entry[f"{short}_test_nll"] = (
                _median_of(seeded, peer, "test_nll_at_best") if raced else None
            )
            speedups = [
                head_to_head(row["races"], "otflow", peer)["time_to_quality_speedup"]
                for row in seeded
                if raced
            ]
            reached = raced and None not in speedups
            entry[f"speedup_vs_{short}"] = float(np.median(speedups)) if reached else None
        ours = [row["races"]["otflow"] for row in seeded]
        entry["doublings"] = max(race_.get("doublings", 0) for race_ in ours)
        entry["otflow_wall_s"] = float(
            np.median([r["curve"][-1][1] + r["first_iteration_seconds"] for r in ours])
        )
        entry["weights"] = {name: r["parameters"] for name, r in seeded[0]["races"].items()}
        summary.append(entry)
    return summary


def _median_of(rows, name, key):
    values = [row["races"][name].get(key) for row in rows]
    return None if None in values else float(np.median(values))


def bayesflow_available():
    """Whether BayesFlow (the benchmark-only extra) is installed."""
    return importlib.util.find_spec("bayesflow") is not None


def log_score(name, point):
    """Prints a race's curve point (iteration, training seconds, validation NLL) to stderr as
    it is scored."""
    iteration, seconds, validation = point
    print(
        f"{name}: iteration {iteration}, {seconds:.1f} s, validation NLL {validation:.4f}",
        file=sys.stderr,
    )


def quick_problem(problem):
    """``problem`` made small for a check of the harness: OT-Flow at width 8 with 2 RK4 steps
    and 20 warm-start steps, every batch 256, 500 test rows, 2 s of training each."""
    small = dict(width=8, num_steps=2, warm_start=20)
    return {
        **problem,
        **{n: {**problem[n], **small} for n in problem["batch"] if n.startswith("otflow")},
        "batch": {name: 256 for name in problem["batch"]},
        "test_size": 500,
        "budgets": {name: 2.0 for name in problem["budgets"]},
    }


def run(
    quick=False,
    names=("8gaussians",),
    miniboone_dir=None,
    seeds=(0,),
    on_row=None,
    contenders=None,
    score_factor=None,
    inference=True,
    tuned=(),
):
    """Races on each named toy set, and on MINIBOONE when ``miniboone_dir`` holds its splits,
    once per seed; the curves are printed to stderr as they are scored.

    After the first seed, the comparison at matched accuracy is skipped, and so are the
    contenders a problem names in ``first_seed_only`` unless ``contenders`` names them; with
    several seeds the result's ``across_seeds`` holds each data set's medians
    (:func:`across_seeds`). ``on_row`` sees each finished race's row (e.g. to save it before
    the next begins). ``contenders`` names the ones to race besides OT-Flow (default: all but
    the problem's ``variants``); ``score_factor`` spaces the scores further apart (each after
    that factor more training time; default 1.4), which saves the peers' slow exact scores at
    high dimension; ``inference=False`` skips the comparison at matched accuracy (e.g. for
    seeds run apart from the first); ``tuned`` sets peers at the points their tuning grids
    chose (:func:`compete`)."""
    jobs = []
    for name in names:
        jobs.append(load_problem(name, quick=quick))
    if miniboone_dir is not None:
        data = datasets.load("miniboone", data_dir=miniboone_dir, train_split="val")
        jobs.append((data, PROBLEMS["miniboone"]))
    rows, summaries = [], []
    for data, problem in jobs:
        options = dict(on_score=log_score)
        if quick:
            problem = quick_problem(problem)
            options = dict(inference_batch=256, rounds=1, posterior_samples=200)
        if contenders is None:  # a problem's variants race only when named
            chosen = [n for n in problem["batch"] if n not in problem.get("variants", ())]
        else:
            chosen = [n for n in problem["batch"] if n in contenders]
        once = () if contenders is not None else problem.get("first_seed_only", ())
        later = [n for n in chosen if n not in once]
        seeded = []
        for i, seed in enumerate(seeds):
            row = compete(
                data,
                problem if score_factor is None else {**problem, "score_factor": score_factor},
                seed=seed,
                only=chosen if i == 0 else later,
                inference=inference and i == 0,
                tuned=tuned,
                **options,
            )
            seeded.append(row)
            if on_row is not None:
                on_row(row)
        rows.extend(seeded)
        if len(seeds) > 1:
            summaries.append(across_seeds(seeded))
    result = {"benchmark": "time_to_quality", "quick": quick, "rows": rows}
    return {**result, "across_seeds": summaries} if summaries else result
