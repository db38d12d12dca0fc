"""Merges time_to_quality results (e.g. seeds run separately) and their medians across seeds.

Run: python benchmarks/summarize_races.py OUT.json IN.json [IN.json ...]
         [--log RACE.log --log-seed S --log-dataset NAME --log-budget SECONDS]

Takes the rows of every input (a result, or the list of rows of a .partial.json), groups them
by data set, and writes OUT.json with the rows as recorded and each group's
:func:`tfotflow.bench.race_summaries.across_seeds` (every OT-Flow setting against every
other contender, per seed and median), atomically, and its curves as OUT.png.

``--log`` adds a race whose row was never written (stopped before its end) from the curve
points it printed (``name: iteration I, S s, validation NLL V, test NLL N``, or from before
validation scores ``name: iteration I, S s, test NLL N``; four decimals): each contender
whose curve reached ``--log-budget`` training seconds becomes a race of that seed's row,
marked ``"from_log"``; the others (cut short) are left out.
"""

import argparse
import collections
import json
import pathlib
import re

from tfotflow import datasets
from tfotflow.bench.race_summaries import across_seeds
from tfotflow.checkpoint import atomic_write_bytes
from tfotflow.plotting import plot_races

# A printed curve point: before validation scores, "test NLL N" alone; now "validation NLL V,
# test NLL N" (the curve is the validation one).
POINT = re.compile(
    r"^(\w+): iteration (\d+), ([\d.]+) s, (?:validation NLL (-?[\d.]+), )?test NLL (-?[\d.]+)$"
)


def row_from_log(path, *, seed, dataset, budget):
    """A row of the complete races in a race's printed log (see the module's docstring)."""
    curves = collections.defaultdict(list)
    for line in pathlib.Path(path).read_text().splitlines():
        match = POINT.match(line.strip())
        if match:
            name, iteration, seconds, validation, test = match.groups()
            curves[name].append([int(iteration), float(seconds), float(validation or test)])
    races = {
        name: {
            "curve": curve,
            "iterations": curve[-1][0],
            "best_nll": min(nll for _, _, nll in curve),
            "budget_seconds": budget,
        }
        for name, curve in curves.items()
        if curve[-1][1] >= budget - 1.0  # the race's last score is at its budget
    }
    meta = datasets.load(dataset, num_train=10, num_val=10, num_test=10).metadata
    return {
        "dataset": dataset,
        "d": meta.dim,
        "true_entropy": meta.entropy,
        "seed": seed,
        "from_log": str(path),
        "races": races,
        "versus": {},
        "inference": None,
        "inference_speedups": {},
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("inputs", nargs="*")
    parser.add_argument("--log")
    parser.add_argument("--log-seed", type=int, default=0)
    parser.add_argument("--log-dataset")
    parser.add_argument("--log-budget", type=float)
    args = parser.parse_args()
    rows = []
    if args.log:
        rows.append(
            row_from_log(
                args.log, seed=args.log_seed, dataset=args.log_dataset, budget=args.log_budget
            )
        )
    for path in args.inputs:
        recorded = json.loads(pathlib.Path(path).read_text())
        rows += recorded if isinstance(recorded, list) else recorded["rows"]
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row["dataset"]].append(row)
    result = {
        "benchmark": "time_to_quality",
        "quick": False,
        "rows": rows,
        "across_seeds": [across_seeds(group) for group in groups.values() if len(group) > 1],
    }
    out = pathlib.Path(args.out)
    atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
    plot_races(result, out.with_suffix(".png"))
    print(json.dumps(result["across_seeds"], indent=1))


if __name__ == "__main__":
    main()
