"""Time to a given test NLL, and inference at matched accuracy: OT-Flow against TFP FFJORD.

The paper's speed claims are about accuracy per second, not per-iteration cost: FFJORD's
one-probe Hutchinson step is cheap, but its adaptive solver needs more and more evaluations
as its paths bend during training, while OT-Flow's straight paths keep a few RK4 steps
accurate. So each model trains on the same data for a budget of *training* seconds (the clock
stops while it is scored), its test NLL is recorded on a geometric schedule of training time,
and then:

* **time to quality**: every score uses each model's reference solve (OT-Flow: 4× its
  training steps; FFJORD: rtol 1e-5), so neither is credited with discretization error. The
  target is the worse of the two best test NLLs (a level both reached); each model's time is
  the training time at which it first scored at or below it; the speed-up is FFJORD's time
  over OT-Flow's.
* **inference at matched accuracy**: each trained model is then scored at every cheaper
  setting (fewer steps; looser tolerance); the cheapest one that, with every more accurate
  setting, stays within 0.01 nats of the reference NLL is chosen, and ``log_prob``
  throughput is timed there, interleaved with the other's.

FFJORD runs as TFP ships it: ``tfb.FFJORD`` with the default DormandPrince solver, one-probe
Hutchinson trace in training, and Adam. Its score uses the exact trace for d ≤ 10 and, above
that, a one-probe Hutchinson estimate with probes fixed across solver settings (unbiased, and
about d times cheaper than the exact trace, but not an exact density); above d = 10 the same
trained FFJORD is also scored with its exact autodiff trace (``ffjord_exact``), which is what
an exact log-density costs it.
"""

import copy
import functools
import math
import time

import tensorflow as tf
import tensorflow_probability as tfp

from tfotflow import datasets
from tfotflow._keras import keras
from tfotflow.bench.peers import CountedField, ffjord_distribution, matched_hidden_width
from tfotflow.bench.timing import interleaved_medians, peak_memory_gb, training_step
from tfotflow.callbacks import ClipWeights
from tfotflow.flow_matching import FlowMatching
from tfotflow.hardware import use_xla
from tfotflow.model import OTFlowModel
from tfotflow.training import batch_stream, learning_rate_schedule

tfb = tfp.bijectors

TOLERANCE_NATS = 0.01
EXACT_TRACE_UP_TO = 10


def geometric_schedule(first, last, factor):
    """Training-time checkpoints first, first·factor, … up to and including ``last``."""
    times, t = [], float(first)
    while t < last:
        times.append(t)
        t *= factor
    return [*times, float(last)]


def race(step, score, batches, *, budget_seconds, first_score=2.0, factor=1.4):
    """Trains with ``step(batch)`` for ``budget_seconds`` of training time, scoring as it goes.

    Args:
        step: one training iteration on a batch; its result is waited for.
        score: returns the current test NLL (a float); its time is not counted.
        batches: an iterator of training batches.
        budget_seconds: training seconds to spend.
        first_score, factor: score after ``first_score`` training seconds, then whenever the
            training time has grown by ``factor`` since the last score, and at the end.

    Returns:
        A dict with ``curve`` (a list of [iteration, training seconds, test NLL]), the
        ``iterations`` run, the ``first_iteration_seconds`` (tracing included; not counted in
        the training time) and the ``best_nll``.
    """
    start = time.perf_counter()
    step(next(batches)).numpy()  # traces and compiles: not training progress
    first_iteration_seconds = time.perf_counter() - start
    curve = [[0, 0.0, float(score())]]
    trained, iterations = 0.0, 0
    for checkpoint in geometric_schedule(first_score, budget_seconds, factor):
        if trained >= checkpoint:  # one iteration outlasted several checkpoints
            continue
        while trained < checkpoint:
            batch = next(batches)
            start = time.perf_counter()
            loss = float(step(batch).numpy())
            trained += time.perf_counter() - start
            iterations += 1
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at iteration {iterations}")
        curve.append([iterations, trained, float(score())])
    return {
        "curve": curve,
        "iterations": iterations,
        "first_iteration_seconds": first_iteration_seconds,
        "best_nll": min(nll for _, _, nll in curve),
    }


