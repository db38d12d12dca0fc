"""Argument and input checks shared by every public entry point.

Each check raises a ``ValueError`` or ``TypeError`` that names the argument, says what was
expected and shows what was received (``Received: width=0``), so a bad call fails at
construction or on entry instead of producing NaNs later.
"""

import tensorflow as tf

from tfotflow.checks import check_int, check_positive_float  # noqa: F401  (re-exported)


def check_float_dtype(name, dtype):
    """Returns ``dtype`` as a floating ``tf.DType`` (float32 or float64).

    Raises:
        TypeError: if ``dtype`` is not ``float32`` or ``float64``.
    """
    try:
        tf_dtype = tf.as_dtype(dtype)
    except TypeError:
        tf_dtype = None
    if tf_dtype not in (tf.float32, tf.float64):
        raise TypeError(f"`{name}` must be float32 or float64. Received: {name}={dtype!r}")
    return tf_dtype


def convert_points(name, value, *, dtype, event_size):
    """Converts ``value`` to a floating tensor of shape ``[..., event_size]``.

    Args:
        name: the argument's name, used in error messages.
        value: array-like of real numbers, shape ``[..., event_size]``.
        dtype: the floating dtype to convert to.
        event_size: the required size of the last axis, or ``None`` to accept any.

    Returns:
        A ``tf.Tensor`` of ``dtype``.

    Raises:
        TypeError: if ``value`` holds non-floating numbers (integers, booleans, strings).
        ValueError: if ``value`` has rank 0 or a last axis of the wrong size.
    """
    try:
        value = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must hold floating-point numbers. Received: a {type(value).__name__} "
            f"that is not numeric ({error})"
        ) from error
    shape = None if value.shape.rank is None else value.shape.as_list()
    check_points(
        name,
        floating=value.dtype.is_floating,
        dtype_name=value.dtype.name,
        shape=shape,
        event_size=event_size,
    )
    return tf.cast(value, dtype)


def check_points(name, *, floating, dtype_name, shape, event_size):
    """Checks points of shape ``shape`` [..., ``event_size``] (a list, None entries or None
    for unknown) whose dtype, named ``dtype_name``, is ``floating`` or not, without converting
    them (:func:`convert_points` checks a tensor with it; a NumPy array checks as well).

    Raises:
        TypeError: if the points are not floating-point numbers.
        ValueError: if they are a scalar or their last axis is not ``event_size``.
    """
    if not floating:
        raise TypeError(
            f"`{name}` must hold floating-point numbers. Received: {name}.dtype={dtype_name}"
        )
    if shape is not None and len(shape) == 0:
        raise ValueError(f"`{name}` must have shape [..., d]. Received: a scalar {name}")
    if event_size is not None and shape is not None and shape[-1] not in (None, event_size):
        raise ValueError(
            f"`{name}` must have shape [..., {event_size}]. Received: {name}.shape={shape}"
        )


def assert_finite(name, value, *, validate_args):
    """Returns ``value``, with a runtime check that it holds no NaN or Inf when ``validate_args``.

    The check also runs inside ``tf.function`` and XLA-compiled code (as an assertion op).
    """
    if not validate_args:
        return value
    return tf.debugging.assert_all_finite(value, f"`{name}` must be finite (no NaN or Inf)")


def batch_points_and_conditions(data, condition_dim):
    """(points, conditions) of a Keras data element.

    Unconditional (``condition_dim`` 0): the points of ``x``, ``(x,)``, ``(x, y)`` or
    ``(x, y, w)``, and None (a ``y`` is ignored, as Keras losses ignore unused targets).
    Conditional: ``(points, conditions)``, ``((points, conditions),)`` or
    ``(points, conditions, w)``, as ``fit(points, conditions)`` and a ``tf.data`` of pairs
    deliver them.

    Raises:
        ValueError: for a conditional model given points alone.
    """
    parts = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if len(parts) == 1 and isinstance(parts[0], (tuple, list)):
        parts = tuple(parts[0])
    if not condition_dim:
        return parts[0], None
    if len(parts) < 2 or parts[1] is None:
        raise ValueError(
            f"A conditional model (condition_dim={condition_dim}) trains and evaluates on "
            "(points, conditions) pairs: `fit(points, conditions)` or a tf.data.Dataset of "
            "(points, conditions). Received: points alone"
        )
    return parts[0], parts[1]
