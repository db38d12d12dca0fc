"""The 2-D toy distributions of FFJORD and OT-Flow, seeded, any size.

The generators follow ``lib/toy_data.py`` of FFJORD (Grathwohl et al. 2019), which OT-Flow
reuses; the scikit-learn shapes (swissroll, circles, moons) are written out with the same
formulas as ``sklearn.datasets``, so no scikit-learn is needed. 8gaussians and checkerboard
have closed-form densities:

```none
8gaussians:    p(x) = ⅛ Σ_k N(x; 4 c_k / 1.414, (0.5 / 1.414)² I),  c_k: unit circle, every 45°
checkerboard:  p(x) = 1/32 on the eight 2×2 squares of a 4×4 board spanning [−4, 4]², else 0
```
"""

import numpy as np

_SQRT_HALF = 1.0 / np.sqrt(2.0)
_GAUSSIAN_CENTERS = 4.0 * np.array(
    [
        (1, 0),
        (-1, 0),
        (0, 1),
        (0, -1),
        (_SQRT_HALF, _SQRT_HALF),
        (_SQRT_HALF, -_SQRT_HALF),
        (-_SQRT_HALF, _SQRT_HALF),
        (-_SQRT_HALF, -_SQRT_HALF),
    ]
)


def eight_gaussians(rng, n):
    """Eight Gaussians (std 0.5) on a circle of radius 4, all divided by 1.414."""
    points = rng.randn(n, 2) * 0.5 + _GAUSSIAN_CENTERS[rng.randint(8, size=n)]
    return points / 1.414


def eight_gaussians_log_prob(x):
    """The exact log-density of :func:`eight_gaussians`, [n, 2] → [n]."""
    x = np.asarray(x, dtype=np.float64)
    scale = 0.5 / 1.414
    centers = _GAUSSIAN_CENTERS / 1.414
    squared = np.sum((x[:, None, :] - centers[None]) ** 2, axis=-1) / scale**2  # [n, 8]
    log_components = -0.5 * squared - np.log(2 * np.pi * scale**2)
    top = np.max(log_components, axis=1, keepdims=True)
    return (top + np.log(np.mean(np.exp(log_components - top), axis=1, keepdims=True)))[:, 0]


def checkerboard(rng, n):
    """Uniform on the dark squares of a 4 × 4 board of 2 × 2 squares."""
    x1 = rng.rand(n) * 4 - 2
    x2 = rng.rand(n) - rng.randint(0, 2, n) * 2 + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1) * 2


def checkerboard_log_prob(x):
    """The exact log-density of :func:`checkerboard`: −log 32 on the support, −∞ off it."""
    x = np.asarray(x, dtype=np.float64) / 2
    x1, x2 = x[:, 0], x[:, 1]
    inside = (x1 >= -2) & (x1 < 2) & (x2 >= -2) & (x2 < 2)
    dark = (np.floor(x2) - np.floor(x1)) % 2 == 0
    return np.where(inside & dark, -np.log(32.0), -np.inf)


def swissroll(rng, n):
    """sklearn's ``make_swiss_roll(noise=1.0)`` columns (0, 2), divided by 5."""
    t = 1.5 * np.pi * (1 + 2 * rng.rand(n))
    height = 21 * rng.rand(n)
    points = np.stack([t * np.cos(t), height, t * np.sin(t)], axis=1)
    points += rng.randn(n, 3)
    return points[:, [0, 2]] / 5


def circles(rng, n):
    """sklearn's ``make_circles(factor=0.5, noise=0.08)``, shuffled, times 3."""
    n_outer = n // 2
    n_inner = n - n_outer
    outer = np.linspace(0, 2 * np.pi, n_outer, endpoint=False)
    inner = np.linspace(0, 2 * np.pi, n_inner, endpoint=False)
    points = np.concatenate(
        [
            np.stack([np.cos(outer), np.sin(outer)], 1),
            0.5 * np.stack([np.cos(inner), np.sin(inner)], 1),
        ]
    )
    points = points[rng.permutation(n)] + rng.normal(scale=0.08, size=(n, 2))
    return points * 3


