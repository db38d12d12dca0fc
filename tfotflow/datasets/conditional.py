"""Conditional toy problems, (x, y) pairs with a closed-form conditional density p(x | y).

```none
rotating_gaussians (d = 2, k = 1):  y ~ U[−1, 1],  θ = π y / 2,  μ(y) = 2 (cos θ, sin θ)
    p(x | y) = ½ N(x; μ(y), 0.5² I) + ½ N(x; −μ(y), 0.5² I)
banana (d = 2, k = 1):  y ~ U[−1, 1]
    p(x | y) = N(x₁; 0, 1) · N(x₂; y (x₁² − 1), 0.5²)           (the curvature is y)
linear_gaussian (d = k = 10): the simulation-based-inference task with a closed-form
    posterior: θ ~ N(0, 0.1 I), x | θ ~ N(θ, 0.1 I); points θ, conditions x, and
    p(θ | x) = N(θ; x / 2, 0.05 I)
```

The conditional entropies H(X | Y) = E_y H(X | y) are exact: both toy densities are the same
shape for every y up to a rotation or a shear of unit determinant, so H(X | y) does not
depend on y (the mixture's by quadrature on a grid, the others in closed form).
"""

import numpy as np

from tfotflow.datasets.toy import entropy as grid_entropy

_LOG_TWO_PI = np.log(2.0 * np.pi)


def _normal_log_prob(x, mean, variance):
    """Σ over the last axis of log N(x; mean, variance)."""
    return np.sum(-0.5 * (x - mean) ** 2 / variance - 0.5 * (_LOG_TWO_PI + np.log(variance)), -1)


def _uniform_conditions(rng, n):
    return rng.uniform(-1.0, 1.0, size=(n, 1))


def _rotating_means(y):
    theta = 0.5 * np.pi * y[:, 0]
    return 2.0 * np.stack([np.cos(theta), np.sin(theta)], axis=1)


def rotating_gaussians(rng, n):
    """(x [n, 2], y [n, 1]): two Gaussians (std 0.5) at ±μ(y), rotated by the condition."""
    y = _uniform_conditions(rng, n)
    sign = np.where(rng.randint(2, size=n) == 0, 1.0, -1.0)[:, None]
    x = sign * _rotating_means(y) + 0.5 * rng.randn(n, 2)
    return x, y


def rotating_gaussians_log_prob(x, y):
    """log p(x | y) of :func:`rotating_gaussians`, [n]."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mean = _rotating_means(y)
    both = np.stack([_normal_log_prob(x, mean, 0.25), _normal_log_prob(x, -mean, 0.25)], -1)
    return np.logaddexp(both[:, 0], both[:, 1]) - np.log(2.0)


def banana(rng, n):
    """(x [n, 2], y [n, 1]): x₁ ~ N(0, 1), x₂ ~ N(y (x₁² − 1), 0.5²)."""
    y = _uniform_conditions(rng, n)
    x1 = rng.randn(n)
    x2 = y[:, 0] * (x1**2 - 1.0) + 0.5 * rng.randn(n)
    return np.stack([x1, x2], axis=1), y


def banana_log_prob(x, y):
    """log p(x | y) of :func:`banana`, [n]."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x1, x2 = x[:, :1], x[:, 1:]
    return _normal_log_prob(x1, 0.0, 1.0) + _normal_log_prob(x2, y * (x1**2 - 1.0), 0.25)


LINEAR_GAUSSIAN_DIM = 10
PRIOR_VARIANCE = NOISE_VARIANCE = 0.1


def linear_gaussian(rng, n):
    """(θ [n, 10], x [n, 10]): θ ~ N(0, 0.1 I), x = θ + N(0, 0.1 I)."""
    theta = np.sqrt(PRIOR_VARIANCE) * rng.randn(n, LINEAR_GAUSSIAN_DIM)
    x = theta + np.sqrt(NOISE_VARIANCE) * rng.randn(n, LINEAR_GAUSSIAN_DIM)
    return theta, x


def linear_gaussian_posterior(x):
    """The exact posterior's mean [n, 10] and (isotropic) variance of θ given x."""
    weight = PRIOR_VARIANCE / (PRIOR_VARIANCE + NOISE_VARIANCE)
    return weight * np.asarray(x, np.float64), weight * NOISE_VARIANCE


def linear_gaussian_log_prob(theta, x):
    """log p(θ | x), the exact posterior's log-density, [n]."""
    mean, variance = linear_gaussian_posterior(x)
    return _normal_log_prob(np.asarray(theta, np.float64), mean, variance)


def _gaussian_entropy(variances):
    return float(sum(0.5 * (_LOG_TWO_PI + 1.0 + np.log(v)) for v in variances))


def conditional_entropy(name):
    """H(X | Y) in nats (the same for every y: see the module docstring)."""
    if name == "rotating_gaussians":
        y = np.zeros([1, 1])
        return grid_entropy(
            lambda x: rotating_gaussians_log_prob(x, np.broadcast_to(y, (len(x), 1)))
        )
    if name == "banana":  # a shear of N(0, 1) × N(0, 0.5²)
        return _gaussian_entropy([1.0, 0.25])
    _, variance = linear_gaussian_posterior(np.zeros([1, LINEAR_GAUSSIAN_DIM]))
    return _gaussian_entropy([variance] * LINEAR_GAUSSIAN_DIM)


GENERATORS = {
    "rotating_gaussians": rotating_gaussians,
    "banana": banana,
    "linear_gaussian": linear_gaussian,
}
LOG_PROBS = {
    "rotating_gaussians": rotating_gaussians_log_prob,
    "banana": banana_log_prob,
    "linear_gaussian": linear_gaussian_log_prob,
}
DIMS = {"rotating_gaussians": (2, 1), "banana": (2, 1), "linear_gaussian": (10, 10)}
DESCRIPTIONS = {
    "rotating_gaussians": "two Gaussians whose axis turns with the condition y in [-1, 1]",
    "banana": "a banana whose curvature is the condition y in [-1, 1]",
    "linear_gaussian": (
        "posterior of theta given x = theta + noise (10-D, closed form), from 10,000 "
        "simulated pairs"
    ),
}
