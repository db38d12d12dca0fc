"""The generalization suite: synthetic tables of three characters at any dimension, each with
its exact log-density, on which the settings rule is judged and never tuned.

```none
mixture     Σ_k w_k N(μ_k, Σ_k)           8 components, random means and covariances
student_t   Σ_k w_k t_ν_k(μ_k, Σ_k)       4 heavy-tailed components, ν_k in [3, 6]
banana      x = Q·shear(z), z ~ N(0, diag s²)   pairs (z_a, z_b + b·(z_a² − s_a²)), Q a rotation
```

Means are drawn with E‖μ_i − μ_j‖ ≈ 5 at every d (μ ~ N(0, 12.5/d · I)); a covariance is
Q diag(λ) Qᵀ with Q a uniform random rotation and λ log-uniform on [0.1, 1]. The banana's
shear has unit Jacobian and Q is orthogonal, so log p(x) = log N(z; 0, diag s²). A set is fixed
by (character, d, draw): the draw seeds its parameters and its rows. Draw 0 is the tuning
draw; the reported draws are chosen after the rule is frozen (``benchmarks/README.md``).
"""

import math
import pathlib
import re

import numpy as np

from tfotflow.checks import check_choice, check_int
from tfotflow.datasets.mixture import Mixture

CHARACTERS = ("mixture", "student_t", "banana")
DIMS = (4, 16, 64)
ROWS = 125_000  # 100,000 training rows under the file split (0.8, 0.1, 0.1)
TUNING_DRAW = 0
MEAN_DISTANCE = 5.0


def random_rotation(rng, d):
    """A uniform random orthogonal [d, d] matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def random_covariance(rng, d):
    """Q diag(λ) Qᵀ with λ log-uniform on [0.1, 1], [d, d]."""
    q = random_rotation(rng, d)
    return (q * np.exp(rng.uniform(np.log(0.1), 0.0, d))) @ q.T


class Banana:
    """x = Q·y with y_a = z_a, y_b = z_b + b·(z_a² − s_a²) on the pairs (a, b) = (0, 1), (2, 3), …
    and z ~ N(0, diag s²); an odd d leaves the last coordinate unsheared.

    Args:
        scales: s, [d].
        bends: b, one per pair, [d // 2].
        rotation: Q, orthogonal [d, d].
    """

    def __init__(self, scales, bends, rotation):
        self.scales, self.bends, self.rotation = map(np.asarray, (scales, bends, rotation))

    @property
    def dim(self):
        return len(self.scales)

    def _bend(self, a):
        first = a[:, 0 : 2 * len(self.bends) : 2]
        return self.bends * (first**2 - self.scales[0 : 2 * len(self.bends) : 2] ** 2)

    def sample(self, rng, n):
        """``n`` rows [n, d] drawn with the numpy generator ``rng``."""
        y = rng.standard_normal((n, self.dim)) * self.scales
        y[:, 1 : 2 * len(self.bends) : 2] += self._bend(y)
        return y @ self.rotation.T

    def log_prob(self, x):
        """log p(x), [n], for rows x [n, d]."""
        z = x @ self.rotation  # Qᵀx, row-wise
        z[:, 1 : 2 * len(self.bends) : 2] -= self._bend(z)
        u = z / self.scales
        return -0.5 * np.sum(u**2, axis=1) - np.sum(
            np.log(self.scales) + 0.5 * math.log(2 * math.pi)
        )


def make(character, dim, draw):
    """The set of ``character`` at dimension ``dim`` for ``draw``: an object with
    ``sample(rng, n)`` and ``log_prob(x)`` (a :class:`tfotflow.datasets.mixture.Mixture`, or
    a :class:`Banana`)."""
    check_choice("character", character, CHARACTERS)
    dim = check_int("dim", dim, minimum=2)
    draw = check_int("draw", draw, minimum=0)
    rng = np.random.default_rng([draw, dim, CHARACTERS.index(character)])
    spread = MEAN_DISTANCE / math.sqrt(2 * dim)  # E‖μ_i − μ_j‖² = MEAN_DISTANCE²
    if character == "banana":
        return Banana(
            scales=rng.uniform(0.5, 1.5, dim),
            bends=rng.uniform(0.3, 1.0, dim // 2),
            rotation=random_rotation(rng, dim),
        )
    components = 8 if character == "mixture" else 4
    weights = rng.dirichlet(np.full(components, 5.0))
    means = rng.normal(0.0, spread, (components, dim))
    covariances = np.stack([random_covariance(rng, dim) for _ in range(components)])
    nu = rng.uniform(3.0, 6.0, components) if character == "student_t" else None
    return Mixture(weights, means, np.linalg.cholesky(covariances), nu)


def name(character, dim, draw):
    """The set's file stem, e.g. ``mixture_d16_draw0``."""
    return f"{character}_d{dim}_draw{draw}"


def write(folder, character, dim, draw, rows=ROWS):
    """Writes the set's ``rows`` rows (float64) to ``folder/NAME.npy`` once; returns the path.
    The rows are drawn from a generator seeded apart from the parameters'."""
    path = pathlib.Path(folder) / f"{name(character, dim, draw)}.npy"
    if not path.exists():
        distribution = make(character, dim, draw)
        rng = np.random.default_rng([draw, dim, CHARACTERS.index(character), 1])
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp.npy")
        np.save(temporary, distribution.sample(rng, rows))
        temporary.replace(path)
    return path


def parse(stem):
    """(character, d, draw) of a set's file stem (:func:`name`), or None for another name."""
    match = re.fullmatch(r"(\w+?)_d(\d+)_draw(\d+)", str(stem))
    if match is None or match[1] not in CHARACTERS:
        return None
    return match[1], int(match[2]), int(match[3])
