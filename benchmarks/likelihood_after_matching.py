"""Does a short likelihood phase pay after flow matching of the potential?

Run: python benchmarks/likelihood_after_matching.py RUN_DIR [--steps 200] [--rates 1e-4,1e-3]

Takes a finished ``tfotflow train FILE`` run whose main phase was flow matching (the rule
above d = 2), and for each rate continues its model by maximum likelihood through the one
trainer (:func:`tfotflow.training.train`: cosine from the rate over ``--steps`` steps, batch
256, the exact trace, the solver-error control, validated every 50 steps on the run's
validation split, no warm start, no clip), from the same weights each time. Records the
validation NLL and training seconds after each validation against the run's own validation
NLL; writes results/likelihood_after_matching_NAME.json (NAME: the run's data file's stem).
"""

import argparse
import json
import pathlib
import tempfile

import numpy as np

from tfotflow import runs, training
from tfotflow.bench.timing import TrainingTime
from tfotflow.checkpoint import atomic_write_bytes

VALIDATION_ROWS = 2000


def continue_by_likelihood(run_dir, steps, rates):
    config = runs.read_config(run_dir)
    data = runs.load_data(config)
    validation = data.val[:VALIDATION_ROWS]
    before, _ = runs.load_model(run_dir)
    start_nll = -float(np.mean(before.log_prob(validation)))
    rows = {}
    for rate in rates:
        model, _ = runs.load_model(run_dir)
        training.compile_for(model, {"learning_rate": rate, "schedule": "cosine"}, steps)
        times = TrainingTime()
        with tempfile.TemporaryDirectory() as scratch:
            history = training.train(
                model,
                data,
                run_dir=scratch,
                callbacks=[times],
                iterations=steps,
                batch_size=256,
                learning_rate=rate,
                schedule="cosine",
                validate_every=50,
                warm_start=0,
                weight_clip=None,
            )
        rows[str(rate)] = {
            "seconds": times.epoch_seconds,
            "val_nll": [float(v) for v in history.history["val_nll"]],
            "num_steps": model.num_steps,
            "end_validation_nll": -float(np.mean(model.log_prob(validation))),
        }
        print(rate, json.dumps(rows[str(rate)]), flush=True)
    return {
        "run_dir": str(run_dir),
        "steps": steps,
        "validation_rows": VALIDATION_ROWS,
        "start_validation_nll": start_nll,
        "start_num_steps": before.num_steps,
        "rates": rows,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=pathlib.Path)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rates", default="1e-4,1e-3")
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    result = continue_by_likelihood(args.run_dir, args.steps, rates)
    name = pathlib.Path(runs.read_config(args.run_dir)["source"]["path"]).stem
    out = pathlib.Path(__file__).parent / "results" / f"likelihood_after_matching_{name}.json"
    atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
