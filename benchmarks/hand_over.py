"""The hand-over from the flow-matching warm start to maximum likelihood, lever by lever.

Run: python benchmarks/hand_over.py [--seeds 0,1,2] [--set NAME ...] [--variant NAME ...]
     [--quick]

For each set and seed, OT-Flow (the race's settings, ``tfotflow.bench.time_to_quality``)
runs its warm start, then likelihood steps, and is scored by its exact test NLL at the end of
the warm start and every ``every`` likelihood steps, in variants:

- ``plain``: the recipe, both phases at their full rates throughout (Adam restarts at the
  likelihood rate after the warm start);
- ``smooth``: the warm start's rate cosine-decayed to 0, the likelihood cosine rising from 0
  over its first 2 % of steps (``OTFlowContender(smooth_hand_over=True)``);
- ``diagonal`` / ``diagonal_smooth``: the same with the data standardized in the chain
  (:meth:`tfotflow.OTFlowModel.adapt`), on ``linear_gaussian`` only (``miniboone_mixture``
  is already near unit scale).

Writes benchmarks/results/hand_over[_NAME...].json (the curves and each variant's medians
over seeds).
"""

import argparse
import json
import pathlib
import statistics
import sys

from tfotflow import datasets
from tfotflow._keras import keras
from tfotflow.bench import time_to_quality as ttq
from tfotflow.checkpoint import atomic_write_bytes

# set: (the race's OT-Flow settings, likelihood batch, likelihood steps, score every, variants)
SETS = {
    "linear_gaussian": ("otflow", 3000, 500, ("plain", "smooth", "diagonal", "diagonal_smooth")),
    "miniboone_mixture": ("otflow_fast", 240, 60, ("plain", "smooth")),
}


def splits(name, *, quick):
    """The race's training split and test rows of set ``name``, loaded once per set."""
    problem = ttq.PROBLEMS[name]
    data = datasets.load(
        name, num_train=2000 if quick else problem.get("num_train", 100_000), num_val=10
    )
    test_size = 200 if quick else problem["test_size"]
    return data.metadata, *ttq.race_splits(data, "float32", test_size)


def curve(name, variant, seed, data, *, quick):
    """[[likelihood steps, exact test NLL], ...] of one variant, from the warm start's end;
    ``data`` is ``splits(name)``."""
    settings_name, steps, every, _ = SETS[name]
    problem = ttq.PROBLEMS[name]
    metadata, train, test = data
    options = dict(problem[settings_name], smooth_hand_over=variant.endswith("smooth"))
    if variant.startswith("diagonal"):
        options["normalization"] = "diagonal"
    if quick:
        options.update(width=8, num_steps=2, warm_start=20, iterations=100)
        steps, every = 20, 10
    keras.utils.set_random_seed(seed)
    contender = ttq.OTFlowContender(
        metadata.dim,
        train=train,
        dtype="float32",
        condition_dim=metadata.condition_dim,
        **options,
    )
    batch = problem["batch"][settings_name]
    batches = contender.batches(train, batch=256 if quick else batch, seed=seed)
    points = []
    for step in range(-options["warm_start"] + 1, steps + 1):
        contender.step(next(batches))
        if step >= 0 and step % every == 0:
            nll = ttq.mean_nll(contender, contender.reference_setting(), test)
            points.append([step, round(float(nll), 4)])
            print(name, variant, seed, *points[-1], file=sys.stderr, flush=True)
    return points


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", dest="sets", choices=list(SETS))
    parser.add_argument("--variant", action="append", dest="variants")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    result = {"benchmark": "hand_over", "quick": args.quick, "sets": {}}
    for name in args.sets or SETS:
        variants = [v for v in SETS[name][3] if args.variants is None or v in args.variants]
        data = splits(name, quick=args.quick)
        runs = {
            variant: {seed: curve(name, variant, seed, data, quick=args.quick) for seed in seeds}
            for variant in variants
        }
        medians = {
            variant: [
                [point[0], statistics.median(curves[seed][i][1] for seed in seeds)]
                for i, point in enumerate(curves[seeds[0]])
            ]
            for variant, curves in runs.items()
        }
        result["sets"][name] = {"curves": runs, "medians": medians}
    stem = "_".join(["hand_over", *(args.sets or []), *(["quick"] if args.quick else [])])
    out = pathlib.Path(__file__).parent / "results" / f"{stem}.json"
    atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
    print(out)


if __name__ == "__main__":
    main()
