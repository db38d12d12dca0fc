"""Checks of plain Python arguments (numbers, names), shared by every public entry point and
by :mod:`tfotflow.settings`; TensorFlow-free. Each raises a ``ValueError`` or ``TypeError``
that names the argument, says what was expected and shows what was received
(``Received: width=0``)."""

import math
import numbers


def check_int(name, value, *, minimum):
    """Returns ``value`` as an ``int`` after checking it is an integer ``>= minimum``.

    Raises:
        TypeError: if ``value`` is not an integer (``bool`` is refused too).
        ValueError: if ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}. Received: {name}={value!r}")
    return int(value)


def check_positive_float(name, value):
    """Returns ``value`` as a ``float`` after checking it is a finite number ``> 0``.

    Raises:
        TypeError: if ``value`` is not a real number.
        ValueError: if ``value`` is not finite and positive.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number. Received: {name}={value!r}")
    value = float(value)
    if not value > 0.0 or value == float("inf"):
        raise ValueError(f"`{name}` must be finite and positive. Received: {name}={value!r}")
    return value


def check_choice(name, value, choices):
    """``value`` if it is one of ``choices``, else a ValueError naming ``name``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}. Received: {name}={value!r}")
    return value


def check_alpha(alpha):
    """``alpha`` as three floats (α_L > 0, α_C ≥ 0, α_R ≥ 0, all finite), or a ValueError."""
    if (
        not isinstance(alpha, (tuple, list))
        or len(alpha) != 3
        or not all(isinstance(a, numbers.Real) and not isinstance(a, bool) for a in alpha)
        or not all(math.isfinite(a) for a in alpha)
        or not alpha[0] > 0
        or not all(a >= 0 for a in alpha[1:])
    ):
        raise ValueError(
            "`alpha` must be three finite numbers (α_L > 0, α_C >= 0, α_R >= 0). "
            f"Received: alpha={alpha!r}"
        )
    return tuple(float(a) for a in alpha)


FLOAT_DTYPES = ("float32", "float64")


def check_float_dtype_name(name, dtype):
    """``dtype``'s name if it is float32 or float64 (a name, a NumPy or TensorFlow dtype),
    else a TypeError naming ``name``."""
    found = getattr(dtype, "name", dtype)
    if found not in FLOAT_DTYPES:
        raise TypeError(f"`{name}` must be float32 or float64. Received: {name}={dtype!r}")
    return found
