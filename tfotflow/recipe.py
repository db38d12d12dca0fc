"""The settings a run takes from its data when the data set recommends none (a user's file).

The rule, from the dimension d, the condition width k and the training rows n:

```none
width            32 for d + k ≤ 16, 64 for ≤ 32, 128 for ≤ 64, 256 above; halved (not below 16)
                 while the potential's weights exceed n / 4 (for d ≤ 16; above, n · d / 4)
num_layers       2
alpha            (1, 30, 1)                       (α_L, α_C, α_R)
num_steps        4 for d ≤ 16, else 6             (RK4 steps in training)
eval_num_steps   2 · num_steps
trace            exact for d ≤ 16, else hutchinson (training steps only; scores stay exact)
normalization    diagonal for d ≤ 16, else whiten, unless n < 20 · d(d + 1)/2 (20 rows per
                 covariance entry) or the training points' correlation matrix has a condition
                 number above 1e6 (then diagonal)
batch_size       min(1024, n // 4), at least 1
iterations       1250 · √(d / 2), within [2000, 5000]; above d = 16 at most 250 epochs
                 (250 · n / batch_size)
learning_rate    0.03 for d ≤ 16, else 0.01, cosine-decayed to 0 over the iterations
warm_start       1000 flow-matching steps of min(256, n) points at rate 0.02, with 100
                 Sinkhorn sweeps of the coupling for d ≤ 16, else 20
weight_clip      none for d ≤ 2, else 1.5          (every weight, before each step)
spread           2 for d ≤ 2 if a kernel estimate beats the Gaussian fit by over 0.05 nats per
                 point (gaussian_gap), else 1      (the standardized points' deviation)
validate_every   iterations / 5
```

At d = 2 with 4,096 rows or more this is the toy sets' tuned recipe (width 32,
α = (1, 30, 1), 4 / 8 steps, batch 1024, 2,000 iterations, cosine from 0.03, 1,000
warm-start steps, no weight clip), which reaches within 0.05 nats of the exact entropy of
``8gaussians``. The reference's clip of every weight to [−1.5, 1.5] held the 2-D potential
below the weights it needed: without it, on ``8gaussians``, the toy recipe reached the
worse of its and BayesFlow flow matching's best NLLs 3.8× sooner than BayesFlow (1.4× with
it; median of three seeds). Its cosine spans 2,000 likelihood steps, the floor of the rule:
over 1,250 it ended higher on each of three seeds of ``8gaussians`` (median best NLL 2.858
against 2.854) and of ``checkerboard`` (3.600 against 3.582), and the quick start, still
under 90 s, came within 0.013 nats of the entropy instead of 0.026.
Above d = 2 the clip stays: on the 10-D ``linear_gaussian`` posterior, unclipped, two of six
races stalled at an NLL above 1 (1.42 and 4.47, against −0.64 to −0.66 for the others); with
the clip the stalled seed reached −0.66.
Above, the potential widens with the dimension, but never has more weights than a quarter of
the training rows, and it trains longer, as √d. With half, ``linear_gaussian`` as a file of
20,000 rows got width 64 and ended 0.037 nats worse than at width 32 (``benchmarks/README.md``).
Above d = 16 the cap counts values (n · d / 4): MINIBOONE's 2,923-row validation split as a file
ended at 26.55 nats at the rows' cap (width 16), at 18.1 at width 128 and 16.1–17.0 at 256. Its
best validation NLL came within 80–804 likelihood steps on every run with the rate 0.03 or the
hand-tuned one, hence at most 250 epochs there (1,001 steps instead of 5,000; from 0.01 the
best came at 804–1,001, the end of that cosine). There the cosine from 0.01 instead of 0.03
scored 15.93 instead of 18.09 (median of three seeds; the hand-tuned settings: 17.03), and on
the 100,000-row ``miniboone_mixture`` its best NLL in a 180-s race was 0.74–1.04 nats lower
(three seeds).
Above d = 16 the steps get cheaper: at d = 43 (width 128, batch 1024, 6 RK4 steps) an exact
likelihood step takes 1.50 s and a one-probe one 0.26 s, and 100 Sinkhorn sweeps take 42 of a
warm-start step's 47 ms (20 sweeps: 16 ms). On the 43-d ``miniboone_mixture`` both together
reached the exact NLL the exact-trace recipe reached in 180 s 2.8× sooner (median of three
seeds; ``benchmarks/README.md``). Whitening the points in the flow's chain (x = μ + L x̃, L the
Cholesky factor of their covariance) lets the flow start from the data's Gaussian fit: there
the recipe then reached BayesFlow flow matching's best NLL 2.8× sooner than BayesFlow on each
of three seeds and ended 0.6 nats lower, where with diagonal scaling it took as long (1.0×,
median). It needs a well-conditioned covariance: nearly collinear columns (a condition number
of the correlations above 1e6; MINIBOONE's is about 1e3) get the diagonal scaling instead.
It also needs rows: on MINIBOONE's 2,923 rows, whose columns have spiky, heavy-tailed
marginals, whitening cost 2.2 nats (19.21 against 17.03, settings otherwise equal), so the
recipe whitens only with 20 training rows per covariance entry (18,920 at d = 43).
The standardized points have a standard deviation of 1, or 2 for 2-D points that a Gaussian
does not describe. The toy sets' own spread is 1.4–2.3, where the 2-D recipe was tuned;
standardized to 1, ``8gaussians``, ``circles``, ``pinwheel`` and ``rings`` as files ended
0.2–1.2 nats above their tuned runs, and within 0.025 at 2 (median of three seeds); at 2, as
files, 9 of the 10 built-in 2-D sets end within 0.05 of their tuned runs or below them
(``checkerboard``: 0.085 above; both with the cosine over 2,000 steps;
``benchmarks/README.md``). On a
Gaussian table, where the standardized start is already the answer, 2 makes the flow learn a
contraction by 2, and 100k samples then missed the data's mean by 1.3 % of its spread after
the full recipe (within 1 % at 1). :func:`gaussian_gap` tells them apart: a kernel estimate
beats the Gaussian fit on held-out rows by 0.09–0.91 nats per point on the ten built-in 2-D sets,
and by −0.04 to −0.12 (it loses) on Gaussian tables of 1,000 rows or more.
Any setting given as a flag or in a config file wins over the rule.
"""

