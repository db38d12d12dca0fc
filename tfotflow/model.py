"""``OTFlowModel``: a Keras model that trains an OT-Flow with the paper's objective."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfotflow import ode, serialization, serving, training
from tfotflow._keras import keras
from tfotflow.bijector import CheckedShift, ConditionalShift, OTFlow
from tfotflow.callbacks import StopOnNonFinite
from tfotflow.checks import check_alpha
from tfotflow.distribute import spans_workers
from tfotflow.hardware import use_xla
from tfotflow.potential import Potential
from tfotflow.regularizers import resolve as resolve_regularizers
from tfotflow.settings import DEFAULTS, check_normalization, recipe_learning_rate, recipe_num_steps
from tfotflow.validation import (
    batch_points_and_conditions,
    check_float_dtype,
    check_int,
    check_points,
    check_positive_float,
    convert_points,
)

tfd = tfp.distributions
tfb = tfp.bijectors


@serialization.register
class OTFlowModel(keras.Model):
    """An OT-Flow density model trained with the OT-Flow objective (Onken et al. 2021, eq. 11).

    ```none
    J = α_C · mean C + Σ_k w_k · mean R_k,    C = ½‖x(1)‖² + (d/2) log 2π − ℓ(1)   (the NLL)
    ```

    with the running costs R_k integrated along the flow by RK4 (by default the transport cost
    L with weight α_L and the HJB residual R with weight α_R). ``fit`` reports ``loss``, ``nll``
    and one metric per regularizer (``transport``, ``hjb``), in training with ``num_steps`` and
    in validation / ``evaluate`` with ``eval_num_steps``.

    The flow works in standardized coordinates x̃ and the model's densities are in the data's
    own units: x = μ + σ ⊙ x̃ (``normalization="diagonal"``) or x = μ + L x̃ (``"whiten"``, L
    the Cholesky factor of the data's covariance), a TFP ``Shift`` and ``Scale`` (or
    ``ScaleMatvecTriL``) chained after the flow, so

    ```none
    log p(x) = log p̃((x − μ)/σ) − Σ_j log σ_j          (whitened: − Σ_j log L_jj)
    ```

    μ and σ (or L) are non-trainable weights, the identity until :meth:`adapt` computes them
    from the data (as ``keras.layers.Normalization.adapt``); they are saved with the model.
    A conditional model standardizes its conditions too (diagonal; no Jacobian enters), and
    :meth:`adapt` starts it from the linear-Gaussian fit of p(x | y): x = μ + ỹ B + σ ⊙ x̃,
    the shift ỹ B a :class:`tfotflow.bijector.ConditionalShift` (Jacobian the identity).

    With ``condition_dim=k`` the model is a conditional density p(x | y) (a conditional
    potential Φ(x, y, t), :class:`tfotflow.Potential`): ``fit`` takes (points, conditions)
    pairs — ``fit(points, conditions)`` or a ``tf.data.Dataset`` of pairs — the objective is
    unchanged (the running costs act on the x-velocity), and ``log_prob(x, condition)`` and
    ``sample(n, condition)`` take y.

    Args:
        dim: the data dimension d.
        width: the potential's width m. Defaults to 32.
        num_layers: ResNet layers of the potential (≥ 2). Defaults to 2.
        rank: rank of the potential's quadratic term. Defaults to 10.
        alpha: (α_L, α_C, α_R): α_L scales the dynamics (and weights the transport cost), α_C
            weights the NLL, α_R the HJB residual. Defaults to (1.0, 30.0, 1.0), the
            recipe's (:mod:`tfotflow.recipe`).
        num_steps: RK4 steps in training. Defaults to the recipe's: 4 for d ≤ 16, else 6.
        eval_num_steps: RK4 steps in validation, ``evaluate``, ``log_prob`` and ``sample``.
            Defaults to twice ``num_steps`` when neither is given, else ``num_steps``.
        regularizers: ``{name: weight}`` of registered regularizers (entry-point group
            ``tfotflow.regularizers``). Defaults to ``{"transport": α_L, "hjb": α_R}``.
        dtype: "float32" or "float64". Defaults to "float32".
        condition_dim: k, the width of the condition y (0: an unconditional model). Defaults
            to 0.
        time_features: F, the Fourier pairs of t the potential reads besides t
            (:class:`tfotflow.Potential`; 0: the paper's potential). Defaults to 0.
        trace: the log-determinant's trace in *training* steps: "exact" (closed form) or
            "hutchinson" (one Rademacher probe through the closed-form gradient: unbiased,
            cheaper for large d, noisier). Validation, ``evaluate``, ``log_prob`` and
            ``sample`` always use the exact trace. Defaults to "exact".
        normalization: the affine map from the flow's coordinates to the data's: "diagonal"
            (a shift and a scale per column), "whiten" (a shift and a lower-triangular L), or
            None (none: the data's units are the flow's, as in models saved before it
            existed). Defaults to "diagonal" (the identity until :meth:`adapt`).
        **kwargs: passed to ``keras.Model`` (``name``).

    Example:

    >>> import numpy as np
    >>> model = OTFlowModel(2, width=8, num_steps=2)
    >>> model.compile(optimizer=keras.optimizers.Adam(0.01))
    >>> history = model.fit(np.random.default_rng(0).normal(size=(64, 2)), batch_size=32,
    ...                     epochs=1, verbose=0)
    >>> sorted(history.history)
    ['hjb', 'loss', 'nll', 'transport']

    Conditional on y ∈ R³:

    >>> model = OTFlowModel(2, width=8, num_steps=2, condition_dim=3)
    >>> model.compile(optimizer=keras.optimizers.Adam(0.01))
    >>> rng = np.random.default_rng(0)
    >>> points, conditions = rng.normal(size=(64, 2)), rng.normal(size=(64, 3))
    >>> history = model.fit(points, conditions, batch_size=32, epochs=1, verbose=0)
    >>> model.log_prob(points[:4], conditions[:4]).shape, model.sample(5, conditions[0]).shape
    (TensorShape([4]), TensorShape([5, 2]))
    """

    def __init__(
        self,
        dim,
        *,
        width=DEFAULTS["width"],
        num_layers=DEFAULTS["num_layers"],
        rank=DEFAULTS["rank"],
        time_features=DEFAULTS["time_features"],
        alpha=DEFAULTS["alpha"],
        num_steps=DEFAULTS["num_steps"],
        eval_num_steps=DEFAULTS["eval_num_steps"],
        regularizers=None,
        dtype=DEFAULTS["dtype"],
        condition_dim=0,
        trace=DEFAULTS["trace"],
        normalization=DEFAULTS["normalization"],
        **kwargs,
    ):
        precision = check_float_dtype("dtype", dtype).name
        super().__init__(dtype=precision, **kwargs)
        self.precision = precision
        self.dim = check_int("dim", dim, minimum=1)
        self.alpha = check_alpha(alpha)
        self.trace = ode.check_trace(trace)
        if num_steps is None:  # the rule's, with evaluation at twice the steps
            num_steps = recipe_num_steps(self.dim)
            eval_num_steps = 2 * num_steps if eval_num_steps is None else eval_num_steps
        self.num_steps = check_int("num_steps", num_steps, minimum=1)
        self.eval_num_steps = check_int(
            "eval_num_steps",
            self.num_steps if eval_num_steps is None else eval_num_steps,
            minimum=1,
        )
        if regularizers is None:
            regularizers = {"transport": self.alpha[0], "hjb": self.alpha[2]}
        self.regularizers = dict(regularizers)
        self._costs, self._cost_weights = resolve_regularizers(self.regularizers)
        self.condition_dim = check_int("condition_dim", condition_dim, minimum=0)
        self.potential = Potential(
            width=width,
            num_layers=num_layers,
            rank=rank,
            condition_dim=self.condition_dim,
            time_features=time_features,
            dtype=self.precision,
        )
        self.potential.build((None, self.dim))
        self.normalization = check_normalization(normalization)
        if self.normalization:
            self._add_normalization_weights()
        self.built = True
        self._trackers = {
            name: keras.metrics.Mean(name=name) for name in ["loss", "nll", *self.regularizers]
        }

    # ----------------------------------------------------------------------------- units

    def _add_normalization_weights(self):
        def weight(name, shape, initializer):
            return self.add_weight(
                name=name, shape=shape, initializer=initializer, trainable=False
            )

        d, k = self.dim, self.condition_dim
        self.loc = weight("loc", (d,), "zeros")
        if self.normalization == "whiten":
            self.scale_tril = weight("scale_tril", (d, d), "identity")
        else:
            self.scale = weight("scale", (d,), "ones")
        if k:
            self.condition_loc = weight("condition_loc", (k,), "zeros")
            self.condition_scale = weight("condition_scale", (k,), "ones")
            self.condition_shift = weight("condition_shift", (k, d), "zeros")  # B, last

    def adapt(self, data, conditions=None, *, spread=DEFAULTS["spread"], regress=True):
        """Sets the affine map from the flow's coordinates to the data's from the data, as
        ``keras.layers.Normalization.adapt``: μ the mean of ``data`` [n, d], σ its standard
        deviation per column divided by ``spread``, or L the Cholesky factor of its covariance
        divided by ``spread`` (``normalization="whiten"``). The flow's coordinates
        x̃ = (x − μ) / σ then have standard deviation ``spread`` per column.

        A conditional model standardizes its conditions, ỹ = (y − μ_y) / σ_y, and with
        ``regress`` starts from the linear-Gaussian fit of p(x | y): B [k, d] and μ are the
        least-squares fit x ≈ μ + ỹ B, and σ (or L) are the residuals' (their covariance
        is what is left of the data's once ỹ is known). Then

        ```none
        x = μ + ỹ B + σ ⊙ x̃,     log p(x | y) = log p̃(x̃ | ỹ) − Σ_j log σ_j
        ```

        and an identity flow is that fit: where the posterior mean is linear in y (as in the
        linear-Gaussian simulation-based-inference task), the flow is left only the shape.

        Args:
            data: [n, d] points (numpy or a tensor), in the data's units.
            conditions: [n, k] conditions, for a conditional model.
            spread: the standard deviation of the flow's coordinates, > 0. Defaults to 1.
            regress: for a conditional model, shift the points by the linear fit on the
                conditions (else B = 0). Defaults to True.

        Raises:
            ValueError: for a model without ``normalization``, fewer than two rows (for a
                regression, fewer than k + 2), a column that is constant (σ = 0) or, with
                ``regress``, an exact linear function of the conditions, a covariance that
                is not positive definite, or a ``spread`` that is not a positive number.
        """
        spread = check_positive_float("spread", spread)
        if not self.normalization:
            raise ValueError(
                "`adapt` needs a model built with normalization='diagonal' or 'whiten'. "
                "Received: normalization=None"
            )
        x = np.asarray(data, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim or len(x) < 2:
            raise ValueError(
                f"`data` must be [n, {self.dim}] with n >= 2. Received: shape {x.shape}"
            )
        deviation, mean = x.std(axis=0), x.mean(axis=0)
        _check_spread("data", deviation)
        if self.condition_dim:
            y = np.asarray(self.potential.check_condition(conditions), np.float64)
            y = y.reshape(-1, self.condition_dim)
            _check_spread("conditions", y.std(axis=0))
            self.condition_loc.assign(y.mean(axis=0))
            self.condition_scale.assign(y.std(axis=0))
            if regress:
                if len(x) < self.condition_dim + 2 or len(y) != len(x):
                    raise ValueError(
                        f"`adapt` with `regress` needs as many conditions as points and at "
                        f"least k + 2 = {self.condition_dim + 2} of them. Received: "
                        f"{len(x)} points, {len(y)} conditions"
                    )
                standardized = (y - y.mean(axis=0)) / y.std(axis=0)  # centred: μ stays the mean
                weight = np.linalg.lstsq(standardized, x - mean, rcond=None)[0]
                self.condition_shift.assign(weight)
                x = x - standardized @ weight
                unexplained = x.std(axis=0) / deviation  # the residuals' share of it
                if np.any(unexplained <= 1e-9):
                    raise ValueError(
                        f"`data` column {int(np.argmin(unexplained))} is a linear function of "
                        "the conditions: its conditional density is degenerate; leave it out "
                        "or pass regress=False"
                    )
            else:
                self.condition_shift.assign(np.zeros([self.condition_dim, self.dim]))
        self.loc.assign(mean)
        if self.normalization == "whiten":
            covariance = np.cov(x, rowvar=False, bias=True).reshape(self.dim, self.dim)
            try:
                self.scale_tril.assign(np.linalg.cholesky(covariance) / spread)
            except np.linalg.LinAlgError as error:
                raise ValueError(
                    "`data` has a singular covariance (a column is a linear combination of "
                    "others): it cannot be whitened; use normalization='diagonal' or drop "
                    "the column"
                ) from error
        else:
            self.scale.assign(x.std(axis=0) / spread)

    @property
    def adapted(self):
        """Whether the affine map from the flow's coordinates to the data's is set (by
        :meth:`adapt` or a saved model's weights): False while it is the identity, or for a
        model without ``normalization``."""
        if not self.normalization:
            return False
        identity = [np.all(np.asarray(self.loc) == 0)]
        if self.normalization == "whiten":
            identity.append(np.array_equal(np.asarray(self.scale_tril), np.eye(self.dim)))
        else:
            identity.append(np.all(np.asarray(self.scale) == 1))
        if self.condition_dim:
            identity += [
                np.all(np.asarray(self.condition_loc) == 0),
                np.all(np.asarray(self.condition_scale) == 1),
                np.all(np.asarray(self.condition_shift) == 0),
            ]
        return not all(identity)

    @property
    def affine(self):
        """The TFP bijector x = μ + ỹ B + σ ⊙ x̃ (or μ + ỹ B + L x̃) from the flow's
        coordinates to the data's, or None without ``normalization``. A conditional model's
        takes ``conditional_shift={"conditional_input": ỹ}`` (:meth:`affine_kwargs`)."""
        if not self.normalization:
            return None
        if self.normalization == "whiten":
            scale = tfb.ScaleMatvecTriL(scale_tril=tf.convert_to_tensor(self.scale_tril))
        else:
            scale = tfb.Scale(tf.convert_to_tensor(self.scale))
        shift = CheckedShift(tf.convert_to_tensor(self.loc))
        if not self.condition_dim:
            return tfb.Chain([shift, scale])
        return tfb.Chain(
            [shift, ConditionalShift(tf.convert_to_tensor(self.condition_shift)), scale]
        )

    def affine_kwargs(self, standardized_condition):
        """The keyword arguments of :attr:`affine`'s calls for conditions ỹ [..., k] in the
        flow's coordinates ({} for an unconditional model)."""
        if not self.condition_dim:
            return {}
        return {"conditional_shift": {"conditional_input": standardized_condition}}

    def standardize(self, x, condition=None):
        """The flow's coordinates (x̃, ỹ) of points ``x`` [..., d] and conditions [..., k]
        given in the data's units (unchanged without ``normalization``)."""
        if not self.normalization:
            return x, condition
        condition = self.standardize_condition(condition)
        return self.affine.inverse(x, **self.affine_kwargs(condition)), condition

    def standardize_condition(self, condition):
        """ỹ = (y − μ_y) / σ_y of conditions [..., k] in the data's units (None stays None)."""
        if not self.normalization or condition is None:
            return condition
        return (condition - self.condition_loc) / self.condition_scale

    def load_own_variables(self, store):
        """Keras's loading of the model's own weights; a conditional model saved before B
        existed (its file holds one weight fewer) loads with B = 0, as it was trained."""
        if self.normalization and self.condition_dim:
            own = len(self._trainable_variables) + len(self._non_trainable_variables)
            if len(store.keys()) == own - 1:
                store = {key: store[key] for key in list(store.keys())}  # an H5 store
                store[str(own - 1)] = np.zeros([self.condition_dim, self.dim])
        super().load_own_variables(store)

    # ----------------------------------------------------------------------------- objective

    def objective(
        self, x, condition=None, *, num_steps=None, jit_compile=False, trace=DEFAULTS["trace"]
    ):
        """J and its terms on a batch ``x`` [n, d] (with conditions [n, k] for a conditional
        model), with the ``trace`` of :func:`ode.integrate`.

        Returns:
            (J, {"nll": mean C, name_k: mean R_k, ...}), scalars.
        """
        x = convert_points("x", x, dtype=self.precision, event_size=self.dim)
        condition = self.potential.check_condition(condition)
        standardized, condition = self.standardize(x, condition)
        state = ode.integrate(
            self.potential,
            standardized,
            num_steps=num_steps or self.num_steps,
            alpha_transport=self.alpha[0],
            running_costs=self._costs,
            jit_compile=jit_compile,
            trace=trace,
            condition=condition,
        )
        nll = negative_log_likelihood(state)
        if self.normalization:  # in the data's units: − log |det| of the affine map
            nll = nll - self.affine.inverse_log_det_jacobian(
                x, event_ndims=1, **self.affine_kwargs(condition)
            )
        terms = {"nll": tf.reduce_mean(nll)}
        loss = self.alpha[1] * terms["nll"]
        for k, (name, weight) in enumerate(zip(self.regularizers, self._cost_weights)):
            terms[name] = tf.reduce_mean(state.costs[:, k])
            loss = loss + weight * terms[name]
        return loss, terms

    def call(self, x, training=False):
        """The log-density with the training or evaluation step count, [n], of ``x`` [n, d]
        (unconditional) or of ``(x, condition)``."""
        x, condition = batch_points_and_conditions(x, self.condition_dim)
        return self.log_prob(x, condition, num_steps=self.num_steps if training else None)

    def train_step(self, data):
        x, condition = batch_points_and_conditions(data, self.condition_dim)
        variables = self.trainable_variables
        # Under tf.distribute each replica sees a shard and the optimizer sums the replicas'
        # gradients: dividing by their number makes the sum the gradient of the global mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            # The solve is traced into this step, which Keras compiles (with XLA when
            # `jit_compile`): no nested compiled function (see `ode.integrate`).
            loss, terms = self.objective(x, condition, trace=self.trace)
            scaled = loss / replicas
        # A non-finite loss (a NaN in the data, a diverging step) must not reach the weights:
        # its gradient is zeroed, and `fit` stops at once (StopOnNonFinite).
        finite = tf.math.is_finite(loss)
        gradients = [
            tf.where(finite, gradient, tf.zeros_like(gradient))
            for gradient in tape.gradient(scaled, variables)
        ]
        self.optimizer.apply(gradients, variables)
        return self._update_metrics(loss, terms)

    def test_step(self, data):
        x, condition = batch_points_and_conditions(data, self.condition_dim)
        loss, terms = self.objective(x, condition, num_steps=self.eval_num_steps)
        return self._update_metrics(loss, terms)

    def _update_metrics(self, loss, terms):
        self._trackers["loss"].update_state(loss)
        for name, value in terms.items():
            self._trackers[name].update_state(value)
        results = {name: tracker.result() for name, tracker in self._trackers.items()}
        if spans_workers():
            # Keras reduces step outputs across workers along axis 0: give them one.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    @property
    def metrics(self):
        return list(self._trackers.values())

    def compile(self, optimizer=None, *, jit_compile=None, **kwargs):
        """Keras ``compile``. With no ``optimizer``, the model follows the settings of
        :mod:`tfotflow.settings` in ``fit`` (:func:`tfotflow.training.fit_arrays_or_batches`):
        Adam with a cosine rate from the rule's (0.03 for d ≤ 16, else 0.01), decayed to 0
        over each ``fit``'s steps.

        Args:
            optimizer: a Keras optimizer, or None for the settings'. Defaults to None.
            jit_compile: compile the whole step, solve loop and adjoint loop included, with
                XLA. Defaults to :func:`tfotflow.hardware.use_xla` (d < 16) with the settings'
                optimizer, else False (TensorFlow's graph runtime, as fast on CPU once the
                trace's large products dominate).
            **kwargs: passed to Keras ``compile``.
        """
        self._follows_settings = optimizer is None
        if optimizer is None:
            schedule = training.Cosine(recipe_learning_rate(self.dim), decay_steps=1)
            optimizer = keras.optimizers.Adam(schedule)
            jit_compile = use_xla(self.dim) if jit_compile is None else jit_compile
        super().compile(optimizer=optimizer, jit_compile=bool(jit_compile), **kwargs)

    def fit(self, x=None, y=None, batch_size=None, epochs=None, *, warm_start=None, **kwargs):
        """Keras ``fit``, stopping at the first non-finite loss or metric with a
        :class:`tfotflow.callbacks.NonFiniteLossError` naming the term and the step.

        After ``compile()`` with no optimizer, ``fit`` runs the one trainer with the settings
        :func:`tfotflow.settings.recipe` gives for the data
        (:func:`tfotflow.training.fit_arrays_or_batches`): the flow-matching warm start on the
        first ``fit`` (its own History, ``history.warm_start``, and progress at ``verbose``;
        from d = 8 with 10,000 rows the settings' main phase), then maximum likelihood with
        the cosine over this ``fit``'s steps, the weight clip and the solver-error control. A
        second ``fit`` continues from the weights and Adam's moments with a new cosine over its
        own steps (a warm restart).

        Args:
            x: points [n, d], or a ``tf.data.Dataset`` of batches (of (points, conditions)
                for a conditional model).
            y: conditions [n, k], for a conditional model.
            batch_size: points per step. Defaults to the settings' after ``compile()``, else
                Keras's.
            epochs: passes over the data. Defaults to 1, or after ``compile()`` to the
                settings' likelihood steps (none where flow matching is their main phase).
            warm_start: flow-matching steps before maximum likelihood, after ``compile()``
                only. Defaults to the settings' on the first ``fit``, else none; 0 skips it.
            **kwargs: passed to Keras ``fit`` (a ``tf.data.Dataset`` of unknown size needs
                ``steps_per_epoch``).
        """
        if getattr(self, "_follows_settings", False):
            return training.fit_arrays_or_batches(
                self, x, y, batch_size=batch_size, epochs=epochs, warm_start=warm_start, **kwargs
            )
        if warm_start:
            raise ValueError(
                "`warm_start` steps follow the settings: compile() with no optimizer, or run "
                f"tfotflow.training.warm_start first. Received: warm_start={warm_start!r}"
            )
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(isinstance(callback, StopOnNonFinite) for callback in callbacks):
            callbacks.append(StopOnNonFinite())
        return super().fit(
            x, y, batch_size=batch_size, epochs=epochs or 1, callbacks=callbacks, **kwargs
        )

    def get_compile_config(self):
        return super().get_compile_config()

    def compile_from_config(self, config):
        """Recompiles a loaded model as it was compiled (optimizer state is in the file)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    # ----------------------------------------------------------------------------- density

    @property
    def flow(self):
        """The :class:`tfotflow.OTFlow` sharing this model's potential (evaluation steps), in
        the flow's standardized coordinates."""
        return OTFlow(self.potential, num_steps=self.eval_num_steps, alpha_transport=self.alpha[0])

    @property
    def bijector(self):
        """The normal to the data, in the data's units: ``Chain([Shift(μ), Scale(σ), flow])``
        (``ScaleMatvecTriL(L)`` when whitened; a conditional model's has its
        :class:`tfotflow.bijector.ConditionalShift` after the ``Shift``), or the flow alone
        without ``normalization``.
        Its calls take :meth:`bijector_kwargs`."""
        if not self.normalization:
            return self.flow
        return tfb.Chain([*self.affine.bijectors, self.flow])

    @property
    def distribution(self):
        """``TransformedDistribution(N(0, I), bijector)``, sharing the weights; its calls take
        ``bijector_kwargs=model.bijector_kwargs(condition, num_steps)``."""
        base = tfd.MultivariateNormalDiag(tf.zeros(self.dim, self.precision))
        return tfd.TransformedDistribution(base, self.bijector)

    def log_prob(self, x, condition=None, *, num_steps=None):
        """log p(x) (or log p(x | y)) for ``x`` [..., d] and a ``condition`` [..., k]
        broadcast against it, with ``num_steps`` (default ``eval_num_steps``); [...].

        Raises:
            TypeError: for ``x`` or ``condition`` not of floating-point numbers.
            ValueError: for a last axis other than d (or k), naming the argument and the
                received shape.
        """
        x = convert_points("x", x, dtype=self.precision, event_size=self.dim)
        return self.distribution.log_prob(
            x, bijector_kwargs=self.bijector_kwargs(condition, num_steps)
        )

    def sample(self, n, condition=None, *, seed=None, num_steps=None):
        """``n`` samples from the model (integrating back from the normal): [n, d], or
        [n, ..., d] for a ``condition`` of batch shape [...] ([k]: n samples of p(x | y))."""
        if not tf.is_tensor(n):
            check_int("n", n, minimum=1)
        kwargs = self.bijector_kwargs(condition, num_steps)
        if condition is not None:
            batch_shape = tf.shape(self.potential.check_condition(condition))[:-1]
            base = self.distribution.distribution.sample(
                tf.concat([[n], batch_shape], 0), seed=seed
            )
            return self.bijector.forward(base, **kwargs)
        return self.distribution.sample(n, seed=seed, bijector_kwargs=kwargs)

    def score_samples(self, data, conditions=None, *, batch_size=8192, num_steps=None):
        """log p(x) (or log p(x | y)) of every row, in the data's units, scored in batches of
        ``batch_size`` rows: scikit-learn's name for a density model's per-row scores.

        Args:
            data: points [n, d] (numpy or a tensor); or an iterable of batches — arrays, or
                (points, conditions) pairs for a conditional model — e.g. a generator or a
                ``tf.data.Dataset``, scored one batch at a time (constant memory).
            conditions: [n, k] conditions of ``data`` given as an array.
            batch_size: rows per ``log_prob`` call for an array. Defaults to 8192.
            num_steps: RK4 steps. Defaults to ``eval_num_steps``.

        Returns:
            [n] float64 numpy array.
        """
        return np.concatenate(
            list(self.iter_scores(data, conditions, batch_size=batch_size, num_steps=num_steps))
            or [np.zeros([0])]
        )

    def iter_scores(self, data, conditions=None, *, batch_size=8192, num_steps=None):
        """The log-densities of :meth:`score_samples`, one [rows] float64 array per batch, as
        they are computed."""
        check_int("batch_size", batch_size, minimum=1)
        if isinstance(data, (np.ndarray, tf.Tensor)) or hasattr(data, "__array__"):
            points = np.asarray(data)
            rows = np.asarray(conditions) if conditions is not None else None
            _check_rows("data", points, self.dim)  # once, before any batch is scored
            if rows is not None and self.condition_dim:
                _check_rows("conditions", rows, self.condition_dim)
            batches = (
                (points[i : i + batch_size], None if rows is None else rows[i : i + batch_size])
                for i in range(0, len(points), batch_size)
            )
        else:
            batches = (batch_points_and_conditions(batch, self.condition_dim) for batch in data)
        num_steps = num_steps or self.eval_num_steps
        for x, y in batches:
            x = np.asarray(x, self.precision)
            y = None if y is None else np.asarray(y, self.precision)
            yield np.asarray(self._scorer(num_steps, y is not None)(x, y), np.float64)

    def _scorer(self, num_steps, conditional):
        """:meth:`log_prob` with ``num_steps`` as one compiled function (of ``(x, y)``, y
        None for an unconditional call), traced once per step count and call kind: called
        eagerly, the probability machinery around the solve costs more than a solve of a
        thousand rows. The weights and the affine map are variables, read at every call."""
        cache = self.__dict__.setdefault("_scorers", {})  # not an attribute Keras tracks
        key = (num_steps, conditional)
        if key not in cache:
            cache[key] = tf.function(
                lambda x, y: self.log_prob(x, y, num_steps=num_steps), reduce_retracing=True
            )
        return cache[key]

    def bijector_kwargs(self, condition=None, num_steps=None):
        """The keyword arguments of :attr:`bijector`'s calls for a ``condition`` y [..., k] (in
        the data's units) and ``num_steps``: ``{"conditional_input": ỹ, "num_steps": …}``,
        nested under the flow's name when the bijector is a chain, whose conditional shift
        takes ỹ too (:meth:`affine_kwargs`)."""
        kwargs = {"num_steps": num_steps} if num_steps else {}
        condition = self.potential.check_condition(condition)
        if condition is not None:
            kwargs["conditional_input"] = self.standardize_condition(condition)
        if self.normalization:
            return {self.flow.name: kwargs, **self.affine_kwargs(kwargs.get("conditional_input"))}
        return kwargs

    def export(
        self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs
    ):
        """Keras ``Model.export``: writes a serving SavedModel with the ``log_prob``, ``sample``
        and ``serve`` endpoints and their signatures (see :mod:`tfotflow.serving`). It loads
        with ``tf.saved_model.load`` alone, without tfotflow, TensorFlow Probability or Keras.

        Args:
            filepath: the SavedModel's directory.
            format: "tf_saved_model", the one format whose graphs hold the ODE solve's loop.
                Defaults to "tf_saved_model".
            verbose: print where the artifact was written and its endpoints. Defaults to
                None (print, as Keras does for this format).
            input_signature: the points' ``tf.TensorSpec`` (and the conditions', for a
                conditional model). Defaults to None: [None, d] (and [None, k]).
            **kwargs: Keras's options of the other formats and backends; none applies here.

        Returns:
            The path, a ``pathlib.Path``.

        Raises:
            ValueError: for another ``format`` (naming it) or a bad ``input_signature``.
            TypeError: for options in ``kwargs``.
        """
        if format != "tf_saved_model":
            raise ValueError(
                "OTFlowModel.export writes format='tf_saved_model' only: the RK4 solve is a "
                "TensorFlow loop of run-time length, which the other formats do not carry. "
                f"Received: format={format!r}"
            )
        if kwargs:
            raise TypeError(
                "OTFlowModel.export with format='tf_saved_model' on the TensorFlow backend "
                f"takes no further options. Received: {', '.join(sorted(kwargs))}"
            )
        path = serving.export(self, filepath, input_signature=input_signature)
        if verbose is None or verbose:
            print(
                f"Saved artifact at '{path}'. The following endpoints are available: "
                "log_prob, sample, serve (= the model's call)"
            )
        return path

    # ----------------------------------------------------------------------------- config

    def get_config(self):
        return {
            "dim": self.dim,
            "width": self.potential.width,
            "num_layers": self.potential.num_layers,
            "rank": self.potential.rank,
            "time_features": self.potential.time_features,
            "alpha": list(self.alpha),
            "num_steps": self.num_steps,
            "eval_num_steps": self.eval_num_steps,
            "regularizers": self.regularizers,
            "dtype": self.precision,
            "condition_dim": self.condition_dim,
            "trace": self.trace,
            "normalization": self.normalization,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        """The model of ``get_config()``'s dict (one saved before ``normalization`` existed
        has none)."""
        return cls(**{"normalization": None, **config})


def _check_rows(name, array, width):
    """Checks a NumPy array of rows [..., ``width``] of floating-point numbers without
    converting it (:func:`tfotflow.validation.check_points`)."""
    check_points(
        name,
        floating=array.dtype.kind == "f",
        dtype_name=str(array.dtype),
        shape=list(array.shape),
        event_size=width,
    )


def _check_spread(name, std):
    constant = np.flatnonzero(~(std > 0))
    if constant.size:
        raise ValueError(
            f"`{name}` has a constant column ({int(constant[0])}): its density is degenerate; "
            "leave the column out"
        )


def negative_log_likelihood(state):
    """C = ½‖x(1)‖² + (d/2) log 2π − ℓ(1) per point, from a :class:`tfotflow.ode.FlowState`."""
    d = tf.cast(tf.shape(state.x)[-1], state.x.dtype)
    log_two_pi = tf.constant(1.8378770664093453, state.x.dtype)
    return 0.5 * tf.reduce_sum(tf.square(state.x), axis=-1) + 0.5 * d * log_two_pi - state.log_det
