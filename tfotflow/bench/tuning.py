"""The races' tuning grid: each peer's settings chosen on a tuning set by validation NLL.

A race a sceptic accepts gives every contender the same tuning budget on a set that is never
reported. Each peer gets :data:`GRIDS`' points, three learning rates by two sizes, each with
its own schedule (BayesFlow at its defaults keeps ``BasicWorkflow``'s warm-up and cosine with
the grid's peak rate; the others a constant Adam rate). Every point trains for the race's
wall budget on the tuning set, in the race's coordinates and with its faster compilation, and
is scored on the validation rows at half the budget and at its end; the point with the lowest
validation NLL is the one chosen. OT-Flow's settings come from the rule, which counts as tuned
because it was frozen (committed) before the reported sets were drawn.

Run: ``python benchmarks/tune_peers.py --dataset mixture_d4_draw0 --peer bayesflow_fm_defaults``
(the suite's draw 0 is its tuning draw); the evidence is in ``benchmarks/README.md``.
"""

from tfotflow._keras import keras
from tfotflow.bench.clock import Clock, race
from tfotflow.bench.contenders import (
    TIGHTENING_ROWS,
    OTFlowContender,
    first_rows,
    reference_nll,
    shared_affine,
)
from tfotflow.bench.problems import load_problem, quick_problem
from tfotflow.bench.time_to_quality import build_peer, grid_options, race_splits
from tfotflow.hardware import machine

_RATES = {"bayesflow_fm_defaults": (2.5e-4, 5e-4, 1e-3)}
_SIZES = {
    "bayesflow_fm_defaults": ({}, {"widths": (128,) * 5}),  # BayesFlow's 5 × 256, and half
    "bayesflow_fm": ({}, {"widths_factor": 2}),
    "ffjord": ({}, {"width_factor": 2}),  # OT-Flow's weight count, and twice the width
}
GRIDS = {
    name: [
        {"learning_rate": rate, **size}
        for rate in _RATES.get(name, (3e-4, 1e-3, 3e-3))
        for size in sizes
    ]
    for name, sizes in _SIZES.items()
}


def tune(name, peer, *, seed=0, quick=False, grid=None, on_point=None):
    """Trains ``peer`` (a contender of the set's race problem: "bayesflow_fm_defaults",
    "bayesflow_fm" or "ffjord") at each point of ``grid`` (default :data:`GRIDS`) on the
    set ``name`` for the race's budget, and picks the point of lowest validation NLL.

    ``on_point`` sees each point's row as it ends. Returns ``{"dataset", "peer", "seed",
    "budget_seconds", "grid": [{"point", "settings", "parameters", "iterations",
    "best_nll", "best_seconds", "curve"}, ...], "chosen": point, "d", "machine"}`` (the
    machine's facts: :func:`tfotflow.hardware.machine`): a race of dimension ``d`` takes
    the chosen point with ``run(tuned=[result])``.
    """
    data, problem = load_problem(name, quick=quick)
    problem = quick_problem(problem) if quick else problem
    if peer not in problem["batch"] or peer.startswith("otflow"):
        raise ValueError(f"`peer` must be a peer of the {name!r} race; received {peer!r}")
    train, validation, _ = race_splits(data, problem["dtype"], problem["test_size"])
    tightening_rows = first_rows(validation, TIGHTENING_ROWS)
    keras.utils.set_random_seed(seed)
    ours = OTFlowContender(data, overrides=problem["otflow"], seed=seed)
    affine = shared_affine(ours)  # the race's coordinates, its map set from the training rows
    budget = problem["budgets"][peer]
    rows = []
    for point in GRIDS[peer] if grid is None else grid:
        keras.utils.set_random_seed(seed)
        options = grid_options(peer, problem[peer], point)
        built = build_peer(peer, options, problem, train, ours, affine, seed=seed)
        if built is None:
            raise ValueError(f"{peer!r} cannot race on {name!r} here")
        contender, settings, _ = built
        clock = Clock(
            lambda c=contender: reference_nll(c, validation, tightening_rows),
            budget_seconds=budget,
            first_score=budget / 2,
            factor=2.0,
        )
        batches = iter(contender.batches(train, batch=problem["batch"][peer], seed=seed))
        result = race(contender.step, batches, clock)
        rows.append(
            {
                "point": point,
                "settings": settings,
                "parameters": contender.num_parameters,
                "iterations": result["iterations"],
                "best_nll": result["best_nll"],
                "best_seconds": result["best_seconds"],
                "curve": result["curve"],
            }
        )
        if on_point is not None:
            on_point(rows[-1])
    chosen = min(rows, key=lambda row: row["best_nll"])
    return {
        "dataset": name,
        "peer": peer,
        "seed": seed,
        "budget_seconds": budget,
        "grid": rows,
        "chosen": chosen["point"],
        "d": data.metadata.dim,
        "machine": machine(),
    }
