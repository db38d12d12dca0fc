"""Every setting of a training run: its default, the rule that picks settings from the data,
and the building and checking of a run's configuration. Imports no TensorFlow.

A run's ``config.json`` holds ``model`` (:data:`MODEL_KEYS`), ``train`` (:data:`TRAIN_KEYS`)
and, for a latent flow, ``latent`` (:data:`LATENT_KEYS`). Their values come from, in order of
precedence: a flag or a config file, the data set's recommended settings (a registered set's
preset) or, for a set that recommends none (a user's file), :func:`recipe`, then
:data:`DEFAULTS`. The model's, the trainer's and the warm start's signatures take their
defaults from :data:`DEFAULTS`, so each default is written here once.

The rule of :func:`recipe`, from the dimension d, the condition width k and the training
rows n:

```none
main phase       flow matching of Φ alone for d ≥ 8 and n ≥ 10,000, with these settings;
                 else maximum likelihood (the rows below):
  warm_start     100,000 steps of batches of min(256, n) rows (at least 250 passes over
                 100,000 rows), Adam from 0.001 cosine-decayed to 0, the independent
                 coupling, no weight clip, validated on the flow-matching loss 20 times
                 (stopping after 5 without improvement, the best weights kept)
  iterations     0
  width          256, halved (not below 16) while the weights exceed n · d / 4
  time_features  4: Φ reads cos(jπt) and sin(jπt), j = 1..4, besides t
  num_steps      8 (and eval_num_steps), doubled at the end while their error exceeds 0.01
                 nats
width            32 for d + k ≤ 16, 64 for ≤ 32, 128 for ≤ 64, 256 above; halved (not below
                 16) while the potential's weights exceed n / 4 (for d ≤ 16; above, n · d / 4)
num_layers       2
alpha            (1, 30, 1)                       (α_L, α_C, α_R)
num_steps        4 for d ≤ 16, else 6             (RK4 steps in training)
eval_num_steps   2 · num_steps
trace            exact for d ≤ 16, else hutchinson (training steps only; scores stay exact)
normalization    diagonal for d ≤ 16, else whiten, unless n < 20 · d(d + 1)/2 (20 rows per
                 covariance entry) or the training points' correlation matrix has a condition
                 number above 1e6 (then diagonal)
batch_size       min(1024, n // 4), at least 1
iterations       (likelihood main phase) 1250 · √(d / 2), within [2000, 5000]; above d = 16 at
                 most 250 epochs (250 · n / batch_size)
learning_rate    0.03 for d ≤ 16, else 0.01, cosine-decayed to 0 over the iterations
warm_start       (likelihood main phase) 1000 flow-matching steps of min(256, n) points at rate
                 0.02, with 100 Sinkhorn sweeps of the coupling for d ≤ 16, else 20
weight_clip      none for d ≤ 2, else 1.5          (every weight, before each step)
spread           2 for d ≤ 2 if a kernel estimate beats the Gaussian fit by over 0.05 nats per
                 point (gaussian_gap), else 1      (the standardized points' deviation)
validate_every   iterations / 5
```

Why each rule holds, in brief (the measurements are in ``benchmarks/README.md``, "The recipe
for a user's file", "Flow matching of the potential as the main phase", and the CHANGELOG):

- A likelihood step solves the ODE with the trace at every RK4 stage and the adjoint back,
  tens of gradient evaluations whose cost grows with d; a flow-matching step is one gradient
  of Φ and its backprop (30× cheaper at d = 16, width 256). Regressing −∇Φ/α_L onto z − x₀
  has its optimum at the gradient field that moves the interpolation's marginals, so the
  potential loses nothing by training this way, and the cheap steps afford a wide potential;
  the flow-matching loss of the validation rows selects the weights, as the validation NLL
  does for maximum likelihood. But flow matching needs many steps whatever the rows and d:
  at d = 16 with 100,000 rows it ended 0.34 nats below the likelihood path in the same 300 s;
  at d = 4 the likelihood path's cheap steps ended 0.36 nats below it in 120 s, and on a
  table of 2,923 rows at d = 43 the likelihood path ended 1.8 nats below its 50,000 steps.
  The thresholds (d = 8, 10,000 rows) lie between these measurements; none was measured in
  between.
- A potential reading t as one input column can only shift each unit's ridge with time;
  four Fourier pairs of t let the field change shape along the path, as the time embedding
  of flow-matching networks does. With flow matching as the main phase they ended 0.19 nats
  lower at d = 16 and 0.37 at d = 64 in the same time. The field then bends faster in t:
  at d = 16 each row's 8-step log-density is off by 0.019 nats on average (0.004 with t
  alone), so the closing check doubles the solve to 16 steps, a cost paid when scoring,
  not in training, where flow matching solves no ODE.
- The potential widens with d and trains longer as √d, but never has more weights than a
  quarter of the training rows (above d = 16, of their values): wider potentials overfit
  small tables.
- Without the weight clip the 2-D potential reaches the weights it needs; above d = 2 the clip
  keeps likelihood training from stalling.
- Above d = 16 the steps get cheaper (the one-probe trace in training, 20 Sinkhorn sweeps), the
  rate starts lower, and small tables train for at most 250 passes.
- Whitening (x = μ + L x̃ in the flow's chain) starts the flow from the data's Gaussian fit,
  but needs a well-conditioned covariance and rows to estimate it.
- 2-D points that a Gaussian does not describe are standardized to a deviation of 2, the toy
  sets' own scale; Gaussian ones to 1, where the standardized start is already the answer.
"""

