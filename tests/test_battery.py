"""The ``tfotflow.testing`` battery over a table of configurations: dtype × depth × XLA ×
regularizers (× a condition). Every configuration inverts, has the autodiff log-determinant,
agrees with itself in both directions and passes a gradient to every weight."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfotflow import OTFlowModel, testing

KINETIC = {"transport": 1.0, "hjb": 2.0, "kinetic_jacobian": 0.1}
LEVELS = [
    ("float64", "float32"),
    (2, 3),  # num_layers
    (False, True),  # jit_compile
    (None, KINETIC),  # regularizers
    (0, 2),  # condition_dim
]
# An orthogonal array L8(2^7), columns a, b, c, ab, ac: every pair of settings of every two
# factors occurs in exactly two of the eight configurations (a pairwise-complete battery at a
# quarter of the full product's 32).
CONFIGURATIONS = [
    tuple(levels[bit] for levels, bit in zip(LEVELS, (a, b, c, a ^ b, a ^ c)))
    for a, b, c in itertools.product((0, 1), repeat=3)
]
TOLERANCES = {"float64": 1e-5, "float32": 2e-3}  # RK4 with 8 steps, and rounding


def configured(dtype, num_layers, regularizers, condition_dim, rng):
    model = OTFlowModel(
        3,
        width=5,
        num_layers=num_layers,
        num_steps=8,
        dtype=dtype,
        regularizers=regularizers,
        condition_dim=condition_dim,
    )
    for variable in model.potential.trainable_variables:  # gentle, non-trivial weights
        variable.assign(rng.normal(scale=0.3, size=variable.shape))
    return model


@pytest.mark.parametrize(
    "dtype, num_layers, jit_compile, regularizers, condition_dim",
    [pytest.param(*row, marks=pytest.mark.slow) for row in CONFIGURATIONS],
    ids=lambda value: str(value) if not isinstance(value, dict) else "kinetic",
)
def test_battery(dtype, num_layers, jit_compile, regularizers, condition_dim, rng):
    model = configured(dtype, num_layers, regularizers, condition_dim, rng)
    flow = model.flow
    flow._jit_compile = jit_compile  # the same flow, solved by XLA
    x = tf.constant(rng.normal(size=(4, 3)), dtype)
    y = tf.constant(rng.normal(size=(4, condition_dim)), dtype) if condition_dim else None
    kwargs = {"conditional_input": y} if condition_dim else {}
    tolerance = TOLERANCES[dtype]
    testing.check_round_trip(flow, x, tolerance=tolerance, **kwargs)
    testing.check_log_det_against_autodiff(flow, x, tolerance=10 * tolerance, **kwargs)
    testing.check_log_det_consistency(flow, x, tolerance=10 * tolerance, **kwargs)

    @tf.function(jit_compile=jit_compile)
    def loss_and_gradients():
        with tf.GradientTape() as tape:
            loss = model.objective(x, y, jit_compile=jit_compile)[0]
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, gradients = loss_and_gradients()
    assert np.isfinite(float(loss))
    for variable, gradient in zip(model.trainable_variables, gradients):
        size = float(tf.reduce_max(tf.abs(gradient)))
        assert np.isfinite(size) and size > 0, variable.name