def seconds_to_reach(curve, target):
    """Training seconds at the first score after training began that is ≤ ``target``.

    None when training never reached it.
    """
    return next((seconds for step, seconds, nll in curve if step and nll <= target), None)


# ------------------------------------------------------------------------------- the contenders


class OTFlowContender:
    """OT-Flow: Adam on J, weights clipped to [−1.5, 1.5] before each step
    (:class:`tfotflow.callbacks.ClipWeights`); optionally after ``warm_start`` flow-matching
    steps (:class:`tfotflow.FlowMatching`, batch ``warm_start_batch``), and with a cosine
    learning rate over ``iterations`` (tfotflow's toy recipe) instead of a constant one."""

    name = "otflow"

    def __init__(
        self,
        d,
        *,
        width,
        alpha,
        num_steps,
        learning_rate,
        dtype,
        warm_start=0,
        warm_start_batch=256,
        warm_start_lr=0.02,
        iterations=None,
    ):
        self.model = OTFlowModel(d, width=width, alpha=alpha, num_steps=num_steps, dtype=dtype)
        self.num_steps = num_steps
        schedule = "plateau" if iterations is None else "cosine"
        self.optimizer = keras.optimizers.Adam(
            learning_rate_schedule(learning_rate, schedule, iterations)
        )
        jit = use_xla(d)  # as tfotflow's training does
        self.warm_start, self.warm_start_batch = warm_start, warm_start_batch
        matching = FlowMatching(self.model)
        matching_optimizer = keras.optimizers.Adam(warm_start_lr)
        self.matching_step = training_step(
            lambda x: matching.loss_on(x, matching_optimizer.iterations),
            self.model.trainable_variables,
            matching_optimizer,
            jit_compile=jit,
        )
        variables = self.model.trainable_variables
        update = training_step(
            lambda x: self.model.objective(x, jit_compile=jit)[0],
            variables,
            self.optimizer,
            jit_compile=jit,
        )

        def step(x):
            ClipWeights.clip(self.model.trainable_variables)
            return update(x)

        self.likelihood_step = step
        self._log_prob = {}

    def batches(self, train, *, batch, seed):
        """The warm start's batches, then the likelihood phase's."""
        warm = iter(batch_stream(train, batch_size=self.warm_start_batch, seed=seed))
        for _ in range(self.warm_start):
            yield "warm", next(warm)
        yield from (("likelihood", x) for x in batch_stream(train, batch_size=batch, seed=seed))

    def step(self, phase_and_batch):
        phase, x = phase_and_batch
        if phase == "warm":
            loss = self.matching_step(x)
            ClipWeights.clip(self.model.trainable_variables)
            return loss
        return self.likelihood_step(x)

    @property
    def num_parameters(self):
        return int(sum(math.prod(v.shape) for v in self.model.potential.weights))

    def log_prob_fn(self, setting):
        """A compiled ``log_prob`` with ``setting`` RK4 steps."""
        if setting not in self._log_prob:
            self._log_prob[setting] = tf.function(
                lambda x: self.model.log_prob(x, num_steps=setting)
            )
        return self._log_prob[setting]

    def evaluations(self, setting, x):
        return 4 * setting

    def reference_setting(self):
        return 4 * self.num_steps

    def settings(self):
        """Step counts to try, cheapest first."""
        return [s for s in (1, 2, 3, 4, 6, 8, 12, 16, 24) if s < self.reference_setting()]


