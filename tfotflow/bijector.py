"""``OTFlow``: the OT-Flow continuous normalizing flow as a TensorFlow Probability bijector."""

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

from tfotflow import ode
from tfotflow.potential import Potential
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


class OTFlow(tfb.Bijector):
    """The OT-Flow map between data and a standard normal (Onken et al. 2021).

    The velocity is the gradient of a potential Φ, so paths are straight optimal-transport
    lines and few RK4 steps suffice; the log-determinant uses the exact Hessian trace.

    ```none
    dx/dt = −∇ₓΦ(x, t) / α_L,     dℓ/dt = −tr ∇²ₓΦ(x, t) / α_L
    inverse(y):  integrate y = x(0) over t: 0 → 1; returns x(1),   ildj = ℓ(1)
    forward(x):  integrate x = x(1) over t: 1 → 0; returns x(0),   fldj = ℓ accumulated
    ```

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
        ValueError: for a non-positive ``num_steps`` or ``alpha_transport``.

    Example:

    >>> import tensorflow as tf, tensorflow_probability as tfp
    >>> flow = OTFlow(Potential(width=8, dtype="float64"), num_steps=4)
    >>> normal = tfp.distributions.MultivariateNormalDiag(tf.zeros(2, tf.float64))
    >>> distribution = tfp.distributions.TransformedDistribution(normal, flow)
    >>> distribution.log_prob(tf.zeros([3, 2], tf.float64)).shape
    TensorShape([3])
    >>> distribution.sample(5, seed=1).shape
    TensorShape([5, 2])

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
        with tf.name_scope(name) as name:
            self._potential = potential
            self._num_steps = check_int("num_steps", num_steps, minimum=1)
            self._alpha_transport = check_positive_float("alpha_transport", alpha_transport)
            self._jit_compile = bool(jit_compile)
            self._potential_variables = _LiveVariables(potential)
            super().__init__(
                forward_min_event_ndims=1,
                dtype=tf.as_dtype(potential.compute_dtype),
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

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

    def _solve(self, points, *, reverse, num_steps, log_det=True):
        """Integrates points of shape [..., d]; returns the end points and the log-det [...]."""
        num_steps = self._num_steps if num_steps is None else num_steps
        event_size = self._potential.dim
        points = convert_points(
            "x" if reverse else "y", points, dtype=self.dtype, event_size=event_size
        )
        points = assert_finite("x" if reverse else "y", points, validate_args=self.validate_args)
        if not self._potential.built:
            self._potential.build(points.shape)
        batch_shape = tf.shape(points)[:-1]
        flat = tf.reshape(points, [-1, self._potential.dim])
        state = ode.integrate(
            self._potential,
            flat,
            num_steps=num_steps,
            reverse=reverse,
            alpha_transport=self._alpha_transport,
            jit_compile=self._jit_compile,
            log_det=log_det,
        )
        return (
            tf.reshape(state.x, tf.shape(points)),
            tf.reshape(state.log_det, batch_shape),
        )

    def _augmented_forward(self, x, num_steps=None):
        # Sampling needs the points only: skip the trace. A later log-det asks for a full solve.
        y, _ = self._solve(x, reverse=True, num_steps=num_steps, log_det=False)
        return y, {}

    def _augmented_inverse(self, y, num_steps=None):
        x, ildj = self._solve(y, reverse=False, num_steps=num_steps)
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
            _, fldj = self._solve(x, reverse=True, num_steps=kwargs.get("num_steps"))
            cached.update({"fldj": fldj, "ildj": -fldj})
        return cached["fldj"]

    def _inverse_log_det_jacobian(self, y, **kwargs):
        cached = self._cache.inverse_attributes(y, **kwargs)
        if "ildj" not in cached:
            _, attributes = self._augmented_inverse(y, **kwargs)
            cached.update(attributes)
        return cached["ildj"]