import math

import numpy as np

from tfotflow.callbacks import WEIGHT_CLIP
from tfotflow.datasets.mixture import Mixture

# Above this condition number of the points' correlation matrix the recipe does not whiten.
MAX_WHITENING_CONDITION = 1e6
# Above d = 16 the recipe whitens only with this many training rows per covariance entry.
ROWS_PER_COVARIANCE_ENTRY = 20
# Above d = 16 the likelihood steps pass over the training rows at most this many times.
MAX_EPOCHS = 250


def whitenable(points):
    """Whether whitening ``points`` [n, d] is well posed: their correlation matrix is positive
    definite with a condition number of at most :data:`MAX_WHITENING_CONDITION`.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1000, 3))
    >>> bool(whitenable(x)), bool(whitenable(np.column_stack([x, x[:, 0] + x[:, 1]])))
    (True, False)
    """
    x = np.asarray(points, np.float64)
    if x.ndim != 2 or len(x) <= x.shape[1]:
        return False
    spread = x.std(axis=0)
    if np.any(spread == 0):
        return False
    eigenvalues = np.linalg.eigvalsh(np.corrcoef(x, rowvar=False).reshape(x.shape[1], -1))
    return eigenvalues[0] > 0 and eigenvalues[-1] / eigenvalues[0] <= MAX_WHITENING_CONDITION


