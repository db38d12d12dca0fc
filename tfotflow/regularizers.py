"""Running costs integrated along the flow: the OT-Flow regularizers and the fields they read.

A regularizer is a function ``cost(fields) -> [n]`` giving the rate dR/dt of a running cost at
one point of the trajectory. It receives :class:`FlowFields`, everything the dynamics already
computed, so the common regularizers cost no extra network evaluation. Its integral over
t ∈ [0, 1] becomes one extra column of the ODE state, and the model adds
``weight · mean(R(1))`` to the objective. A regularizer that draws random probes sets
``cost.needs_seed = True`` and draws them from ``fields.seed``, so that the backward pass
differentiates the very estimate the forward pass integrated.

Regularizers are plugins of the entry-point group ``tfotflow.regularizers``; the built-ins below
are declared there by tfotflow's own ``pyproject.toml``. Built-ins (Onken et al. 2021, eq. 8
and §3; Finlay et al. 2020):

```none
transport:      dL/dt = ½ ‖v‖²                              v = −∇ₓΦ / α_L
hjb:            dR/dt = | ∂ₜΦ − α_L · ½ ‖v‖² |
kinetic_jacobian: dK/dt = ‖v‖² + ‖∇ₓv‖²_F                 ∇ₓv = −∇²ₓΦ / α_L (RNODE)
```
"""

import tensorflow as tf

from tfotflow.ode import FlowFields  # noqa: F401  (the argument of every regularizer)
from tfotflow.potential import space_time
from tfotflow.registry import REGULARIZERS


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
    estimate ‖∇²ₓΦ ε‖² of ‖∇²ₓΦ‖²_F at the cost of one backward pass, drawn from the stage's
    seed so that the adjoint pass differentiates the same estimate.
    """
    x, potential = fields.x, fields.potential
    exact = x.shape[-1] <= exact_max_dim
    with tf.GradientTape(persistent=exact) as tape:
        tape.watch(x)
        s = space_time(x, fields.t, fields.condition)
        gradient_x = potential.space_time_gradient(s, fields.weights)[:, : potential.dim]
    if exact:
        frobenius = tf.reduce_sum(tf.square(tape.batch_jacobian(gradient_x, x)), axis=[1, 2])
    else:
        probe = (
            tf.random.normal(tf.shape(x), dtype=x.dtype)
            if fields.seed is None
            else tf.random.stateless_normal(tf.shape(x), seed=fields.seed, dtype=x.dtype)
        )
        hessian_probe = tape.gradient(gradient_x, x, output_gradients=probe)
        frobenius = tf.reduce_sum(tf.square(hessian_probe), axis=-1)
    kinetic = tf.reduce_sum(tf.square(fields.velocity), axis=-1)
    return kinetic + frobenius / fields.alpha_transport**2


kinetic_jacobian.needs_seed = True  # its probe comes from FlowFields.seed


def resolve(weights):
    """Turns ``{name: weight}`` into ``(functions, weights)`` via the regularizer registry.

    Raises:
        tfotflow.registry.PluginError: for an unknown or broken regularizer (listing those
            installed).
        ValueError: for a weight that is not a finite number ≥ 0.
    """
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