import math
import os
import pathlib
import warnings

import numpy as np

from tfotflow import datasets
from tfotflow.checks import (
    check_alpha,
    check_choice,
    check_float_dtype_name,
    check_int,
    check_positive_float,
)
from tfotflow.datasets.mixture import Mixture

# ------------------------------------------------------------------------- named constants

# The OT-Flow reference's bound on every weight, before each training step.
WEIGHT_CLIP = 1.5
# Nats of a solve's discretization error (mean |log p at n RK4 steps − at 2n|) above which
# training doubles its steps and scores are warned about.
TRUST_NATS = 0.01
NORMALIZATIONS = ("diagonal", "whiten")
TRACES = ("exact", "hutchinson")
COUPLINGS = ("ot", "independent")  # the flow-matching pairs: optimal transport or none
WARM_START_SCHEDULES = ("constant", "cosine")  # the flow-matching rate over its steps
SCHEDULES = ("plateau", "cosine")
ARCHITECTURES = ("dense", "conv")  # a latent flow's autoencoder
# Above this condition number of the points' correlation matrix the recipe does not whiten.
MAX_WHITENING_CONDITION = 1e6
# Above d = 16 the recipe whitens only with this many training rows per covariance entry.
ROWS_PER_COVARIANCE_ENTRY = 20
# Above d = 16 the likelihood steps pass over the training rows at most this many times.
MAX_EPOCHS = 250
# Above this gap (nats per point, :func:`gaussian_gap`) 2-D points get a spread of 2.
MULTIMODAL_GAP = 0.05
# The main phase is flow matching of Φ from MATCHING_MIN_DIM dimensions with at least
# MATCHING_MIN_ROWS training rows; else maximum likelihood.
MATCHING_MIN_DIM = 8
MATCHING_MIN_ROWS = 10_000
MAIN_PHASES = ("likelihood", "flow_matching")
# The flow-matching main phase: its potential's width and Fourier pairs of t, batch rows,
# first rate, steps, and the RK4 steps of its solve.
MATCHING = {
    "width": 256,
    "time_features": 4,
    "batch_size": 256,
    "learning_rate": 0.001,
    "steps": 100_000,
    "num_steps": 8,
}

# ------------------------------------------------------------------------- the settings

