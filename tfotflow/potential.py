"""The OT-Flow potential Φ(x, t) as a Keras layer, with its gradient and exact Hessian trace."""

import collections

import numpy as np
import tensorflow as tf

from tfotflow import hardware, serialization
from tfotflow._keras import keras
from tfotflow.settings import DEFAULTS, MINIMA
from tfotflow.validation import check_int, convert_points


def space_time(x, t, condition=None):
    """s = [x, y, t] of shape [n, d+k+1], for points ``x`` [n, d], conditions ``y`` [n, k]
    (None: k = 0) and a time ``t``: a scalar or one per point, [n, 1]."""
    time = tf.broadcast_to(tf.cast(t, x.dtype), tf.shape(x[:, :1]))
    return tf.concat([x, time] if condition is None else [x, condition, time], axis=-1)


def flatten_batch(points, condition=None):
    """Points [..., d] and conditions [..., k] (or None) broadcast to one batch shape and
    flattened to rows: (points [n, d], conditions [n, k] or None, the batch shape).

    One condition serves many points ([k] against [n, d]) and one point many conditions."""
    batch_shape = tf.shape(points)[:-1]
    d = points.shape[-1]
    if condition is not None:
        batch_shape = tf.broadcast_dynamic_shape(batch_shape, tf.shape(condition)[:-1])
        k = condition.shape[-1]
        condition = tf.reshape(
            tf.broadcast_to(condition, tf.concat([batch_shape, [k]], 0)), [-1, k]
        )
    points = tf.reshape(tf.broadcast_to(points, tf.concat([batch_shape, [d]], 0)), [-1, d])
    return points, condition, batch_shape


def log_cosh(a):
    """σ(a) = log(2 cosh a) = |a| + log(1 + exp(−2|a|)), the antiderivative of tanh, stably."""
    magnitude = tf.abs(a)
    return magnitude + tf.math.softplus(-2.0 * magnitude)


