"""The race problems: each data set's contenders, their settings, batches and budgets.

:data:`PROBLEMS` holds the named sets' problems; the generalization suite's sets
(:mod:`tfotflow.bench.suite`) get theirs from their dimension (:func:`suite_problem`), and
:func:`load_problem` returns a named set's data with its problem.
"""

import dataclasses
import pathlib

from tfotflow import datasets
from tfotflow.bench import suite
from tfotflow.datasets.files import from_file

# Each problem: its contenders' settings, keyed by name ("otflow…", "ffjord", "bayesflow_fm…").
# OT-Flow's are overrides of the settings ``tfotflow train`` gives the data set ("otflow": none,
# the user's path); the peers' are their constructors' arguments. ``batch``: the peers' batch
# sizes (OT-Flow's is its settings'), and every contender's name; ``budgets``: training seconds.
PROBLEMS = {
    # The toy sets: tfotflow's toy preset (the quick start's); "otflow_warm300": 300 warm-start
    # steps instead of 1,000; "otflow_long": those, then a cosine over 2,500 likelihood steps.
    # FFJORD's toy field width with a matched depth, batch and learning rate from FFJORD's toy
    # recipe; BayesFlow's flow matching with the same widths and its usual batch and rate.
    "8gaussians": dict(
        otflow={},
        otflow_warm300={"warm_start": 300},
        otflow_long={"warm_start": 300, "iterations": 2500},
        ffjord=dict(hidden=64, learning_rate=1e-3),
        bayesflow_fm=dict(widths=(64, 64), learning_rate=1e-3),
        batch=dict(
            otflow=None, otflow_warm300=None, otflow_long=None, ffjord=100, bayesflow_fm=256
        ),
        dtype="float32",
        # The same wall budget for every contender; OT-Flow's settings end their steps
        # sooner (its curve then ends).
        budgets=dict.fromkeys(
            ("otflow", "otflow_warm300", "otflow_long", "ffjord", "bayesflow_fm"), 300.0
        ),
        # Raced only when named.
        variants=("otflow_warm300", "otflow_long"),
        # Scored on 5,000 validation and 5,000 test rows (each peer's exact score of 10,000
        # took as long as a few seconds of its training at every point of a dense curve).
        test_size=5_000,
    ),
    # OT-Flow's MINIBOONE preset (the paper's width 256, α = (1, 100, 15), 6 steps, batch 2000)
    # with a 3,000-step warm start, the one-probe trace in training and the rate 0.01; FFJORD
    # and BayesFlow with fields of about the same parameter count, FFJORD's tabular batch.
    "miniboone": dict(
        otflow=dict(learning_rate=0.01, warm_start=3000, trace="hutchinson"),
        ffjord=dict(hidden=None, learning_rate=1e-3),
        bayesflow_fm=dict(widths=(224, 224), learning_rate=1e-3),
        batch={"otflow": None, "ffjord": 1000, "bayesflow_fm": 512},
        dtype="float32",
        budgets={"otflow": 1800.0, "ffjord": 1800.0, "bayesflow_fm": 1800.0},
        # A fixed 1,000 of the 3,648 test points: the peers' exact-trace scores at d = 43 take
        # one Jacobian row per dimension at every solver stage.
        test_size=1000,
    ),
}
PROBLEMS["checkerboard"] = PROBLEMS["8gaussians"]  # the same settings on the other toy set
# The real-dimension set with an exact density (d = 43, 100,000 training rows), 180 s each:
# OT-Flow with the settings a 100,000-row, 43-column set gets ("otflow": whitened, the cosine
# from 0.01, the one-probe trace in training, 20 Sinkhorn sweeps); from 0.03 ("otflow_03"),
# also with diagonal scaling ("otflow_fast"), also with the exact trace and 100 sweeps
# ("otflow_exact"), and whitened from 0.03 over the 600 likelihood steps that fit
# ("otflow_tuned"). FFJORD at OT-Flow's parameter count (first seed only unless named: its
# exact scores are slow); BayesFlow's flow matching with MINIBOONE's widths (224-224, no
# dropout, Adam 1e-3, batch 512) and at its defaults. Scored exactly on 1,000 test rows.
_MIXTURE_FAST = {"learning_rate": 0.03, "normalization": "diagonal"}
_MIXTURE_BATCH = {
    "otflow": None,
    "otflow_03": None,
    "otflow_fast": None,
    "otflow_exact": None,
    "otflow_tuned": None,
    "ffjord": 1000,
    "bayesflow_fm": 512,
    "bayesflow_fm_defaults": 32,
}
PROBLEMS["miniboone_mixture"] = dict(
    otflow={},
    otflow_03={"learning_rate": 0.03},
    otflow_fast=_MIXTURE_FAST,
    otflow_exact={**_MIXTURE_FAST, "trace": "exact", "warm_start_sinkhorn_iterations": 100},
    otflow_tuned={"learning_rate": 0.03, "iterations": 600},
    ffjord=dict(hidden=None, learning_rate=1e-3),
    bayesflow_fm=dict(widths=(224, 224), learning_rate=1e-3),
    bayesflow_fm_defaults=dict(defaults=True),
    batch=_MIXTURE_BATCH,
    first_seed_only=("ffjord",),
    variants=("otflow_03", "otflow_fast", "otflow_exact", "otflow_tuned"),
    # Exact scores at d = 43 trace one Jacobian row per dimension: the variants are raced only.
    matched_accuracy=("otflow", "ffjord", "bayesflow_fm"),
    dtype="float32",
    budgets=dict.fromkeys(_MIXTURE_BATCH, 180.0),
    test_size=1000,
)
# Conditional sets: OT-Flow with the data set's recommended settings against BayesFlow's flow
# matching with the same conditions (FFJORD takes none), as on the 2-D toys unless the set
# says otherwise.
_CONDITIONAL = dict(
    widths=(64, 64),
    budgets={"otflow": 120.0, "bayesflow_fm": 300.0},
    test_size=10_000,
    num_train=100_000,
)
_CONDITIONAL_SETS = {
    "rotating_gaussians": _CONDITIONAL,
    "banana": _CONDITIONAL,
    # The posterior is learned from 10,000 simulated (θ, x) pairs and scored on 2,000 held-out
    # ones: BayesFlow's exact score (one Jacobian row per dimension) took about a minute on
    # 10,000 at 32 fifth-order steps.
    "linear_gaussian": dict(
        widths=(128, 128),
        budgets={"otflow": 180.0, "bayesflow_fm": 180.0},
        test_size=2_000,
        num_train=10_000,
    ),
}
for _name, _set in _CONDITIONAL_SETS.items():
    PROBLEMS[_name] = dict(
        otflow={},
        bayesflow_fm=dict(widths=_set["widths"], learning_rate=1e-3),
        batch={"otflow": None, "bayesflow_fm": 256},
        dtype="float32",
        budgets=_set["budgets"],
        test_size=_set["test_size"],
        num_train=_set["num_train"],
    )
