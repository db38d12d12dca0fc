"""The loaders behind tfotflow's own entry points in ``tfotflow.datasets``.

Each is ``loader(*, seed, data_dir, **options) -> Dataset``, the same contract a third-party
plugin follows.
"""

import functools

import numpy as np

from tfotflow.datasets import conditional, tabular, toy
from tfotflow.datasets.core import Dataset, Metadata, split_streams
from tfotflow.settings import TOY_PRESET, WEIGHT_CLIP

TOY_CITATION = (
    "Toy distributions of FFJORD (Grathwohl et al., ICLR 2019) as used by OT-Flow "
    "(Onken et al., AAAI 2021); generated, no licence needed."
)
# The paper's 2-D model (width 32, α = (1, 30, 1)) with the rule's settings for the toy sets'
# size (tfotflow.settings.TOY_PRESET): a flow-matching warm start, then maximum likelihood in
# float32 with 4 RK4 steps (8 in evaluation), batch 1024 and a cosine-decayed rate. The paper's
# own recipe was float64, 8 steps, batch 5000.
TOY_HYPERPARAMETERS = TOY_PRESET


@functools.cache
def _toy_entropy(name):
    if name == "checkerboard":
        return float(np.log(32.0))  # uniform on 8 squares of area 4
    return toy.entropy(toy.LOG_PROBS[name])


def _toy_loader(
    name,
    *,
    seed=0,
    data_dir=None,
    num_train=100_000,
    num_val=10_000,
    num_test=20_000,
    dtype="float64",
):
    """A generated set: a 2-D toy (points) or a conditional one (points and conditions)."""
    del data_dir
    streams = split_streams(seed, num_train, num_val, num_test)
    if name in conditional.GENERATORS:
        return _conditional_splits(name, streams, dtype)
    splits = [np.asarray(toy.GENERATORS[name](rng, n), dtype=dtype) for rng, n in streams]
    log_prob = toy.LOG_PROBS.get(name)
    metadata = Metadata(
        name=name,
        dim=2,
        description=toy.DESCRIPTIONS[name],
        citation=TOY_CITATION,
        hyperparameters=dict(TOY_HYPERPARAMETERS),
        log_prob=log_prob,
        entropy=_toy_entropy(name) if log_prob is not None else None,
    )
    return Dataset(*splits, metadata=metadata)


# The toy recipe, and for the 10-D posterior a wider potential with more likelihood steps.
CONDITIONAL_HYPERPARAMETERS = {
    "rotating_gaussians": dict(TOY_HYPERPARAMETERS),
    "banana": dict(TOY_HYPERPARAMETERS),
    # From its 10,000 simulated pairs a narrow potential generalizes best, wider ones overfit;
    # its weights stay clipped, which keeps training from stalling; standardized, the flow
    # starts from the linear-Gaussian fit of p(θ | x) (OTFlowModel.adapt), the posterior's own
    # family (benchmarks/README.md, "linear-Gaussian posterior").
    "linear_gaussian": dict(
        TOY_HYPERPARAMETERS,
        width=16,
        batch_size=500,
        iterations=4000,
        weight_clip=WEIGHT_CLIP,
        standardize=True,
    ),
}


def _conditional_splits(name, streams, dtype):
    """The points and conditions of each split of conditional set ``name``, and its
    metadata."""
    points, conditions = {}, {}
    for split, (rng, n) in zip(("train", "val", "test"), streams):
        x, y = conditional.GENERATORS[name](rng, n)
        points[split], conditions[split] = x.astype(dtype), y.astype(dtype)
    dim, condition_dim = conditional.DIMS[name]
    metadata = Metadata(
        name=name,
        dim=dim,
        description=conditional.DESCRIPTIONS[name],
        citation=CONDITIONAL_CITATION[name],
        hyperparameters=dict(CONDITIONAL_HYPERPARAMETERS[name]),
        log_prob=conditional.LOG_PROBS[name],
        entropy=_conditional_entropy(name),
        condition_dim=condition_dim,
    )
    return Dataset(**points, metadata=metadata, conditions=conditions)


@functools.cache
def _conditional_entropy(name):
    return conditional.conditional_entropy(name)


CONDITIONAL_CITATION = {
    "rotating_gaussians": "Conditional toy density of tfotflow; generated, no licence needed.",
    "banana": "Conditional toy density of tfotflow; generated, no licence needed.",
    "linear_gaussian": (
        "The linear-Gaussian simulation-based-inference task with a closed-form posterior "
        "(e.g. Wang, Baptista, Marzouk, Ruthotto, Verma, arXiv:2310.16975); generated."
    ),
}

eight_gaussians = functools.partial(_toy_loader, "8gaussians")
checkerboard = functools.partial(_toy_loader, "checkerboard")
swissroll = functools.partial(_toy_loader, "swissroll")
circles = functools.partial(_toy_loader, "circles")
moons = functools.partial(_toy_loader, "moons")
pinwheel = functools.partial(_toy_loader, "pinwheel")
two_spirals = functools.partial(_toy_loader, "2spirals")
rings = functools.partial(_toy_loader, "rings")

rotating_gaussians = functools.partial(_toy_loader, "rotating_gaussians")
banana = functools.partial(_toy_loader, "banana")
# A simulation budget, as in simulation-based inference: 10,000 (θ, x) pairs unless asked.
linear_gaussian = functools.partial(_toy_loader, "linear_gaussian", num_train=10_000)

power = functools.partial(tabular.load_tabular, "power")
gas = functools.partial(tabular.load_tabular, "gas")
hepmass = functools.partial(tabular.load_tabular, "hepmass")
miniboone = functools.partial(tabular.load_tabular, "miniboone")
bsds300 = functools.partial(tabular.load_tabular, "bsds300")