MODEL_KEYS = (
    "width",
    "num_layers",
    "rank",
    "time_features",
    "alpha",
    "num_steps",
    "eval_num_steps",
    "dtype",
    "normalization",
    "trace",
)
TRAIN_KEYS = (
    "iterations",
    "batch_size",
    "learning_rate",
    "schedule",
    "validate_every",
    "patience",
    "warm_start",
    "warm_start_batch_size",
    "warm_start_learning_rate",
    "warm_start_sinkhorn_iterations",
    "warm_start_coupling",
    "warm_start_schedule",
    "solver_tolerance",
    "weight_clip",
    "spread",
    "standardize",
)
# A latent flow (tfotflow.latent): codes of an autoencoder trained first; latent_dim 0: none.
LATENT_KEYS = (
    "latent_dim",
    "autoencoder",
    "autoencoder_epochs",
    "autoencoder_batch_size",
    "autoencoder_learning_rate",
)
DEFAULTS = {
    # the potential Φ and its solve (tfotflow.OTFlowModel)
    "width": 32,
    "num_layers": 2,
    "rank": 10,
    "time_features": 0,  # Fourier pairs of t the potential reads besides t (0: the paper's)
    "alpha": (1.0, 30.0, 1.0),  # (α_L, α_C, α_R)
    "num_steps": None,  # None: the rule's (4 for d ≤ 16, else 6)
    "eval_num_steps": None,  # None: twice the rule's steps, or num_steps when that is given
    "dtype": "float32",
    "normalization": "diagonal",  # identity until adapted
    "trace": "exact",
    # maximum likelihood (tfotflow.training)
    "iterations": 1000,
    "batch_size": 1024,
    "learning_rate": 0.01,
    "schedule": "plateau",
    "validate_every": 50,
    "patience": 10,
    "solver_tolerance": TRUST_NATS,
    "weight_clip": WEIGHT_CLIP,
    # the flow-matching warm start (tfotflow.FlowMatching)
    "warm_start": 0,
    "warm_start_batch_size": 256,
    "warm_start_learning_rate": 0.02,
    "warm_start_sinkhorn_iterations": 100,
    "warm_start_coupling": "ot",  # or "independent": each point keeps its own normal draw
    "warm_start_schedule": "constant",  # or "cosine": decayed to 0 over the warm start
    # the points' standardization (tfotflow.OTFlowModel.adapt)
    "spread": 1.0,  # the flow's coordinates' deviation
    "standardize": False,  # a registered set's points as they come (files: always)
    # a latent flow's autoencoder (tfotflow.latent)
    "latent_dim": 0,
    "autoencoder": "conv",
    "autoencoder_epochs": 20,
    "autoencoder_batch_size": 128,
    "autoencoder_learning_rate": 0.002,
}
# The smallest value of every integer setting.
MINIMA = {
    "width": 1,
    "num_layers": 2,
    "rank": 1,
    "time_features": 0,
    "num_steps": 1,
    "eval_num_steps": 1,
    "iterations": 0,  # flow matching alone
    "batch_size": 1,
    "validate_every": 1,
    "patience": 1,
    "warm_start": 0,
    "warm_start_batch_size": 1,
    "warm_start_sinkhorn_iterations": 1,
    "latent_dim": 1,
    "autoencoder_epochs": 1,
    "autoencoder_batch_size": 1,
}


def check_normalization(normalization):
    """``normalization`` if it is one of :data:`NORMALIZATIONS` or None, else a ValueError."""
    if normalization is not None and normalization not in NORMALIZATIONS:
        raise ValueError(
            f"`normalization` must be one of {NORMALIZATIONS} or None. "
            f"Received: normalization={normalization!r}"
        )
    return normalization


def check_trace(trace):
    """``trace`` if it names a trace of :data:`TRACES`, else a ValueError naming it."""
    return check_choice("trace", trace, TRACES)


def check_schedule(schedule):
    """``schedule`` if it names a schedule of :data:`SCHEDULES`, else a ValueError naming it."""
    return check_choice("schedule", schedule, SCHEDULES)