# On the linear-Gaussian posterior, the variants, raced when named: the points as they come,
# without the linear-Gaussian start ("otflow_identity"), the same with 300 warm-start steps
# ("otflow_warm300"), and BayesFlow at its defaults (as on `miniboone_mixture`: 100 epochs of
# batch 32, 31,300 steps).
_LINEAR = PROBLEMS["linear_gaussian"]
_IDENTITY = {"standardize": False}
_LINEAR.update(
    otflow_identity=_IDENTITY,
    otflow_warm300={**_IDENTITY, "warm_start": 300},
    bayesflow_fm_defaults=dict(defaults=True),
    batch={
        **_LINEAR["batch"],
        "otflow_identity": None,
        "otflow_warm300": None,
        "bayesflow_fm_defaults": 32,
    },
    budgets=dict(
        otflow=60.0,
        otflow_identity=60.0,
        otflow_warm300=90.0,
        bayesflow_fm=180.0,
        bayesflow_fm_defaults=240.0,
    ),
    variants=("otflow_identity", "otflow_warm300", "bayesflow_fm_defaults"),
    matched_accuracy=("otflow", "bayesflow_fm"),
)

# The generalization suite (tfotflow.bench.suite): a table of 100,000 training rows raced as
# `tfotflow train FILE` runs it, against BayesFlow's flow matching at its defaults (the network
# and offline fit `FlowMatching()` gives a user) and FFJORD at OT-Flow's parameter count, with
# wall budgets sized to two cores. The variants, raced when named: the rule's likelihood main
# phase ("otflow_likelihood", as it chooses for small tables); its flow-matching main phase
# with five layers ("otflow_fm_deep") or the OT coupling's 20 Sinkhorn sweeps
# ("otflow_fm_ot"); the likelihood path with a cosine over 3,000 or 4,000 likelihood steps
# ("otflow_steps3000", "otflow_steps4000"), twice the width ("otflow_wide") or 2 RK4 steps
# ("otflow_rk2", doubled by the solver-error control when their error exceeds its tolerance);
# batches of 256 over a cosine of 6,000 steps from the rule's rate or from 0.01
# ("otflow_batch256", "otflow_batch256_rate01").
SUITE_BUDGETS = {4: 120.0, 16: 300.0, 64: 900.0}
SUITE_VARIANTS = {
    "otflow_likelihood": {"main_phase": "likelihood"},
    "otflow_fm_deep": {"num_layers": 5},
    "otflow_fm_ot": {"warm_start_coupling": "ot", "warm_start_sinkhorn_iterations": 20},
    "otflow_steps3000": {"main_phase": "likelihood", "iterations": 3000},
    "otflow_steps4000": {"main_phase": "likelihood", "iterations": 4000},
    "otflow_wide": {"main_phase": "likelihood", "width": 64},
    "otflow_rk2": {"main_phase": "likelihood", "num_steps": 2, "eval_num_steps": 4},
    "otflow_batch256": {"main_phase": "likelihood", "batch_size": 256, "iterations": 6000},
    "otflow_batch256_rate01": {
        "main_phase": "likelihood",
        "batch_size": 256,
        "iterations": 6000,
        "learning_rate": 0.01,
    },
}