def moons(rng, n):
    """sklearn's ``make_moons(noise=0.1)``, shuffled, times 2, shifted by (−1, −0.2)."""
    n_outer = n // 2
    n_inner = n - n_outer
    outer = np.linspace(0, np.pi, n_outer)
    inner = np.linspace(0, np.pi, n_inner)
    points = np.concatenate(
        [
            np.stack([np.cos(outer), np.sin(outer)], 1),
            np.stack([1 - np.cos(inner), 1 - np.sin(inner) - 0.5], 1),
        ]
    )
    points = points[rng.permutation(n)] + rng.normal(scale=0.1, size=(n, 2))
    return points * 2 + np.array([-1.0, -0.2])


def pinwheel(rng, n):
    """Five curved arms (radial std 0.3, tangential std 0.1, rate 0.25), times 2."""
    num_classes, per_class = 5, -(-n // 5)
    angles0 = np.linspace(0, 2 * np.pi, num_classes, endpoint=False)
    features = rng.randn(num_classes * per_class, 2) * np.array([0.3, 0.1])
    features[:, 0] += 1.0
    labels = np.repeat(np.arange(num_classes), per_class)
    angles = angles0[labels] + 0.25 * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)])
    rotations = np.reshape(rotations.T, (-1, 2, 2))
    return 2 * rng.permutation(np.einsum("ti,tij->tj", features, rotations))[:n]


def two_spirals(rng, n):
    """Two interleaved spirals of 1.5 turns with uniform and Gaussian jitter, divided by 3."""
    half = n // 2
    other = n - half
    t = np.sqrt(rng.rand(n, 1)) * 540 * (2 * np.pi) / 360
    dx = -np.cos(t) * t + rng.rand(n, 1) * 0.5
    dy = np.sin(t) * t + rng.rand(n, 1) * 0.5
    sign = np.concatenate([np.ones((half, 1)), -np.ones((other, 1))])
    points = sign * np.hstack([dx, dy]) / 3
    return points + rng.randn(n, 2) * 0.1


def rings(rng, n):
    """Four concentric rings (radii 3, 2.25, 1.5, 0.75), shuffled, with noise 0.08."""
    sizes = [n // 4] * 3
    sizes = [n - sum(sizes)] + sizes  # the innermost ring takes the remainder
    parts = []
    for radius, size in zip([0.25, 1.0, 0.75, 0.5], sizes):
        angle = np.linspace(0, 2 * np.pi, size, endpoint=False)
        parts.append(radius * np.stack([np.cos(angle), np.sin(angle)], axis=1))
    points = np.concatenate(parts) * 3.0
    points = points[rng.permutation(n)]
    return points + rng.normal(scale=0.08, size=points.shape)


GENERATORS = {
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "swissroll": swissroll,
    "circles": circles,
    "moons": moons,
    "pinwheel": pinwheel,
    "2spirals": two_spirals,
    "rings": rings,
}
LOG_PROBS = {"8gaussians": eight_gaussians_log_prob, "checkerboard": checkerboard_log_prob}
DESCRIPTIONS = {
    "8gaussians": "mixture of eight Gaussians on a circle",
    "checkerboard": "uniform on the dark squares of a 4x4 checkerboard",
    "swissroll": "2-D swiss roll",
    "circles": "two concentric noisy circles",
    "moons": "two interleaved half moons",
    "pinwheel": "five curved pinwheel arms",
    "2spirals": "two interleaved spirals",
    "rings": "four concentric noisy rings",
}


def entropy(log_prob, *, half_width=6.0, points_per_axis=1201):
    """−∫ p log p over the plane by the midpoint rule on a fine grid (exact to ~1e-6 here)."""
    grid = np.linspace(-half_width, half_width, points_per_axis)
    step = grid[1] - grid[0]
    xx, yy = np.meshgrid(grid, grid)
    log_p = log_prob(np.stack([xx.ravel(), yy.ravel()], axis=1))
    p = np.exp(log_p)
    terms = np.where(p > 0, p * np.where(np.isfinite(log_p), log_p, 0.0), 0.0)
    return float(-np.sum(terms) * step**2)
