"""Regularizers: the kinetic + Jacobian Frobenius term against a direct Hessian."""

import numpy as np
import tensorflow as tf

from tfotflow import regularizers
from tfotflow.potential import Potential
from tfotflow.regularizers import FlowFields


def fields_for(potential, x, alpha=2.0):
    t = tf.constant(0.3, tf.float64)
    s = tf.concat([x, tf.fill([x.shape[0], 1], t)], 1)
    gradient, trace = potential.space_time_gradient_and_trace(s)
    return FlowFields(x, t, gradient, trace, -gradient[:, :-1] / alpha, alpha, potential)


def hessian(potential, x):
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            phi = potential(x, t=0.3)
        gradient = inner.gradient(phi, x)
    return outer.batch_jacobian(gradient, x)


def test_kinetic_jacobian_exact_for_small_d(rng):
    potential = Potential(width=5, num_layers=3, dtype="float64")
    x = tf.constant(rng.normal(size=(4, 3)))
    potential(x)
    fields = fields_for(potential, x)
    value = regularizers.kinetic_jacobian(fields)
    H = hessian(potential, x).numpy()
    expected = np.sum(fields.velocity.numpy() ** 2, 1) + np.sum(H**2, axis=(1, 2)) / 4.0
    np.testing.assert_allclose(value, expected, rtol=1e-10)


def test_kinetic_jacobian_probe_is_unbiased(rng):
    potential = Potential(width=5, dtype="float64")
    x = tf.constant(np.repeat(rng.normal(size=(1, 3)), 4000, axis=0))
    potential(x)
    fields = fields_for(potential, x)
    estimate = regularizers.kinetic_jacobian(fields, exact_max_dim=0).numpy()
    exact = regularizers.kinetic_jacobian(fields).numpy()
    spread = estimate.std() / np.sqrt(len(estimate))
    assert abs(estimate.mean() - exact[0]) < 4 * spread


def test_transport_and_hjb_formulas(rng):
    potential = Potential(width=4, dtype="float64")
    x = tf.constant(rng.normal(size=(5, 2)))
    potential(x)
    fields = fields_for(potential, x)
    v = fields.velocity.numpy()
    np.testing.assert_allclose(regularizers.transport(fields), 0.5 * np.sum(v**2, 1))
    dphi_dt = fields.gradient.numpy()[:, -1]
    np.testing.assert_allclose(
        regularizers.hjb(fields), np.abs(dphi_dt - 2.0 * 0.5 * np.sum(v**2, 1))
    )
