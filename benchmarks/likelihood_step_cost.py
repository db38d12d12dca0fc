"""Where a likelihood step's time goes at d = 4: the rule's compiled step, and what the trainer
adds around it.

Run: python benchmarks/likelihood_step_cost.py [--dataset mixture_d4_draw0] [--steps 1000]
(writes results/likelihood_step_cost_DATASET.json)

On a generalization-suite tuning draw (never a reported one), float32, the rule's settings
(width 32, 2 layers, the exact trace, XLA below d = 16):
- ``compiled_ms``: the compiled training step (``model.train_function``) on one batch, called
  back to back as ``fit`` calls it (the median of 5 runs of 40 calls after 5 untimed), by RK4
  steps (1, 2, 4, 8 at batch 1,024) and by batch (256, 1,024, 4,096 at 4 RK4 steps);
- ``trainer_ms``: training milliseconds a likelihood step of :func:`tfotflow.runs.train_run`
  (no warm start, ``--steps`` steps, validations and checkpoints as the rule sets them;
  :class:`tfotflow.bench.timing.TrainingTime`) at batch 1,024 and 256, as the rule runs it,
  without the weight clip, without the solver-error control, and without either, each twice
  in turn (the machine's noise shows in the pairs);
- ``check_ms``: one solver-error check's two solves of 1,000 validation rows (4 and 8 RK4
  steps) through ``score_samples`` (one compiled function) and through ``log_prob`` called
  eagerly, the median of 10.
"""

import argparse
import json
import pathlib
import statistics
import tempfile
import time

import tensorflow as tf

from tfotflow import runs
from tfotflow.bench.contenders import OTFlowContender
from tfotflow.bench.problems import load_problem
from tfotflow.bench.timing import TrainingTime
from tfotflow.checkpoint import atomic_write_bytes

WAYS = {
    "rule": {},
    "no_clip": {"weight_clip": None},
    "no_solver_control": {"solver_tolerance": 0},
    "neither": {"weight_clip": None, "solver_tolerance": 0},
}


def milliseconds(call, *, runs_=5, calls=40, warmup=5):
    """The median over ``runs_`` of the mean milliseconds of ``calls`` back-to-back calls."""
    for _ in range(warmup):
        call()
    means = []
    for _ in range(runs_):
        start = time.perf_counter()
        for _ in range(calls):
            result = call()
        float(result)  # waits for the last call
        means.append(1e3 * (time.perf_counter() - start) / calls)
    return statistics.median(means)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mixture_d4_draw0")
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    data, _ = load_problem(args.dataset)

    def train(**overrides):
        # the race's OT-Flow settings (the rule's, checked), no warm start, --steps steps
        overrides = {"iterations": args.steps, "warm_start": 0, **overrides}
        config = OTFlowContender(data, overrides=overrides).config
        timing = TrainingTime()
        with tempfile.TemporaryDirectory() as run_dir:
            model, _ = runs.train_run(run_dir, config, data=data, callbacks=[timing])
        return model, 1e3 * timing.seconds / timing.steps

    trainer = {}
    for batch in (1024, 256):
        for _ in range(2):
            for way, overrides in WAYS.items():
                _, ms = train(batch_size=batch, **overrides)
                trainer.setdefault(f"batch{batch}_{way}", []).append(ms)
                print(f"trainer batch {batch} {way}: {ms:.2f} ms a step", flush=True)

    model, _ = train(iterations=2)
    compiled = {}
    train_rows = data.split("train").astype("float32")
    for steps, batch in ((1, 1024), (2, 1024), (4, 1024), (8, 1024), (4, 256), (4, 4096)):
        model.num_steps = steps
        model.make_train_function(force=True)
        x = tf.constant(train_rows[:batch])
        key = f"rk4_{steps}_batch{batch}"
        compiled[key] = milliseconds(lambda f=model.train_function, x=x: f(iter([x]))["loss"])
        print(f"compiled {steps} RK4 steps, batch {batch}: {compiled[key]:.2f} ms", flush=True)
    model.num_steps = 4
    rows = data.split("val")[:1000].astype("float32")
    check = {
        "score_samples": milliseconds(
            lambda: (
                model.score_samples(rows, num_steps=4).sum()
                + model.score_samples(rows, num_steps=8).sum()
            ),
            runs_=10,
            calls=1,
            warmup=2,
        ),
        "log_prob_eager": milliseconds(
            lambda: (
                model.log_prob(rows, num_steps=4).numpy().sum()
                + model.log_prob(rows, num_steps=8).numpy().sum()
            ),
            runs_=10,
            calls=1,
            warmup=2,
        ),
    }
    print("check", check)
    result = {
        "dataset": args.dataset,
        "likelihood_steps": args.steps,
        "compiled_ms": compiled,
        "trainer_ms": trainer,
        "check_ms": check,
    }
    text = json.dumps(result, indent=1)
    out = pathlib.Path(__file__).parent / "results" / f"likelihood_step_cost_{args.dataset}.json"
    atomic_write_bytes(out, (text + "\n").encode())
    print(text)


if __name__ == "__main__":
    main()
