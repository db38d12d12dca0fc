"""Runs one benchmark suite and writes its JSON to benchmarks/results/.

Run: python benchmarks/run.py SUITE [--quick] [--dataset NAME ...] [--miniboone DIR]
     [--seeds 0,1,2] [--contender NAME ...] [--way WAY ...] [--tuned FILE ...]
SUITE is one of trace, peers, training_speed, startup, quality, scaling_out, time_to_quality,
recipe… (see README.md here). The training suites train on the sets named with --dataset
(default: the suite's own) and on MINIBOONE when DIR holds miniboone/val.npy and test.npy
(e.g. ../shared/data); with either option the file is SUITE_NAME[_NAME...].json, and with
--seeds it is named after them (..._seeds0-1-2.json).
time_to_quality races once per seed of --seeds, only each --contender when given (and
OT-Flow's recipe, unless an OT-Flow setting is among them), scores every --score-factor of
training time (default 1.4), skips the comparison at matched accuracy with
--no-matched-accuracy, sets each peer of a --tuned FILE (a result of
benchmarks/tune_peers.py) at the point its grid chose (the file's name then ends in _tuned_PEER…),
saves each finished race's row to the .partial.json beside it as it goes, and writes its
curves as a PNG beside the JSON.
recipe trains each set once per seed of --seeds, only each --way (tuned, file, keras) when
given.
"""

import argparse
import json
import pathlib

from tfotflow import bench
from tfotflow.checkpoint import atomic_write_bytes

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("suite", choices=bench.SUITES)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dataset", action="append", dest="names")
    parser.add_argument("--miniboone", default=None)
    parser.add_argument(
        "--seeds", default=None, help="time_to_quality, recipe: comma-separated seeds"
    )
    parser.add_argument("--way", action="append", help="recipe: only these ways (tuned, file…)")
    parser.add_argument(
        "--contender",
        action="append",
        help="time_to_quality: race only these (and otflow, unless one otflow_* is named)",
    )
    parser.add_argument("--score-factor", type=float, help="time_to_quality: score spacing")
    parser.add_argument(
        "--no-matched-accuracy", action="store_true", help="time_to_quality: races only"
    )
    parser.add_argument(
        "--tuned", action="append", default=[], help="time_to_quality: a tuning result"
    )
    args = parser.parse_args()
    names = args.names
    if names is None and args.miniboone is not None:
        names = []  # MINIBOONE alone
    parts = [*(names or []), *(["miniboone"] if args.miniboone else [])]
    if args.seeds is not None:
        parts.append("seeds" + args.seeds.replace(",", "-"))
    tuned = [json.loads(pathlib.Path(file).read_text()) for file in args.tuned]
    if tuned:
        parts.append("_".join(["tuned", *sorted(result["peer"] for result in tuned)]))
    stem = "_".join([args.suite, *parts])
    out = pathlib.Path(__file__).parent / "results" / f"{stem}.json"
    options = {}
    if args.seeds is not None and args.suite in ("recipe", "time_to_quality"):
        options["seeds"] = tuple(int(seed) for seed in args.seeds.split(","))
    if args.suite == "recipe":
        options["ways"] = args.way
    if args.suite == "time_to_quality":
        finished = []

        def save(row):
            finished.append(row)
            text = json.dumps(finished, indent=1) + "\n"
            atomic_write_bytes(out.with_suffix(".partial.json"), text.encode())

        options["on_row"] = save
        options.update(
            contenders=args.contender,
            score_factor=args.score_factor,
            inference=not args.no_matched_accuracy,
            tuned=tuned,
        )
    result = bench.run(
        [args.suite],
        quick=args.quick,
        miniboone_dir=args.miniboone,
        names=names,
        options={args.suite: options},
    )
    text = json.dumps(result[args.suite], indent=1)
    print(text)
    atomic_write_bytes(out, (text + "\n").encode())
    if args.suite == "time_to_quality":  # the curves, beside the JSON
        from tfotflow.plotting import plot_races

        plot_races(result[args.suite], out.with_suffix(".png"))
