"""The contenders of a race: OT-Flow as ``tfotflow train`` runs it, and its peers.

Each contender trains against a :class:`tfotflow.bench.clock.Clock`, keeps and restores its
state (the checkpoints a crossing is narrowed on), and scores exact log-densities at its
reference setting (OT-Flow: 4× its training steps; FFJORD: DormandPrince rtol 1e-5;
BayesFlow flow matching: fixed 5th-order steps doubled until log p moves by less than
:data:`TOLERANCE_NATS`) or at cheaper settings for inference at matched accuracy. Peers train
in OT-Flow's coordinates (:class:`Standardized`) and with XLA or without, whichever a short
probe found faster (:func:`faster_compilation`, :func:`faster_scoring`).
"""

import math
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfotflow import runs
from tfotflow._keras import keras
from tfotflow.bench.peers import CountedField, ffjord_distribution
from tfotflow.bench.timing import TrainingTime, training_step
from tfotflow.flow_matching import FlowMatching
from tfotflow.hardware import use_xla
from tfotflow.settings import build_config, check_config, recommended_settings, rule_for
from tfotflow.training import batch_stream
from tfotflow.validation import batch_points_and_conditions

TOLERANCE_NATS = 0.01


MAX_REFERENCE_STEPS = 128  # a fixed-step peer's reference solve: at most these steps


TIGHTENING_ROWS = 500  # the validation rows on which a reference is tightened


class ClockCallback(TrainingTime):
    """Keeps a race's clock (:class:`tfotflow.bench.clock.Clock`) during a Keras ``fit`` by
    :class:`tfotflow.bench.timing.TrainingTime`'s count: the steps, the validations, the
    checkpoints, the solver-error checks and a recompile when the steps double are training,
    all of which a user's run pays; the first call of each phase (tracing and compiling, as the
    peers' first step) and the scores are not. Stops training when the budget is spent."""

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
        the settings' steps are done); returns :meth:`tfotflow.bench.clock.Clock.result` with
        the training solve's ``num_steps`` at the end and its ``doublings`` (by the
        solver-error control)."""
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