def gaussian_gap(points, *, rows=4000, seed=0):
    """How much better, in nats per point, a kernel density estimate explains ``points``
    [n, d] than their Gaussian fit does: the mean held-out log-density of a Gaussian kernel
    estimate (Scott's bandwidth, on standardized columns) less that of the Gaussian fit, both
    fitted on half of up to ``rows`` rows drawn with ``seed`` and scored on the other half
    (each a :class:`tfotflow.datasets.mixture.Mixture`: of one component, and of one per
    row).
    Near 0 or below for Gaussian points (the kernel estimate's own error); large for
    multimodal or curved ones.

    >>> rng = np.random.default_rng(0)
    >>> gaussian = rng.normal(size=(4000, 2))
    >>> angle = rng.integers(8, size=4000) * np.pi / 4
    >>> modes = np.column_stack([np.cos(angle), np.sin(angle)]) * 2 + 0.1 * gaussian
    >>> bool(gaussian_gap(gaussian) < 0.05), bool(gaussian_gap(modes) > 1)
    (True, True)
    """
    x = np.asarray(points, np.float64)
    x = x[np.random.default_rng(seed).permutation(len(x))[:rows]]
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    fit, held_out = x[: len(x) // 2], x[len(x) // 2 :]
    n, d = fit.shape
    covariance = np.cov(fit, rowvar=False, bias=True).reshape(d, d)
    gaussian = Mixture([1.0], fit.mean(axis=0)[None], np.linalg.cholesky(covariance)[None])
    bandwidth = n ** (-1.0 / (d + 4))  # Scott's rule, unit deviations
    kernels = Mixture(np.full(n, 1.0 / n), fit, np.broadcast_to(bandwidth * np.eye(d), (n, d, d)))
    return float(np.mean(kernels.log_prob(held_out)) - np.mean(gaussian.log_prob(held_out)))


def potential_weights(width, inputs, num_layers=2):
    """The potential's weights: K_0 [inputs, m], the K_i [m, m], the biases, w, and A (rank
    10): about m · inputs + (num_layers − 1) · m² for inputs = d + k + 1."""
    rank = min(10, inputs)
    return (
        width * inputs
        + (num_layers - 1) * width * width
        + num_layers * width
        + width
        + (rank * inputs + inputs + 1)
    )


# Above this gap (nats per point, :func:`gaussian_gap`) 2-D points get a spread of 2.
MULTIMODAL_GAP = 0.05


def recipe(dim, num_rows, condition_dim=0, *, whitenable=True, gaussian_gap=None):
    """The run settings for data of dimension ``dim`` with ``num_rows`` training rows (and
    conditions of width ``condition_dim``), by the rule of this module.

    Args:
        dim: d, ≥ 1.
        num_rows: the training split's rows n, ≥ 1.
        condition_dim: k, ≥ 0. Defaults to 0.
        whitenable: whether the training points' covariance is well conditioned
            (:func:`whitenable`). Defaults to True.
        gaussian_gap: for d ≤ 2, :func:`gaussian_gap` of the training points; None (the
            default) counts as Gaussian.

    Returns:
        A dict of run settings (the keys of a run's ``config.json``).

    >>> settings = recipe(2, 88_000)
    >>> settings["width"], settings["iterations"], settings["batch_size"]
    (32, 2000, 1024)
    >>> settings = recipe(10, 8_000, condition_dim=10)
    >>> settings["width"], settings["iterations"], settings["batch_size"]
    (16, 2795, 1024)
    >>> recipe(43, 29_556)["width"], recipe(43, 29_556)["num_steps"]
    (128, 6)
    >>> settings = recipe(43, 2_923)
    >>> settings["width"], settings["iterations"], settings["normalization"]
    (128, 1001, 'diagonal')
    >>> recipe(2, 88_000)["learning_rate"], settings["learning_rate"]
    (0.03, 0.01)
    >>> recipe(2, 88_000)["normalization"], recipe(43, 29_556)["normalization"]
    ('diagonal', 'whiten')
    >>> recipe(43, 29_556, whitenable=False)["normalization"]
    'diagonal'
    >>> recipe(2, 88_000)["weight_clip"], recipe(10, 8_000, condition_dim=10)["weight_clip"]
    (None, 1.5)
    >>> recipe(2, 88_000, gaussian_gap=0.9)["spread"], recipe(2, 88_000)["spread"]
    (2.0, 1.0)
    """
    inputs = dim + condition_dim
    small = dim <= 16  # above, real-dimension settings: cheaper steps, the cap by values, …
    width = 32 if inputs <= 16 else 64 if inputs <= 32 else 128 if inputs <= 64 else 256
    max_weights = num_rows / 4 if small else num_rows * dim / 4
    while width > 16 and potential_weights(width, inputs + 1) > max_weights:
        width //= 2
    num_steps = 4 if small else 6
    batch_size = max(1, min(1024, num_rows // 4))
    iterations = min(5000, max(2000, round(1250 * math.sqrt(dim / 2))))
    if not small:
        iterations = min(iterations, round(MAX_EPOCHS * num_rows / batch_size))
    covariance_entries = dim * (dim + 1) / 2  # what whitening estimates: it needs rows to spare
    enough_rows = num_rows >= ROWS_PER_COVARIANCE_ENTRY * covariance_entries
    whiten = not small and whitenable and enough_rows
    return {
        "width": width,
        "num_layers": 2,
        "alpha": [1.0, 30.0, 1.0],
        "num_steps": num_steps,
        "eval_num_steps": 2 * num_steps,
        "trace": "exact" if small else "hutchinson",
        "normalization": "whiten" if whiten else "diagonal",
        "batch_size": batch_size,
        "iterations": iterations,
        "learning_rate": 0.03 if small else 0.01,
        "schedule": "cosine",
        "validate_every": max(1, math.ceil(iterations / 5)),
        "warm_start": 1000,
        "warm_start_batch_size": min(256, num_rows),
        "warm_start_learning_rate": 0.02,
        "warm_start_sinkhorn_iterations": 100 if small else 20,
        "weight_clip": None if dim <= 2 else WEIGHT_CLIP,
        "spread": 2.0 if dim <= 2 and (gaussian_gap or 0.0) > MULTIMODAL_GAP else 1.0,
    }
