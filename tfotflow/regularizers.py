"""Running costs integrated along the flow: the OT-Flow regularizers and the fields they read.

A regularizer is a function ``cost(fields) -> [n]`` giving the rate dR/dt of a running cost at
one point of the trajectory. It receives :class:`FlowFields`, everything the dynamics already
computed, so the common regularizers cost no extra network evaluation. Its integral over
t ∈ [0, 1] becomes one extra column of the ODE state, and the model adds
``weight · mean(R(1))`` to the objective.

Regularizers are plugins of the entry-point group ``tfotflow.regularizers``; the built-ins below
are declared there by tfotflow's own ``pyproject.toml``. Built-ins (Onken et al. 2021, eq. 8
and §3; Finlay et al. 2020):

```none
transport:      dL/dt = ½ ‖v‖²                              v = −∇ₓΦ / α_L
hjb:            dR/dt = | ∂ₜΦ − α_L · ½ ‖v‖² |
kinetic_jacobian: dK/dt = ‖v‖² + ‖∇ₓv‖²_F                 ∇ₓv = −∇²ₓΦ / α_L (RNODE)
```
"""

import collections

import tensorflow as tf

FlowFields = collections.namedtuple(
    "FlowFields", ["x", "t", "gradient", "trace", "velocity", "alpha_transport", "potential"]
)
FlowFields.__doc__ = """What the OT-Flow dynamics computed at one RK4 stage.

Attributes:
    x: points, [n, d].
    t: time, a scalar tensor.
    gradient: ∇ₛΦ = [∇ₓΦ, ∂ₜΦ], [n, d+1].
    trace: tr ∇²ₓΦ, [n].
    velocity: v = dx/dt = −∇ₓΦ / α_L, [n, d].
    alpha_transport: α_L, a Python float.
    potential: the :class:`tfotflow.Potential`, for regularizers that need more of it.
"""


def transport(fields):
    """½ ‖v‖²: the kinetic energy, whose integral L is the transport cost (paper eq. 8)."""
    return 0.5 * tf.reduce_sum(tf.square(fields.velocity), axis=-1)


def hjb(fields):
    """| ∂ₜΦ − α_L · ½ ‖v‖² |: the residual of the Hamilton–Jacobi–Bellman equation (eq. 9)."""
    kinetic = 0.5 * tf.reduce_sum(tf.square(fields.velocity), axis=-1)
    return tf.abs(fields.gradient[:, -1] - fields.alpha_transport * kinetic)


def kinetic_jacobian(fields, *, exact_max_dim=10):
    """‖v‖² + ‖∇ₓv‖²_F: RNODE's kinetic energy plus Jacobian Frobenius norm (Finlay et al. 2020).

    ∇ₓv = −∇²ₓΦ / α_L. For d ≤ ``exact_max_dim`` the Hessian is formed exactly (d backward
    passes through the closed-form gradient); above, one Gaussian probe ε gives the unbiased
    estimate ‖∇²ₓΦ ε‖² of ‖∇²ₓΦ‖²_F at the cost of one backward pass.
    """
    x, t, potential = fields.x, fields.t, fields.potential
    with tf.GradientTape(persistent=x.shape[-1] <= exact_max_dim) as tape:
        tape.watch(x)
        gradient_x, _ = potential.gradient(x, t)
    if x.shape[-1] <= exact_max_dim:
        frobenius = tf.reduce_sum(tf.square(tape.batch_jacobian(gradient_x, x)), axis=[1, 2])
    else:
        probe = tf.random.normal(tf.shape(x), dtype=x.dtype)
        hessian_probe = tape.gradient(gradient_x, x, output_gradients=probe)
        frobenius = tf.reduce_sum(tf.square(hessian_probe), axis=-1)
    kinetic = tf.reduce_sum(tf.square(fields.velocity), axis=-1)
    return kinetic + frobenius / fields.alpha_transport**2


def resolve(weights):
    """Turns ``{name: weight}`` into ``(functions, weights)`` via the regularizer registry.

    Raises:
        tfotflow.registry.PluginError: for an unknown or broken regularizer (listing those
            installed).
        ValueError: for a weight that is not a finite number ≥ 0.
    """
    from tfotflow.registry import REGULARIZERS

    functions, values = [], []
    for name, weight in dict(weights).items():
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            weight = float("nan")
        if not weight >= 0.0 or weight == float("inf"):
            raise ValueError(
                "Regularizer weights must be finite numbers >= 0. "
                f"Received: {name}={weights[name]!r}"
            )
        functions.append(REGULARIZERS.load(name))
        values.append(weight)
    return tuple(functions), tuple(values)
