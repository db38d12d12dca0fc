"""``OTFlow``: the OT-Flow continuous normalizing flow as a TensorFlow Probability bijector."""

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

from tfotflow import ode
from tfotflow.potential import Potential, flatten_batch
from tfotflow.validation import assert_finite, check_int, check_positive_float, convert_points

tfb = tfp.bijectors


class _LiveVariables:
    """A nest node whose leaves are, at each look, the ``tf.Variable``\\ s behind a Keras layer.

    ``tf.Module`` finds variables by flattening its attributes with ``tf.nest``; Keras 3
    variables are not ``tf.Variable`` instances, so they are invisible to it. This node flattens
    to the ``tf.Variable`` each Keras variable wraps, read when asked, so a bijector made before
    its potential is built still reports the weights once they exist.
    """

    def __init__(self, layer):
        self._layer = layer

    def __tf_flatten__(self):
        return None, tuple(variable.value for variable in self._layer.weights)

    @classmethod
    def __tf_unflatten__(cls, metadata, components):
        return components


class _CheckedEntry:
    """Checks the points at the public entries (``forward``, ``inverse`` and their
    log-determinants) before TensorFlow Probability converts them, so a wrong width, rank or
    dtype is named (:func:`tfotflow.validation.convert_points`) instead of failing inside an
    op. ``_entry_size`` is the event width (None: any), ``_entry_dtype`` the points' dtype."""

    def _entry(self, name, value):
        return convert_points(name, value, dtype=self._entry_dtype, event_size=self._entry_size)

    def forward(self, x, name="forward", **kwargs):
        return super().forward(self._entry("x", x), name=name, **kwargs)

    def inverse(self, y, name="inverse", **kwargs):
        return super().inverse(self._entry("y", y), name=name, **kwargs)

    def forward_log_det_jacobian(
        self, x, event_ndims=None, name="forward_log_det_jacobian", **kwargs
    ):
        return super().forward_log_det_jacobian(
            self._entry("x", x), event_ndims=event_ndims, name=name, **kwargs
        )

    def inverse_log_det_jacobian(
        self, y, event_ndims=None, name="inverse_log_det_jacobian", **kwargs
    ):
        return super().inverse_log_det_jacobian(
            self._entry("y", y), event_ndims=event_ndims, name=name, **kwargs
        )


class CheckedShift(_CheckedEntry, tfb.Shift):
    """``tfb.Shift`` by a [d] ``shift`` whose public entries check their points:
    [..., d] floating-point numbers. First in the inverse of an
    :class:`tfotflow.OTFlowModel`'s :attr:`~tfotflow.OTFlowModel.bijector`, it names a wrong
    input before any op sees it."""

    @property
    def _entry_size(self):
        return self.shift.shape[-1]

    @property
    def _entry_dtype(self):
        return self.dtype


class _VectorBijector(tfb.Bijector):
    """A TFP bijector of vectors (event rank 1) whose parameters are not batched by TFP."""

    def __init__(self, *, dtype, parameters, name, validate_args=False, **kwargs):
        super().__init__(
            forward_min_event_ndims=1,
            dtype=dtype,
            validate_args=validate_args,
            parameters=parameters,
            name=name,
            **kwargs,
        )

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}


