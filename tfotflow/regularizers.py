"""Running costs integrated along the flow: the OT-Flow regularizers and the fields they read.

A regularizer is a function ``cost(fields) -> [n]`` giving the rate dR/dt of a running cost at
one point of the trajectory. It receives :class:`FlowFields`, everything the dynamics already
computed, so the common regularizers cost no extra network evaluation. Its integral over
t ∈ [0, 1] becomes one extra column of the ODE state, and the model adds
``weight · mean(R(1))`` to the objective.

Built-ins (Onken et al. 2021, eq. 8 and §3; Finlay et al. 2020):

```none
transport:      dL/dt = ½ ‖v‖²                              v = −∇ₓΦ / α_L
hjb:            dR/dt = | ∂ₜΦ − α_L · ½ ‖v‖² |
kinetic_jacobian: dK/dt = ‖v‖² + ‖∇ₓv‖²_F                   ∇ₓv = −∇²ₓΦ / α_L
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