def suite_problem(dim):
    """The race of a generalization-suite set of dimension ``dim``."""
    budget = SUITE_BUDGETS.get(dim, max(SUITE_BUDGETS.values()))
    batch = {
        "otflow": None,
        **dict.fromkeys(SUITE_VARIANTS),
        "bayesflow_fm_defaults": 32,
        "ffjord": 1000,
    }
    return dict(
        otflow={},
        **SUITE_VARIANTS,
        bayesflow_fm_defaults=dict(defaults=True),
        ffjord=dict(hidden=None, learning_rate=1e-3),
        batch=batch,
        dtype="float32",
        budgets=dict.fromkeys(batch, budget),
        variants=tuple(SUITE_VARIANTS),
        matched_accuracy=("otflow", "bayesflow_fm_defaults"),
        test_size=5_000 if dim <= 16 else 2_000,
    )


def load_problem(name, *, quick=False, data_dir=None):
    """(data, problem) of a registered toy set, or of a generalization-suite set named by
    :func:`tfotflow.bench.suite.name` (its file written under ``data_dir`` once, split as
    ``tfotflow train FILE`` splits it, its true density known)."""
    parsed = suite.parse(name)
    if parsed is None:
        size = 2000 if quick else PROBLEMS[name].get("num_train", 100_000)
        data = datasets.load(name, num_train=size, num_val=10_000, num_test=10_000)
        return data, PROBLEMS[name]
    folder = pathlib.Path(data_dir or datasets.default_data_dir())
    rows = 2_500 if quick else suite.ROWS
    data = from_file(suite.write(folder / f"suite_{rows}_rows", *parsed, rows=rows))
    exact = suite.make(*parsed).log_prob  # the true density: the race reports its test NLL
    metadata = dataclasses.replace(data.metadata, log_prob=exact)
    return dataclasses.replace(data, metadata=metadata), suite_problem(parsed[1])


def quick_problem(problem):
    """``problem`` made small for a check of the harness: OT-Flow at width 8 with 2 RK4 steps
    and 20 warm-start steps, every batch 256, 500 test rows, 2 s of training each."""
    small = dict(width=8, num_steps=2, warm_start=20)
    return {
        **problem,
        **{n: {**problem[n], **small} for n in problem["batch"] if n.startswith("otflow")},
        "batch": {name: 256 for name in problem["batch"]},
        "test_size": 500,
        "budgets": {name: 2.0 for name in problem["budgets"]},
    }