class OTFlow(_CheckedEntry, _VectorBijector):
    """The OT-Flow map between data and a standard normal (Onken et al. 2021).

    The velocity is the gradient of a potential Φ, so paths are straight optimal-transport
    lines and few RK4 steps suffice; the log-determinant uses the exact Hessian trace.

    ```none
    dx/dt = −∇ₓΦ(x, t) / α_L,     dℓ/dt = −tr ∇²ₓΦ(x, t) / α_L
    inverse(y):  integrate y = x(0) over t: 0 → 1; returns x(1),   ildj = ℓ(1)
    forward(x):  integrate x = x(1) over t: 1 → 0; returns x(0),   fldj = ℓ accumulated
    ```

    A conditional potential (``condition_dim=k``) makes a conditional flow, p(x | y): every
    method takes the condition as ``conditional_input`` (TFP's name, passed through
    ``bijector_kwargs``), of shape [..., k], broadcast against the points' batch shape (one y
    for many points, or one per point). The cache is keyed on both, so ``log_prob`` still
    solves once.

    ``forward`` maps the base (normal) to the data, so
    ``tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(d)), OTFlow(potential))``
    has ``log_prob(y) = log N(x(1)) + ℓ(1)`` (one ODE solve: the point and its log-det are
    cached together) and ``sample`` integrates back from the normal. Sampling transports the
    points only, skipping the trace; ``forward_log_det_jacobian`` solves with it.

    Args:
        potential: the :class:`tfotflow.Potential` defining the flow.
        num_steps: RK4 steps over the unit time interval. Every method also takes
            ``num_steps=`` per call (e.g. through ``bijector_kwargs``), to train with few steps
            and evaluate with more; the step count is a run-time value of one compiled loop,
            so changing it never traces again. Defaults to 8.
        alpha_transport: α_L, the weight of the transport cost the potential was trained with.
            Defaults to 1.0.
        jit_compile: compile the ODE solve (and its adjoint) with XLA; otherwise it runs in
            TensorFlow's graph runtime. Defaults to False.
        validate_args: check at run time that inputs are finite. Defaults to False.
        name: the bijector's name. Defaults to "ot_flow".

    Raises:
        TypeError: if ``potential`` is not a :class:`tfotflow.Potential`.
        ValueError: for a non-positive ``num_steps`` or ``alpha_transport``; on a call, for a
            ``conditional_input`` that is missing (conditional potential), unexpected
            (unconditional) or of the wrong width, or not finite with ``validate_args``.

    Example:

    >>> import tensorflow as tf, tensorflow_probability as tfp
    >>> flow = OTFlow(Potential(width=8, dtype="float64"), num_steps=4)
    >>> normal = tfp.distributions.MultivariateNormalDiag(tf.zeros(2, tf.float64))
    >>> distribution = tfp.distributions.TransformedDistribution(normal, flow)
    >>> distribution.log_prob(tf.zeros([3, 2], tf.float64)).shape
    TensorShape([3])
    >>> distribution.sample(5, seed=1).shape
    TensorShape([5, 2])

    Conditional on y ∈ R¹:

    >>> flow = OTFlow(Potential(width=8, condition_dim=1, dtype="float64"), num_steps=4)
    >>> distribution = tfp.distributions.TransformedDistribution(normal, flow)
    >>> y = tf.constant([[0.5]], tf.float64)
    >>> distribution.sample(5, seed=1, bijector_kwargs={"conditional_input": y}).shape
    TensorShape([5, 2])
    >>> distribution.log_prob(tf.zeros([3, 2], tf.float64),
    ...                       bijector_kwargs={"conditional_input": [[0.5], [0.0], [1.0]]}).shape
    TensorShape([3])

    References:
        [1] Onken, Wu Fung, Li, Ruthotto. OT-Flow: Fast and Accurate Continuous Normalizing
            Flows via Optimal Transport. AAAI 2021. arXiv:2006.00104.
    """

    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse"
    )

    def __init__(
        self,
        potential,
        num_steps=8,
        alpha_transport=1.0,
        jit_compile=False,
        validate_args=False,
        name="ot_flow",
    ):
        parameters = dict(locals())
        if not isinstance(potential, Potential):
            raise TypeError(
                "`potential` must be a tfotflow.Potential. "
                f"Received: potential={potential!r} of type {type(potential).__name__}"
            )
        with tf.name_scope(name):  # the name stays as given (no graph suffix): chain kwargs key
            self._potential = potential
            self._num_steps = check_int("num_steps", num_steps, minimum=1)
            self._alpha_transport = check_positive_float("alpha_transport", alpha_transport)
            self._jit_compile = bool(jit_compile)
            self._potential_variables = _LiveVariables(potential)
            super().__init__(
                dtype=tf.as_dtype(potential.compute_dtype),
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @property
    def _entry_size(self):
        return self._potential.dim if self._potential.built else None

    @property
    def _entry_dtype(self):
        return self.dtype

    @property
    def potential(self):
        """The :class:`tfotflow.Potential` whose gradient drives the flow."""
        return self._potential

    @property
    def num_steps(self):
        """The default number of RK4 steps."""
        return self._num_steps

    @property
    def alpha_transport(self):
        """α_L, dividing the velocity."""
        return self._alpha_transport

    def _solve(self, points, *, reverse, num_steps, log_det=True, conditional_input=None):
        """Integrates points of shape [..., d] (conditions [..., k] broadcast against them);
        returns the end points [batch..., d] and the log-det [batch...]."""
        num_steps = self._num_steps if num_steps is None else num_steps
        name = "x" if reverse else "y"
        points = convert_points(name, points, dtype=self.dtype, event_size=self._potential.dim)
        points = assert_finite(name, points, validate_args=self.validate_args)
        if not self._potential.built:
            self._potential.build(points.shape)
        d = self._potential.dim
        condition = self._potential.check_condition(conditional_input, "conditional_input")
        if condition is not None:
            condition = assert_finite(
                "conditional_input", condition, validate_args=self.validate_args
            )
        rows, condition, batch_shape = flatten_batch(points, condition)
        state = ode.integrate(
            self._potential,
            rows,
            num_steps=num_steps,
            reverse=reverse,
            alpha_transport=self._alpha_transport,
            jit_compile=self._jit_compile,
            log_det=log_det,
            condition=condition,
        )
        return (
            tf.reshape(state.x, tf.concat([batch_shape, [d]], 0)),
            tf.reshape(state.log_det, batch_shape),
        )

    def _augmented_forward(self, x, num_steps=None, conditional_input=None):
        # Sampling needs the points only: skip the trace. A later log-det asks for a full solve.
        y, _ = self._solve(
            x,
            reverse=True,
            num_steps=num_steps,
            log_det=False,
            conditional_input=conditional_input,
        )
        return y, {}

    def _augmented_inverse(self, y, num_steps=None, conditional_input=None):
        x, ildj = self._solve(
            y, reverse=False, num_steps=num_steps, conditional_input=conditional_input
        )
        return x, {"ildj": ildj, "fldj": -ildj}

    def _forward(self, x, **kwargs):
        y, _ = self._augmented_forward(x, **kwargs)
        return y

    def _inverse(self, y, **kwargs):
        x, _ = self._augmented_inverse(y, **kwargs)
        return x

    def _forward_log_det_jacobian(self, x, **kwargs):
        cached = self._cache.forward_attributes(x, **kwargs)
        if "fldj" not in cached:  # forward solves skip the trace: solve with it now
            _, fldj = self._solve(
                x,
                reverse=True,
                num_steps=kwargs.get("num_steps"),
                conditional_input=kwargs.get("conditional_input"),
            )
            cached.update({"fldj": fldj, "ildj": -fldj})
        return cached["fldj"]

    def _inverse_log_det_jacobian(self, y, **kwargs):
        cached = self._cache.inverse_attributes(y, **kwargs)
        if "ildj" not in cached:
            _, attributes = self._augmented_inverse(y, **kwargs)
            cached.update(attributes)
        return cached["ildj"]


class ConditionalShift(_VectorBijector):
    """x ↦ x + ỹ B, a shift that is a linear function of the condition ỹ (TFP's
    ``conditional_input``, [..., k]), with B [k, d]: the mean of a linear-Gaussian fit of
    p(x | y) (:meth:`tfotflow.OTFlowModel.adapt`). Its Jacobian is the identity, so its
    log-determinant is 0.

    >>> shift = ConditionalShift(tf.constant([[1.0, 2.0]]))
    >>> shift.forward(tf.zeros([2, 2]), conditional_input=[[1.0], [3.0]]).numpy()
    array([[1., 2.],
           [3., 6.]], dtype=float32)

    Args:
        weight: B, [k, d].
        validate_args: TFP's flag. Defaults to False.
        name: the bijector's name, which keys its ``conditional_input`` in a chain. Defaults
            to "conditional_shift".
    """

    def __init__(self, weight, validate_args=False, name="conditional_shift"):
        parameters = dict(locals())
        with tf.name_scope(name):  # the name stays as given (no graph suffix): chain kwargs key
            self._weight = tf.convert_to_tensor(weight)
            super().__init__(
                is_constant_jacobian=True,
                dtype=self._weight.dtype,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    def _shift(self, conditional_input):
        if conditional_input is None:
            raise ValueError(
                "`conditional_input` is required by ConditionalShift: the conditions [..., k]"
            )
        condition = tf.convert_to_tensor(conditional_input, self._weight.dtype)
        return tf.linalg.matvec(self._weight, condition, transpose_a=True)

    def _forward(self, x, conditional_input=None):
        return x + self._shift(conditional_input)

    def _inverse(self, y, conditional_input=None):
        return y - self._shift(conditional_input)

    def _forward_log_det_jacobian(self, x, conditional_input=None):
        return tf.zeros([], self._weight.dtype)
