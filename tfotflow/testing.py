"""Reusable checks for flows and potentials, for our tests and for authors building on tfotflow.

Each check raises ``AssertionError`` with the measured discrepancy when it fails, and returns
the measured value(s) otherwise, so it can sit in any test runner.

>>> import keras, numpy as np, tfotflow
>>> keras.utils.set_random_seed(0)  # the potential's initial weights, whatever ran before
>>> potential = tfotflow.Potential(width=4, dtype="float64")
>>> flow = tfotflow.OTFlow(potential, num_steps=16)
>>> x = np.random.default_rng(0).normal(size=(5, 2))
>>> check_round_trip(flow, x, tolerance=1e-3) < 1e-3
True
"""

import numpy as np
import tensorflow as tf

from tfotflow import datasets
from tfotflow.settings import MODEL_KEYS, TRAIN_KEYS


def _fail(what, measured, tolerance):
    raise AssertionError(f"{what}: measured {measured:.3e}, allowed {tolerance:.1e}")


def check_round_trip(bijector, x, *, tolerance, **kwargs):
    """Checks max |forward(inverse(x)) − x| ≤ tolerance; returns that error.

    ``tf.identity`` defeats the bijector cache, so both directions are really integrated.
    """
    x = tf.convert_to_tensor(x, bijector.dtype)
    z = tf.identity(bijector.inverse(x, **kwargs))
    back = bijector.forward(z, **kwargs)
    error = float(tf.reduce_max(tf.abs(back - x)))
    if not error <= tolerance:
        _fail("round trip forward(inverse(x)) vs x", error, tolerance)
    return error


def check_log_det_against_autodiff(bijector, x, *, tolerance, **kwargs):
    """Checks ``inverse_log_det_jacobian(x)`` against log|det| of the autodiff Jacobian.

    The Jacobian [n, d, d] of the computed map ``inverse`` is taken with ``tf.GradientTape``, one
    row per backward pass (points are independent, so the gradient of Σₙ z[n, i] is row i of
    every point's Jacobian), and its ``slogdet`` compared to the bijector's log-det. Returns
    the largest absolute difference.
    """
    x = tf.convert_to_tensor(x, bijector.dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        z = bijector.inverse(tf.identity(x), **kwargs)
        rows = [tf.reduce_sum(z[..., i]) for i in range(z.shape[-1])]
    jacobian = tf.stack([tape.gradient(row, x) for row in rows], axis=-2)
    _, log_abs_det = tf.linalg.slogdet(jacobian)
    ildj = bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=1, **kwargs)
    error = float(tf.reduce_max(tf.abs(ildj - log_abs_det)))
    if not error <= tolerance:
        _fail("inverse_log_det_jacobian vs slogdet(batch_jacobian)", error, tolerance)
    return error


def check_log_det_consistency(bijector, z, *, tolerance, **kwargs):
    """Checks forward_log_det_jacobian(z) ≈ −inverse_log_det_jacobian(forward(z))."""
    z = tf.convert_to_tensor(z, bijector.dtype)
    fldj = bijector.forward_log_det_jacobian(z, event_ndims=1, **kwargs)
    x = tf.identity(bijector.forward(z, **kwargs))
    ildj = bijector.inverse_log_det_jacobian(x, event_ndims=1, **kwargs)
    error = float(tf.reduce_max(tf.abs(fldj + ildj)))
    if not error <= tolerance:
        _fail(
            "forward_log_det_jacobian(z) + inverse_log_det_jacobian(forward(z))", error, tolerance
        )
    return error


def check_gradients_reach(loss_fn, variables, *, exclude=()):
    """Checks that ``loss_fn()`` has a finite, non-zero gradient for every variable.

    Args:
        loss_fn: a callable returning a scalar loss.
        variables: the variables that must receive a gradient (Keras or TF variables).
        exclude: short names (the last part of a variable's name, without ``:0``) allowed to
            have none, e.g. an additive constant that no log-density depends on.

    Returns:
        A dict from variable name to the gradient's largest magnitude.
    """
    variables = list(variables)
    with tf.GradientTape() as tape:
        loss = loss_fn()
    gradients = tape.gradient(loss, variables)
    sizes, missing = {}, []
    for variable, gradient in zip(variables, gradients):
        name = variable.name
        if name.split("/")[-1].split(":")[0] in exclude:
            continue
        size = None if gradient is None else float(tf.reduce_max(tf.abs(gradient)))
        if size is None or not np.isfinite(size) or size == 0.0:
            missing.append(f"{name}: {size}")
        sizes[name] = size
    if missing:
        raise AssertionError(f"no finite non-zero gradient for: {', '.join(missing)}")
    return sizes


def check_config_round_trip(layer, *args, **kwargs):
    """Checks ``from_config(get_config())`` with the same weights gives identical outputs."""
    clone = type(layer).from_config(layer.get_config())
    expected = layer(*args, **kwargs)
    clone(*args, **kwargs)
    clone.set_weights(layer.get_weights())
    received = clone(*args, **kwargs)
    if not np.array_equal(np.asarray(expected), np.asarray(received)):
        raise AssertionError("a layer rebuilt from its config computes other outputs")
    return clone


KNOWN_HYPERPARAMETERS = {*MODEL_KEYS, *TRAIN_KEYS}  # the settings a run's config.json holds


def check_dataset_plugin(name, **options):
    """Checks that the installed dataset plugin ``name`` honours the tfotflow dataset contract.

    For plugin authors: call it in your own tests after ``pip install``-ing your package.
    It checks that ``name`` is found through the ``tfotflow.datasets`` entry points, that
    :func:`tfotflow.datasets.load` accepts what the plugin returns (float arrays [n, d], no
    NaN/Inf, three splits), that the metadata is complete (description, citation, known
    hyperparameter names) and that loading twice with one seed gives identical splits.

    Args:
        name: the entry-point name.
        **options: passed to the loader.

    Returns:
        The loaded :class:`tfotflow.datasets.Dataset`.
    """
    if name not in datasets.names():
        raise AssertionError(
            f"{name!r} is not declared in the 'tfotflow.datasets' entry-point group; "
            f"installed: {datasets.names()}"
        )
    first = datasets.load(name, seed=0, **options)
    metadata = first.metadata
    if metadata.name != name:
        raise AssertionError(f"metadata.name is {metadata.name!r}, expected {name!r}")
    if not metadata.description or not metadata.citation:
        raise AssertionError("metadata needs a description and a licence/citation")
    unknown = set(metadata.hyperparameters) - KNOWN_HYPERPARAMETERS
    if unknown:
        raise AssertionError(
            f"unknown hyperparameter names {sorted(unknown)}; "
            f"known: {sorted(KNOWN_HYPERPARAMETERS)}"
        )
    second = datasets.load(name, seed=0, **options)
    for split in ("train", "val", "test"):
        if not np.array_equal(getattr(first, split), getattr(second, split)):
            raise AssertionError(f"split {split!r} differs between two loads with seed 0")
    return first