def check_architecture(architecture, image_shape):
    """``architecture`` as one of :data:`ARCHITECTURES`, usable for ``image_shape``.

    Raises:
        ValueError: naming ``architecture`` (or ``image_shape``) and what was received.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"`autoencoder` must be one of {', '.join(ARCHITECTURES)}. "
            f"Received: autoencoder={architecture!r}"
        )
    if architecture == "conv" and (
        image_shape is None or len(image_shape) != 3 or image_shape[0] % 4 or image_shape[1] % 4
    ):
        raise ValueError(
            "`autoencoder`='conv' needs images (height, width, channels) with height and width "
            f"divisible by 4; use 'dense' for other data. Received: image_shape={image_shape!r}"
        )
    return architecture


# ------------------------------------------------------------------------- the rule


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
    row). Near 0 or below for Gaussian points (the kernel estimate's own error); large for
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


def potential_weights(width, inputs, num_layers=DEFAULTS["num_layers"]):
    """The potential's weights: K_0 [inputs, m], the K_i [m, m], the biases, w, and A (rank
    10): about m · inputs + (num_layers − 1) · m² for inputs = d + k + 1 + 2F (F Fourier
    pairs of t)."""
    rank = min(10, inputs)
    return (
        width * inputs
        + (num_layers - 1) * width * width
        + num_layers * width
        + width
        + (rank * inputs + inputs + 1)
    )


def recipe(dim, num_rows, condition_dim=0, *, whitenable=True, gaussian_gap=None, main_phase=None):
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
        main_phase: "likelihood" or "flow_matching" (:data:`MAIN_PHASES`), or None (the
            default) for the rule's: flow matching from d = 8 with at least 10,000 rows.

    Returns:
        A dict of run settings (the keys of a run's ``config.json``).

    >>> settings = recipe(2, 88_000)
    >>> settings["width"], settings["iterations"], settings["warm_start"]
    (32, 2000, 1000)
    >>> settings = recipe(16, 100_000)
    >>> settings["width"], settings["iterations"], settings["warm_start"]
    (256, 0, 100000)
    >>> recipe(4, 100_000)["iterations"], recipe(16, 9_000)["iterations"]
    (2000, 3536)
    >>> settings["warm_start_coupling"], settings["warm_start_learning_rate"]
    ('independent', 0.001)
    >>> settings["time_features"], recipe(4, 100_000)["time_features"]
    (4, 0)
    >>> recipe(43, 2_923)["width"], recipe(43, 2_923)["iterations"]
    (128, 1001)
    >>> recipe(16, 100_000, main_phase="likelihood")["width"]
    32
    >>> recipe(2, 88_000)["learning_rate"], recipe(43, 29_556)["learning_rate"]
    (0.03, 0.01)
    >>> recipe(2, 88_000)["normalization"], recipe(43, 29_556)["normalization"]
    ('diagonal', 'whiten')
    >>> recipe(43, 29_556, whitenable=False)["normalization"]
    'diagonal'
    >>> recipe(2, 88_000, gaussian_gap=0.9)["spread"], recipe(2, 88_000)["spread"]
    (2.0, 1.0)
    """
    inputs = dim + condition_dim
    small = dim <= 16  # above, real-dimension settings: cheaper steps, the cap by values, …
    if main_phase is None:
        plenty = dim >= MATCHING_MIN_DIM and num_rows >= MATCHING_MIN_ROWS
        main_phase = "flow_matching" if plenty else "likelihood"
    matching = check_choice("main_phase", main_phase, MAIN_PHASES) == "flow_matching"
    width = 32 if inputs <= 16 else 64 if inputs <= 32 else 128 if inputs <= 64 else 256
    width = MATCHING["width"] if matching else width
    time_features = MATCHING["time_features"] if matching else DEFAULTS["time_features"]
    max_weights = num_rows * dim / 4 if matching or not small else num_rows / 4
    while width > 16 and potential_weights(width, inputs + 1 + 2 * time_features) > max_weights:
        width //= 2
    num_steps = recipe_num_steps(dim)
    batch_size = max(1, min(1024, num_rows // 4))
    iterations = min(5000, max(2000, round(1250 * math.sqrt(dim / 2))))
    if not small:
        iterations = min(iterations, round(MAX_EPOCHS * num_rows / batch_size))
    covariance_entries = dim * (dim + 1) / 2  # what whitening estimates: it needs rows to spare
    enough_rows = num_rows >= ROWS_PER_COVARIANCE_ENTRY * covariance_entries
    whiten = not small and whitenable and enough_rows
    warm_batch = min(DEFAULTS["warm_start_batch_size"], num_rows)
    settings = {
        "width": width,
        "num_layers": DEFAULTS["num_layers"],
        "time_features": time_features,
        "alpha": list(DEFAULTS["alpha"]),
        "num_steps": num_steps,
        "eval_num_steps": 2 * num_steps,
        "trace": "exact" if small else "hutchinson",
        "normalization": "whiten" if whiten else "diagonal",
        "batch_size": batch_size,
        "iterations": iterations,
        "learning_rate": recipe_learning_rate(dim),
        "schedule": "cosine",
        "validate_every": max(1, math.ceil(iterations / 5)),
        "warm_start": 1000,
        "warm_start_batch_size": warm_batch,
        "warm_start_learning_rate": DEFAULTS["warm_start_learning_rate"],
        "warm_start_sinkhorn_iterations": DEFAULTS["warm_start_sinkhorn_iterations"]
        if small
        else 20,
        "weight_clip": None if dim <= 2 else WEIGHT_CLIP,
        "spread": 2.0 if dim <= 2 and (gaussian_gap or 0.0) > MULTIMODAL_GAP else 1.0,
    }
    if matching:  # flow matching alone, validated (tfotflow.training.flow_matching_phase)
        settings.update(
            num_steps=MATCHING["num_steps"],
            eval_num_steps=MATCHING["num_steps"],
            weight_clip=None,
            iterations=0,
            warm_start=MATCHING["steps"],
            warm_start_batch_size=min(MATCHING["batch_size"], num_rows),
            warm_start_learning_rate=MATCHING["learning_rate"],
            warm_start_coupling="independent",
            warm_start_schedule="cosine",
        )
    return settings


def recipe_num_steps(dim):
    """The rule's training RK4 steps: 4 for d ≤ 16, else 6."""
    return 4 if dim <= 16 else 6


def recipe_learning_rate(dim):
    """The rule's first rate of the cosine: 0.03 for d ≤ 16, else 0.01."""
    return 0.03 if dim <= 16 else 0.01


# The toy sets' preset: the rule for 2-D data of their 100,000 training rows (which a smaller
# ``num_train`` does not change), validated every 250 steps instead of 400.
TOY_ROWS = 100_000
TOY_PRESET = {**recipe(2, TOY_ROWS), "validate_every": 250}


# ------------------------------------------------------------------------- a run's config


def rule_for(points, condition_dim=0, *, main_phase=None):
    """The settings :func:`recipe` gives training points [n, d] (with conditions of width
    ``condition_dim``; ``main_phase`` None for the rule's), with the character it measures on
    them: :func:`whitenable`, and for d ≤ 2 :func:`gaussian_gap`."""
    points = np.asarray(points)
    dim = points.shape[1]
    gap = gaussian_gap(points) if dim <= 2 else None
    return recipe(
        dim,
        len(points),
        condition_dim,
        whitenable=whitenable(points),
        gaussian_gap=gap,
        main_phase=main_phase,
    )


def recommended_settings(data):
    """The data set's recommended settings, or, when it recommends none (a user's file), the
    settings :func:`recipe` chooses from its d, k and training rows. A data set that
    recommends no RK4 steps gets the rule's."""
    recommended = dict(data.metadata.hyperparameters)
    if not recommended:
        return rule_for(data.train, data.metadata.condition_dim)
    if "num_steps" not in recommended:
        steps = recipe_num_steps(data.metadata.dim)
        recommended.setdefault("eval_num_steps", 2 * steps)
        recommended["num_steps"] = steps
    return recommended


def build_config(
    dataset,
    *,
    recommended,
    overrides,
    seed,
    data_dir,
    options,
    source=None,
    unconditional=False,
    warn=None,
):
    """The full configuration: :data:`DEFAULTS` < the data set's ``recommended`` settings <
    ``overrides`` (None values are not overrides).

    ``source`` is ``Metadata.source`` of a data set read from a file: recorded, it reloads
    the same rows and split. ``unconditional``: model p(x) of a data set that comes with
    conditions (they are dropped). A ``latent_dim`` above 0 makes a latent flow, recorded
    under ``"latent"``. ``warn(message)`` (default: a ``UserWarning``) is told of recommended
    settings that are unknown (they are ignored)."""
    settings = dict(DEFAULTS)
    unknown = sorted(set(recommended) - set(settings))
    if unknown:
        warn = warn or (lambda message: warnings.warn(message, UserWarning, stacklevel=3))
        warn(
            f"data set {dataset!r} recommends unknown setting(s) {', '.join(unknown)}, which "
            f"are ignored; the settings are {', '.join(sorted(settings))}"
        )
    settings.update({k: v for k, v in recommended.items() if k in settings})
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if settings["eval_num_steps"] is None:
        settings["eval_num_steps"] = settings["num_steps"]
    alpha = settings["alpha"]
    if isinstance(alpha, (list, tuple)) and all(type(a) in (int, float) for a in alpha):
        settings["alpha"] = [float(a) for a in alpha]  # TOML's integers; others are refused
        # by check_config, naming `alpha`
    config = {
        "dataset": dataset,
        "seed": seed,
        "data_dir": None if data_dir is None else str(data_dir),
        "options": dict(options),
        "model": {key: settings[key] for key in MODEL_KEYS},
        "train": {key: settings[key] for key in TRAIN_KEYS},
    }
    if source is not None:
        config["source"] = dict(source)
    if unconditional:
        config["unconditional"] = True
    if settings["latent_dim"]:
        config["latent"] = {key: settings[key] for key in LATENT_KEYS}
    return config


def train_settings(config):
    """The run's training settings, with :data:`DEFAULTS` for those a run written before
    they existed lacks."""
    return {**{key: DEFAULTS[key] for key in TRAIN_KEYS}, **config["train"]}


def adapts(config):
    """Whether a new run sets its model's normalization from the training data
    (:meth:`tfotflow.OTFlowModel.adapt`): for data read from a file, whenever it whitens, and
    for a registered data set whose settings (or ``--standardize``) say ``standardize``; other
    registered sets keep the identity; a model built without normalization never."""
    normalization = config["model"].get("normalization")
    return normalization is not None and (
        "source" in config
        or "latent" in config
        or normalization == "whiten"
        or bool(config["train"].get("standardize"))
    )


def check_config(config, dim, condition_dim=0, image_shape=None):
    """Checks every model and training setting of ``config`` (for data of dimension ``dim``,
    conditions of width ``condition_dim`` and, for images, ``image_shape``) before anything is
    created.

    Raises:
        TypeError, ValueError: naming the first bad setting and its value; also when the
            weights and Adam's two moment estimates alone would need more than half of this
            machine's memory (a width typed with too many digits).
    """
    model, train, latent = config["model"], config["train"], config.get("latent", {})
    settings = {**model, **train, **latent}
    for key, minimum in MINIMA.items():
        if latent or key not in LATENT_KEYS:  # a run without a latent flow has none of these
            check_int(key, settings[key], minimum=minimum)
    for key in ("learning_rate", "warm_start_learning_rate", "autoencoder_learning_rate"):
        if latent or key not in LATENT_KEYS:
            check_positive_float(key, settings[key])
    for key in ("solver_tolerance", "weight_clip"):
        if settings.get(key):  # 0 or None (or a run from before the setting): never
            check_positive_float(key, settings[key])
    if not train["iterations"] and not train.get("warm_start"):
        raise ValueError(
            "`iterations`=0 (no maximum-likelihood steps) needs `warm_start` steps of flow "
            f"matching, or nothing trains. Received: warm_start={train.get('warm_start')!r}"
        )
    spread = check_positive_float("spread", settings.get("spread", DEFAULTS["spread"]))
    if spread != DEFAULTS["spread"] and not adapts(config):
        raise ValueError(
            f"`spread`={spread} has no effect: this run does not standardize its points (a "
            "registered data set, or normalization=None); pass `standardize` "
            "(--standardize) with a normalization"
        )
    if latent:
        check_architecture(latent["autoencoder"], image_shape)
        dim = latent["latent_dim"]
    if config.get("unconditional"):
        condition_dim = 0
    check_alpha(model["alpha"])
    check_float_dtype_name("dtype", model["dtype"])
    check_normalization(model["normalization"])
    check_trace(model["trace"])
    check_schedule(train["schedule"])
    complete = train_settings(config)  # a run from before these settings gets their defaults
    check_choice("warm_start_coupling", complete["warm_start_coupling"], COUPLINGS)
    check_choice("warm_start_schedule", complete["warm_start_schedule"], WARM_START_SCHEDULES)
    features = model.get("time_features", DEFAULTS["time_features"])
    width, inputs = model["width"], dim + condition_dim + 1 + 2 * features
    parameters = potential_weights(width, inputs, model["num_layers"])
    needed = 3 * parameters * np.dtype(model["dtype"]).itemsize  # weights, Adam's m and v
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > available / 2:
        raise ValueError(
            f"`width`={width} with num_layers={model['num_layers']} means {parameters:.3g} "
            f"weights, {needed / 2**30:.3g} GiB with Adam's state: more than half of this "
            f"machine's {available / 2**30:.3g} GiB"
        )


# ------------------------------------------------------------------------- a run's request


class RequestError(ValueError):
    """A request for a run is wrong; ``part`` names what is at fault: "dataset", "config"
    (the config file), "settings", "run_dir", "resume", "iterations" or "unconditional"."""

    def __init__(self, message, part):
        super().__init__(message)
        self.part = part


def read_config_file(path):
    """The settings of a TOML config file (``dataset`` may be one of them).

    Raises:
        RequestError: naming the file, when it is not UTF-8 TOML (part "config").
    """
    import tomllib

    try:
        return tomllib.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise RequestError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); TOML files are "
            "UTF-8",
            "config",
        ) from error
    except tomllib.TOMLDecodeError as error:
        raise RequestError(f"{path} is not valid TOML: {error}", "config") from error