def jacobian_trace_terms(h, K0_x, tanh, curvature, kernels, chunk_elements=None):
    """h Σ_{i=1..M} t_i, the residual layers' part of tr ∇²ₓΦ, by the Jacobian recurrence.

    ```none
    J_0ᵀ = K0_x diag σ'(a_0)                        [n, d, m]
    t_i = Σ_j c_{i,j} ‖(J_{i−1}ᵀ K_i)_{:, j}‖²,     J_iᵀ = J_{i−1}ᵀ + h (J_{i−1}ᵀ K_i) diag σ'(a_i)
    ```

    Args:
        h: the ResNet step.
        K0_x: the x rows of the opening kernel, [d, m].
        tanh: σ'(a_i) for i = 0..M−1, each [n, m].
        curvature: c_i = σ''(a_i) ⊙ z_{i+1} for i = 1..M, each [n, m].
        kernels: K_1..K_M, each [m, m].
        chunk_elements: the Jacobian elements per batch chunk (see
            :func:`tfotflow.hardware.trace_chunk_elements`), or None for one pass.

    Returns:
        [n]. One [n·d, m] × [m, m] product per layer: ≈ 2·n·M·m²·d flops in all, done over
        batch chunks of about ``chunk_elements`` Jacobian elements when n is static.
    """
    d, m = K0_x.shape
    n = tanh[0].shape[0]
    chunks = 1 if n is None or chunk_elements is None else min(n, -(-n * d * m // chunk_elements))
    if chunks == 1:
        return _jacobian_trace_terms(h, K0_x, tanh, curvature, kernels)
    sizes = hardware.even_sizes(n, chunks)
    split = [tf.split(v, sizes) for v in (*tanh, *curvature)]
    M = len(tanh)
    return tf.concat(
        [_jacobian_trace_terms(h, K0_x, part[:M], part[M:], kernels) for part in zip(*split)],
        axis=0,
    )


def _jacobian_trace_terms(h, K0_x, tanh, curvature, kernels):
    """:func:`jacobian_trace_terms` on one batch chunk."""
    d, m = K0_x.shape
    J = K0_x[tf.newaxis] * tanh[0][:, tf.newaxis, :]
    total = 0.0
    for i, (c_i, K_i) in enumerate(zip(curvature, kernels), start=1):
        KJ = tf.reshape(tf.reshape(J, [-1, m]) @ K_i, [-1, d, m])
        total = total + h * tf.reduce_sum(c_i * tf.reduce_sum(tf.square(KJ), axis=1), axis=-1)
        if i < len(kernels):  # the last Jacobian is not needed
            J = J + h * tanh[i][:, tf.newaxis, :] * KJ
    return total


PotentialWeights = collections.namedtuple(
    "PotentialWeights",
    ["A", "b", "c", "w", "kernels", "biases", "opening_norms", "quadratic_trace"],
)
PotentialWeights.__doc__ = """The weights of a :class:`Potential` read as tensors.

Attributes:
    A: [r, d+1]. b: [d+1]. c: []. w: [m].
    kernels: (K_0 [d+1, m], K_1 [m, m], …). biases: (b_0 [m], b_1 [m], …).
    opening_norms: ‖(K_0)_{1:d, j}‖² for each unit j, [m].
    quadratic_trace: tr((AᵀA)_{1:d, 1:d}) = ‖A_{:, 1:d}‖²_F, [].
"""


@serialization.register
class Potential(keras.layers.Layer):
    """The OT-Flow potential Φ(x, t): a ResNet plus a low-rank quadratic, with closed-form
    gradient and exact trace of the Hessian (Onken et al. 2021, eqs. 10–15).

    ```none
    s = (x, t) ∈ R^{d+1},   σ(a) = log(2 cosh a),   h = 1 / (num_layers − 1)
    u_0 = σ(s K_0 + b_0)                            K_0: [d+1, width]
    u_i = u_{i−1} + h σ(u_{i−1} K_i + b_i)          K_i: [width, width], i = 1..num_layers−1
    Φ(s) = u_M · w + ½ sᵀ(AᵀA)s + b · s + c          A: [min(rank, d+1), d+1]
    ```

    With ``condition_dim=k`` the potential is conditional, Φ(x, y, t) (Wang et al. 2023,
    COT-Flow): s = (x, y, t) ∈ R^{d+k+1} enters the opening layer and the quadratic, and the
    velocity −∇ₓΦ and the trace tr ∇²ₓΦ take the x-block only (y enters the pre-activations,
    never the Jacobian recurrence), so the trace formulas below are unchanged. With k = 0
    this is the unconditional potential.

    With ``time_features=F`` the network reads the time through F Fourier pairs as well,
    ŝ = (x, y, t, cos(πt), …, cos(Fπt), sin(πt), …, sin(Fπt)) in place of s (the opening
    kernel, A and b grow by 2F rows). The features are functions of t alone, so ∇ₓΦ and the
    trace are those of ŝ's x-block, and ∂ₜΦ gathers the features' parts by the chain rule,
    ∂ₜΦ = ∂Φ/∂ŝ_t + Σ_j jπ (cos(jπt) ∂Φ/∂ŝ_{sin j} − sin(jπt) ∂Φ/∂ŝ_{cos j}). The lowest
    frequencies keep the field smooth in t, which the few-step RK4 solve needs. F = 0 is the
    paper's potential.

    The gradient ∇ₛΦ comes from the backward recurrence and tr ∇²ₓΦ from the forward Jacobian
    recurrence of the paper: no automatic differentiation runs in :meth:`gradient` or
    :meth:`gradient_and_trace`, and both cost one pass over the network (the trace
    ≈ 2·n·(num_layers−1)·width²·d flops for n points). Kernels are stored input-major, as in
    ``keras.layers.Dense``: points are rows and every product is ``points @ kernel``.

    Args:
        width: the network width m. Defaults to 32.
        num_layers: the number of ResNet layers, opening layer included (the reference's
            ``nTh``); at least 2. Defaults to 2.
        rank: the rank r of the quadratic term, capped at d + k + 1 + 2F. Defaults to 10.
        condition_dim: k, the width of the condition y every call must pass (0: none).
            Defaults to 0.
        time_features: F, the Fourier pairs of t the network reads besides t (0: none).
            Defaults to 0.
        **kwargs: passed to ``keras.layers.Layer`` (``dtype="float64"`` for double precision,
            ``name``).

    Raises:
        TypeError, ValueError: for a non-integer or too small ``width``, ``num_layers``,
            ``rank``, ``condition_dim``, ``time_features``.

    Example:

    >>> import numpy as np
    >>> potential = Potential(width=8, num_layers=2, dtype="float64")
    >>> x = np.zeros([4, 2])
    >>> potential(x, t=0.5).shape
    TensorShape([4])
    >>> gradient, trace = potential.gradient_and_trace(x, 0.5)
    >>> gradient.shape, trace.shape
    (TensorShape([4, 3]), TensorShape([4]))
    """

    # The smallest sizes: one unit, a ResNet with one step, a rank-one quadratic.
    MINIMA = {key: MINIMA[key] for key in ("width", "num_layers", "rank")}

    def __init__(
        self,
        width=DEFAULTS["width"],
        num_layers=DEFAULTS["num_layers"],
        rank=DEFAULTS["rank"],
        condition_dim=0,
        time_features=DEFAULTS["time_features"],
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.width = check_int("width", width, minimum=self.MINIMA["width"])
        self.num_layers = check_int("num_layers", num_layers, minimum=self.MINIMA["num_layers"])
        self.rank = check_int("rank", rank, minimum=self.MINIMA["rank"])
        self.condition_dim = check_int("condition_dim", condition_dim, minimum=0)
        self.time_features = check_int("time_features", time_features, minimum=0)
        self.dim = None

    @property
    def step_size(self):
        """h = 1 / (num_layers − 1), the ResNet step."""
        return 1.0 / (self.num_layers - 1)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(
                "The last axis of the points must have a known size d. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.dim = int(dim)
        inputs = self.dim + self.condition_dim + 1 + 2 * self.time_features  # ŝ
        m, rank = self.width, min(self.rank, inputs)
        self.A = self.add_weight(shape=(rank, inputs), initializer="glorot_uniform", name="A")
        self.b = self.add_weight(shape=(inputs,), initializer="zeros", name="b")
        # c shifts Φ but moves no point and no density: kept for the reference's checkpoints,
        # not trained (it would only ever receive a zero gradient).
        self.c = self.add_weight(shape=(), initializer="zeros", trainable=False, name="c")
        self.w = self.add_weight(shape=(m,), initializer="ones", name="w")
        self.kernels, self.biases = [], []
        for i in range(self.num_layers):
            fan_in = inputs if i == 0 else m
            self.kernels.append(
                self.add_weight(shape=(fan_in, m), initializer="glorot_uniform", name=f"K_{i}")
            )
            self.biases.append(self.add_weight(shape=(m,), initializer="zeros", name=f"b_{i}"))

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "num_layers": self.num_layers,
            "rank": self.rank,
            "condition_dim": self.condition_dim,
            "time_features": self.time_features,
        }

    def get_build_config(self):
        return {"dim": self.dim} if self.built else {}

    def build_from_config(self, config):
        if config.get("dim") is not None:
            self.build((None, config["dim"]))

    # ----------------------------------------------------------------------------- evaluation

    def call(self, x, t=0.0, condition=None):
        """Φ(x, y, t) for points ``x`` [..., d], conditions ``y`` [..., k] (None when k = 0)
        and a time ``t`` (a scalar); shape [...]."""
        s, restore = self._space_time(x, t, condition)
        s = self.featured(s)
        W = self.read_weights()
        u = log_cosh(s @ W.kernels[0] + W.biases[0])
        for K, bias in zip(W.kernels[1:], W.biases[1:]):
            u = u + self.step_size * log_cosh(u @ K + bias)
        quadratic = 0.5 * tf.reduce_sum(tf.square(s @ tf.transpose(W.A)), axis=-1)
        phi = tf.linalg.matvec(u, W.w) + quadratic + tf.linalg.matvec(s, W.b) + W.c
        return restore(phi, [])

    def gradient(self, x, t=0.0, condition=None):
        """(∇ₓΦ, ∂ₜΦ) by the backward recurrence; shapes [..., d] and [...]."""
        s, restore = self._space_time(x, t, condition)
        grad = self.space_time_gradient(s)
        return restore(grad[:, : self.dim], [self.dim]), restore(grad[:, -1], [])

    def gradient_and_trace(self, x, t=0.0, condition=None):
        """(∇ₛΦ, tr ∇²ₓΦ): the gradient in s = (x, y, t) [..., d+k+1] and the exact trace of
        the Hessian's x-block [...], from one forward, one backward and one Jacobian pass.

        ```none
        t_0 = Σ_j [σ''(a_0) ⊙ z_1]_j ‖(K_0)_{1:d, j}‖²,     J_0 = (K_0)_{1:d,:} diag σ'(a_0)
        t_i = Σ_j [σ''(a_i) ⊙ z_{i+1}]_j ‖(J_{i−1} K_i)_{:, j}‖²
        J_i = J_{i−1} + h (J_{i−1} K_i) diag σ'(a_i)
        tr ∇²ₓΦ = t_0 + h Σ_i t_i + tr((AᵀA)_{1:d, 1:d})
        ```

        The Jacobians are kept transposed, J_iᵀ = ∂u_i/∂x as [n, d, m], so J K_i is one
        [n·d, m] × [m, m] matrix product.
        """
        s, restore = self._space_time(x, t, condition)
        grad, trace = self.space_time_gradient_and_trace(s)
        return restore(grad, [self.dim + self.condition_dim + 1]), restore(trace, [])

    def read_weights(self):
        """The current weights as tensors, read once (an ODE solve reads them once per solve).

        Returns:
            :class:`PotentialWeights`, with the x-block constants of the trace precomputed.
        """
        d = self.dim
        A = tf.convert_to_tensor(self.A)
        kernels = tuple(tf.convert_to_tensor(K) for K in self.kernels)
        return PotentialWeights(
            A=A,
            b=tf.convert_to_tensor(self.b),
            c=tf.convert_to_tensor(self.c),
            w=tf.convert_to_tensor(self.w),
            kernels=kernels,
            biases=tuple(tf.convert_to_tensor(bias) for bias in self.biases),
            opening_norms=tf.reduce_sum(tf.square(kernels[0][:d]), axis=0),
            quadratic_trace=tf.reduce_sum(tf.square(A[:, :d])),
        )

    def space_time_gradient(self, s, weights=None):
        """∇ₛΦ [n, d+k+1] on space-time points ``s`` [n, d+k+1], without the trace (cheap)."""
        W = self.read_weights() if weights is None else weights
        featured = self.featured(s)
        tanh = [tf.tanh(a) for a in self._pre_activations(W, featured)]
        return self._fold(self._backward(W, featured, tanh)[0], featured)

    def space_time_gradient_and_trace(self, s, weights=None):
        """:meth:`gradient_and_trace` on space-time points ``s = [x, y, t]``, [n, d+k+1].

        Args:
            s: a [n, d+k+1] tensor of the layer's dtype (no conversion or checks: the hot path).
            weights: :class:`PotentialWeights` from :meth:`read_weights`. Defaults to reading
                them now.
        """
        W = self.read_weights() if weights is None else weights
        d, h = self.dim, self.step_size
        featured = self.featured(s)
        tanh = [tf.tanh(a) for a in self._pre_activations(W, featured)]  # σ'(a_i), each [n, m]
        grad, z = self._backward(W, featured, tanh)
        # σ''(a_i) ⊙ z_{i+1}: the weight of each unit's squared Jacobian column in t_i.
        curvature = [(1.0 - tf.square(tanh_i)) * z_i for tanh_i, z_i in zip(tanh, z)]
        chunk_elements = hardware.trace_chunk_elements(s.dtype.size)
        trace = tf.linalg.matvec(curvature[0], W.opening_norms) + jacobian_trace_terms(
            h, W.kernels[0][:d], tanh[:-1], curvature[1:], W.kernels[1:], chunk_elements
        )
        return self._fold(grad, featured), trace + W.quadratic_trace  # tr(A_xᵀA_x) = ‖A_x‖²_F

    def featured(self, s):
        """ŝ = (s, cos(jπt), sin(jπt) for j = 1..F) [n, d+k+1+2F] of s = (x, y, t); s itself
        when F = 0."""
        if not self.time_features:
            return s
        t = s[:, -1:]
        frequencies = self._frequencies(s.dtype)
        return tf.concat([s, tf.cos(t * frequencies), tf.sin(t * frequencies)], axis=-1)

    def _frequencies(self, dtype):
        """jπ for j = 1..F, [F]."""
        return np.pi * tf.range(1, self.time_features + 1, dtype=dtype)

    def _fold(self, grad, featured):
        """∇ₛΦ [n, d+k+1] from ∇_ŝΦ [n, d+k+1+2F] at ŝ = ``featured``: the features' parts
        of ∂ₜΦ gathered onto t by the chain rule (the features' cosines and sines read from
        ŝ, not computed again)."""
        if not self.time_features:
            return grad
        inputs, features = self.dim + self.condition_dim + 1, self.time_features
        frequencies = self._frequencies(featured.dtype)
        cosine = featured[:, inputs : inputs + features]
        sine = featured[:, inputs + features :]
        by_cosine = grad[:, inputs : inputs + features] * (-frequencies * sine)
        by_sine = grad[:, inputs + features :] * (frequencies * cosine)
        time = grad[:, inputs - 1 : inputs] + tf.reduce_sum(
            by_cosine + by_sine, axis=-1, keepdims=True
        )
        return tf.concat([grad[:, : inputs - 1], time], axis=-1)

    # ----------------------------------------------------------------------------- recurrences

    def _pre_activations(self, W, s):
        """a_0 = s K_0 + b_0 and a_i = u_{i−1} K_i + b_i for i = 1..M, each [n, m]."""
        a = s @ W.kernels[0] + W.biases[0]
        activations = [a]
        u = log_cosh(a)
        for i in range(1, self.num_layers):
            a = u @ W.kernels[i] + W.biases[i]
            activations.append(a)
            if i + 1 < self.num_layers:  # u_M feeds only Φ itself
                u = u + self.step_size * log_cosh(a)
        return activations

    def _backward(self, W, s, tanh):
        """∇ₛΦ [n, d+1] and the adjoints [z_1, …, z_{M+1}] of the backward recurrence.

        ```none
        z_{M+1} = w,   z_i = z_{i+1} + h (σ'(a_i) ⊙ z_{i+1}) K_iᵀ,
        ∇ₛΦ = (σ'(a_0) ⊙ z_1) K_0ᵀ + s AᵀA + b
        ```

        ``tanh`` holds σ'(a_i) = tanh(a_i) for i = 0..M; z_{M+1} = w is returned as a [m] vector.
        """
        z = [W.w]
        for i in range(self.num_layers - 1, 0, -1):
            z.insert(0, z[0] + self.step_size * (tanh[i] * z[0]) @ tf.transpose(W.kernels[i]))
        network = (tanh[0] * z[0]) @ tf.transpose(W.kernels[0])
        quadratic = (s @ tf.transpose(W.A)) @ W.A
        return network + quadratic + W.b, z

    def _space_time(self, x, t, condition=None):
        """s = [x, y, t] as [n, d+k+1], and a function restoring the batch axes of ``x`` and
        ``condition`` broadcast together."""
        x = convert_points("x", x, dtype=self.compute_dtype, event_size=self.dim)
        if not self.built:
            self.build(x.shape)
        x, condition, batch_shape = flatten_batch(x, self.check_condition(condition))
        s = space_time(x, tf.convert_to_tensor(t, dtype_hint=x.dtype), condition)

        def restore(value, event_shape):
            return tf.reshape(value, tf.concat([batch_shape, event_shape], axis=0))

        return s, restore

    def check_condition(self, condition, name="condition"):
        """``condition`` as a tensor [..., k] of the layer's dtype; None when k = 0.

        Raises:
            ValueError: naming ``name``, for a missing condition of a conditional potential, a
                condition given to an unconditional one, or a last axis other than k.
        """
        if self.condition_dim == 0:
            if condition is not None:
                raise ValueError(
                    f"`{name}` was given, but this potential is unconditional "
                    "(condition_dim=0): pass no condition, or build the model with "
                    f"condition_dim=k. Received: {name} of shape {np.shape(condition)}"
                )
            return None
        if condition is None:
            raise ValueError(
                f"`{name}` is required: this potential is conditional on y of width "
                f"condition_dim={self.condition_dim}. Received: None"
            )
        return convert_points(
            name, condition, dtype=self.compute_dtype, event_size=self.condition_dim
        )

    # ----------------------------------------------------------------------------- interop

    @classmethod
    def from_state_dict(cls, state_dict, *, dtype="float64", name=None):
        """Builds the potential stored in a state dict of the reference PyTorch OT-Flow code.

        The reference's ``Phi`` module names its parameters ``A`` [r, d+1], ``c.weight``
        [1, d+1], ``c.bias`` [1], ``w.weight`` [1, m], ``N.layers.{i}.weight`` (PyTorch's
        [out, in]) and ``N.layers.{i}.bias`` [m]. d, width, num_layers and rank are read from the
        shapes.

        Args:
            state_dict: a mapping from those names to numpy arrays (or anything
                ``np.asarray`` accepts, e.g. CPU torch tensors).
            dtype: the layer's dtype. Defaults to "float64".
            name: the layer's name. Defaults to Keras' automatic name.

        Returns:
            A built :class:`Potential` computing the same Φ.

        Raises:
            KeyError: if a required name is missing (the message lists what was found).
            ValueError: if the shapes do not fit together.
        """
        arrays = {key: np.asarray(value) for key, value in state_dict.items()}
        required = ["A", "c.weight", "c.bias", "w.weight", "N.layers.0.weight", "N.layers.0.bias"]
        missing = [key for key in required if key not in arrays]
        if missing:
            raise KeyError(
                f"`state_dict` lacks {missing} of the reference Phi's parameters. "
                f"Received keys: {sorted(arrays)}"
            )
        layers = sorted(
            int(key.split(".")[2])
            for key in arrays
            if key.startswith("N.layers.") and key.endswith(".weight")
        )
        num_layers = len(layers)
        if layers != list(range(num_layers)):
            missing = sorted(set(range(max(layers) + 1)) - set(layers))
            raise KeyError(
                f"`state_dict` has network layers {layers} but lacks "
                f"{[f'N.layers.{i}.weight' for i in missing]}: the layers must be numbered "
                "0, 1, … without gaps"
            )
        if arrays["A"].ndim != 2:
            raise ValueError(
                "`state_dict['A']` must be a matrix [rank, d+1]. "
                f"Received: shape {arrays['A'].shape}"
            )
        rank, dim_plus_one = arrays["A"].shape
        width = arrays["w.weight"].shape[-1]
        expected = {
            "c.weight": (1, dim_plus_one),
            "c.bias": (1,),
            "w.weight": (1, width),
            **{f"N.layers.{i}.bias": (width,) for i in range(num_layers)},
            "N.layers.0.weight": (width, dim_plus_one),
            **{f"N.layers.{i}.weight": (width, width) for i in range(1, num_layers)},
        }
        for key, shape in expected.items():
            if key not in arrays or arrays[key].shape != shape:
                received = arrays[key].shape if key in arrays else "missing"
                raise ValueError(
                    f"`state_dict[{key!r}]` must have shape {shape} for d={dim_plus_one - 1}, "
                    f"width={width}. Received: {received}"
                )
        if num_layers < 2:
            raise ValueError(
                "`state_dict` must hold at least two network layers (N.layers.0, N.layers.1). "
                f"Received: num_layers={num_layers}"
            )
        potential = cls(width=width, num_layers=num_layers, rank=rank, dtype=dtype, name=name)
        potential.build((None, dim_plus_one - 1))
        potential.A.assign(arrays["A"])
        potential.b.assign(arrays["c.weight"][0])
        potential.c.assign(arrays["c.bias"][0])
        potential.w.assign(arrays["w.weight"][0])
        for i in range(num_layers):
            potential.kernels[i].assign(arrays[f"N.layers.{i}.weight"].T)
            potential.biases[i].assign(arrays[f"N.layers.{i}.bias"])
        return potential