class FFJORDContender:
    """TFP's FFJORD: an MLP field (tanh), default DormandPrince, Hutchinson training, Adam."""

    name = "ffjord"
    exact_trace = None  # None: exact for d ≤ 10, fixed-probe Hutchinson above

    def __init__(self, d, *, hidden, learning_rate, dtype):
        self.d, self.dtype = d, dtype
        self.field = CountedField(d, hidden, dtype)
        self.optimizer = keras.optimizers.Adam(learning_rate)
        distribution = ffjord_distribution(self.field, d, dtype, trace="hutchinson")
        self.step = training_step(
            lambda x: -tf.reduce_mean(distribution.log_prob(x)),
            self.field.network.trainable_variables,
            self.optimizer,
        )
        self._log_prob = {}

    @property
    def num_parameters(self):
        return self.field.num_parameters

    def batches(self, train, *, batch, seed):
        return iter(batch_stream(train, batch_size=batch, seed=seed))

    def with_exact_trace(self):
        """The same trained model, scored with the exact (autodiff) trace at every d."""
        view = copy.copy(self)
        view.name, view.exact_trace, view._log_prob = "ffjord_exact", True, {}
        return view

    def log_prob_fn(self, setting):
        """A compiled ``log_prob`` with DormandPrince at rtol = ``setting``, atol = rtol/1000."""
        if setting not in self._log_prob:
            exact = self.d <= EXACT_TRACE_UP_TO if self.exact_trace is None else self.exact_trace
            if exact:
                trace = "exact"
            else:  # the same probes at every setting, so only the solver error changes
                trace = functools.partial(
                    tfb.ffjord.trace_jacobian_hutchinson,
                    sample_fn=lambda shape, dtype, seed: tf.random.stateless_normal(
                        shape, seed=[7, 11], dtype=dtype
                    ),
                )
            solver = tfp.math.ode.DormandPrince(rtol=setting, atol=setting * 1e-3)
            distribution = ffjord_distribution(
                self.field, self.d, self.dtype, trace=trace, solver=solver.solve
            )
            self._log_prob[setting] = tf.function(distribution.log_prob)
        return self._log_prob[setting]

    def evaluations(self, setting, x):
        self.field.evaluations.assign(0)
        self.log_prob_fn(setting)(x).numpy()
        return int(self.field.evaluations.numpy())

    def reference_setting(self):
        return 1e-5

    def settings(self):
        """Relative tolerances to try, loosest first (TFP's default is 1e-3)."""
        return [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]


def mean_nll(contender, setting, test, chunk=5000):
    log_prob = contender.log_prob_fn(setting)
    total = sum(
        float(tf.reduce_sum(log_prob(tf.constant(test[i : i + chunk]))).numpy())
        for i in range(0, len(test), chunk)
    )
    return -total / len(test)


def matched_accuracy(contenders, test, *, batch, rounds):
    """The cheapest setting that keeps each model's NLL within 0.01 nats of its reference
    NLL (it and every more accurate setting tried), and the ``log_prob`` throughput there."""
    rows, timed = {}, {}
    x = tf.constant(test[:batch])
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
        timed[contender.name] = functools.partial(contender.log_prob_fn(chosen), x)
    seconds = interleaved_medians(timed, rounds=rounds)
    for name, row in rows.items():
        row["log_prob_seconds"] = seconds[name]
        row["log_prob_per_second"] = batch / seconds[name]
    return rows


# ------------------------------------------------------------------------------- the problems

PROBLEMS = {
    # tfotflow's toy recipe (the quick start's: the paper's model, a flow-matching warm start,
    # 4 RK4 steps, batch 1024, cosine learning rate); FFJORD's toy field
    # width with a matched depth, batch and learning rate from FFJORD's toy recipe.
    "8gaussians": dict(
        otflow=dict(
            width=32,
            alpha=(1.0, 30.0, 1.0),
            num_steps=4,
            learning_rate=0.03,
            warm_start=1000,
            iterations=1250,
        ),
        otflow_batch=1024,
        ffjord=dict(hidden=64, learning_rate=1e-3),
        ffjord_batch=100,
        dtype="float32",
        budgets=(120.0, 600.0),  # the recipe's last step comes after about 60 s
        test_size=10_000,
    ),
    # OT-Flow's MINIBOONE settings; FFJORD with a field of the same parameter count and
    # FFJORD's tabular batch and learning rate.
    "miniboone": dict(
        otflow=dict(width=256, alpha=(1.0, 100.0, 15.0), num_steps=6, learning_rate=0.01),
        otflow_batch=2000,
        ffjord=dict(hidden=None, learning_rate=1e-3),
        ffjord_batch=1000,
        dtype="float32",
        budgets=(600.0, 600.0),
        test_size=None,
    ),
}
PROBLEMS["checkerboard"] = PROBLEMS["8gaussians"]  # the same recipes on the other toy set