def check_resume(run_dir, taken):
    """A resumed run takes its settings from its ``config.json``: ``taken``, the options also
    given (by name), must be empty.

    Raises:
        RequestError: naming them (part "resume").
    """
    if taken:
        raise RequestError(
            f"--resume continues {run_dir} with the settings in its config.json "
            f"(and --iterations, to train longer); it takes no {', '.join(taken)}",
            "resume",
        )


def check_request(dataset, *, file_options, file_settings=None, config_file=None):
    """Checks a new run's ``dataset`` (a registered name or an existing table file), the
    ``file_options`` given (``{name: value}``, None when not given: only a file takes them)
    and the keys of a config file's
    ``file_settings``; returns whether the dataset is a file. Imports no TensorFlow, so a
    command answers at once.

    Raises:
        RequestError: naming the part at fault.
    """
    unknown = set(file_settings or {}) - {"dataset", *MODEL_KEYS, *TRAIN_KEYS, *LATENT_KEYS}
    if unknown:
        known = ", ".join(sorted({"dataset", *MODEL_KEYS, *TRAIN_KEYS, *LATENT_KEYS}))
        raise RequestError(
            f"unknown setting(s) {', '.join(sorted(unknown))} in {config_file}; known: {known}",
            "config",
        )
    from_file = datasets.is_data_file(dataset)
    if from_file and not pathlib.Path(dataset).is_file():
        raise RequestError(f"no such file: {dataset}", "dataset")
    if not from_file and dataset not in datasets.names():
        raise RequestError(
            f"unknown dataset {dataset!r}; installed: {', '.join(datasets.names())}, or a "
            f"table file ({', '.join(datasets.files.SUFFIXES)})",
            "dataset",
        )
    misplaced = [name for name, value in file_options.items() if value is not None]
    if not from_file and misplaced:
        raise RequestError(
            f"{', '.join(misplaced)} read a table file; {dataset!r} is a registered data set",
            "dataset",
        )
    return from_file