def compete(data, problem, *, budgets=None, inference_batch=2000, rounds=3, seed=0):
    """Races OT-Flow and FFJORD on ``data`` and compares them at matched accuracy."""
    d, dtype = data.metadata.dim, problem["dtype"]
    train = data.train.astype(dtype)
    test = data.test.astype(dtype)[: problem["test_size"]]
    keras.utils.set_random_seed(seed)
    ours = OTFlowContender(d, dtype=dtype, **problem["otflow"])
    ffjord_settings = dict(problem["ffjord"])
    if ffjord_settings["hidden"] is None:
        ffjord_settings["hidden"] = matched_hidden_width(d, ours.num_parameters)
    theirs = FFJORDContender(d, dtype=dtype, **ffjord_settings)
    budgets = budgets or problem["budgets"]
    races = {}
    for contender, batch, budget in (
        (ours, problem["otflow_batch"], budgets[0]),
        (theirs, problem["ffjord_batch"], budgets[1]),
    ):
        races[contender.name] = race(
            contender.step,
            lambda c=contender: mean_nll(c, c.reference_setting(), test),
            iter(contender.batches(train, batch=batch, seed=seed)),
            budget_seconds=budget,
        )
        races[contender.name].update(
            budget_seconds=budget, batch_size=batch, parameters=contender.num_parameters
        )
    target = max(r["best_nll"] for r in races.values())
    reach = {name: seconds_to_reach(r["curve"], target) for name, r in races.items()}
    scored = [ours, theirs]
    if d > EXACT_TRACE_UP_TO:  # FFJORD's NLL above was a Hutchinson estimate: add the exact one
        scored.append(theirs.with_exact_trace())
    inference = matched_accuracy(
        scored, test, batch=min(inference_batch, len(test)), rounds=rounds
    )
    return {
        "dataset": data.metadata.name,
        "d": d,
        "dtype": dtype,
        "test_points": len(test),
        "true_entropy": data.metadata.entropy,
        "races": races,
        "target_nll": target,
        "seconds_to_target": reach,
        "time_to_quality_speedup": (
            reach["ffjord"] / reach["otflow"] if reach["ffjord"] and reach["otflow"] else None
        ),
        "inference": inference,
        "inference_speedups": {
            name: row["log_prob_seconds"] / inference["otflow"]["log_prob_seconds"]
            for name, row in inference.items()
            if name != "otflow"
        },
        "settings": {
            "otflow": problem["otflow"],
            "ffjord": {**ffjord_settings, "solver": "DormandPrince (TFP defaults)"},
        },
        "peak_memory_gb": peak_memory_gb(),
    }


def run(quick=False, names=("8gaussians",), miniboone_dir=None):
    """Races on each named toy set, and on MINIBOONE when ``miniboone_dir`` holds its splits."""
    jobs = []
    for name in names:
        size = 2000 if quick else 100_000
        data = datasets.load(name, num_train=size, num_val=10, num_test=min(size, 10_000))
        jobs.append((data, PROBLEMS[name]))
    if miniboone_dir is not None:
        data = datasets.load("miniboone", data_dir=miniboone_dir, train_split="val")
        jobs.append((data, PROBLEMS["miniboone"]))
    rows = []
    for data, problem in jobs:
        if quick:
            problem = {
                **problem,
                "otflow": {
                    **problem["otflow"],
                    "width": 8,
                    "num_steps": 2,
                    **(
                        {"warm_start": 20, "iterations": 100}
                        if "warm_start" in problem["otflow"]
                        else {}
                    ),
                },
                "otflow_batch": 256,
                "test_size": 500,
            }
            row = compete(data, problem, budgets=(2.0, 2.0), inference_batch=256, rounds=1)
        else:
            row = compete(data, problem)
        rows.append(row)
    return {"benchmark": "time_to_quality", "quick": quick, "rows": rows}
