"""Flow matching of the potential as the main phase: what a step costs, and what the solve's
step count does to the score of a potential trained that way.

Run: python benchmarks/flow_matching_study.py [--dataset mixture_d16_draw0] [--seconds 150]
         [--setting NAME ...]

On a generalization-suite set (the tuning draw by default), in the user's coordinates (the
rule's standardization of the file), for each setting of ``SETTINGS``: the warm start alone
for ``--seconds`` of training (its first call, compiling, not counted), its seconds per step,
the validation NLL of the result at 4, 8, 16, 32 and 64 RK4 steps (exact trace) on 2,000
validation rows, the solve's error there as the closing check measures it (mean and largest
|log p with n steps − with 2n|, n = 4, 8, 16), and the flow-matching loss on them (the race,
``time_to_quality``, times the likelihood steps and BayesFlow's against them). Writes
results/flow_matching_study_NAME.json, keeping the rows of settings it did not run
(``--setting`` runs only those named).
"""

import argparse
import contextlib
import functools
import json
import pathlib
from unittest import mock

import numpy as np
import tensorflow as tf

from tfotflow import flow_matching, runs, training
from tfotflow._keras import keras
from tfotflow.bench.problems import SUITE_VARIANTS, load_problem
from tfotflow.bench.timing import TrainingTime
from tfotflow.checkpoint import atomic_write_bytes
from tfotflow.flow_matching import FlowMatching
from tfotflow.hardware import machine
from tfotflow.scoring import discretization_error
from tfotflow.settings import build_config, recommended_settings

# Each: the run-setting overrides of one flow-matching main phase on the rule's own (width 256,
# batch 256, Adam 1e-3, the independent coupling, no clip), made time-bound: enough steps that
# the clock ends them, at a constant rate.
_TIMED = {"warm_start": 10_000_000, "warm_start_schedule": "constant"}
SETTINGS = {
    "w256_l2": _TIMED,
    "w256_l2_ot": {**_TIMED, **SUITE_VARIANTS["otflow_fm_ot"]},
    "w256_l2_rate_0.02": {**_TIMED, "warm_start_learning_rate": 0.02},  # the warm start's rate
    # What a step of the potential learns: BayesFlow's batch, a deeper potential, a higher rate.
    "w256_l2_batch32": {**_TIMED, "warm_start_batch_size": 32},
    "w256_l5": {**_TIMED, **SUITE_VARIANTS["otflow_fm_deep"]},
    "w256_l2_rate_0.003": {**_TIMED, "warm_start_learning_rate": 0.003},
    # Time to quality in a 150-s budget: a cosine sized to about the budget's steps, and two
    # levers the run settings do not offer (LEVERS): a weight average and the time sampling.
    "w256_l2_cosine_50000": {"warm_start": 50_000, "warm_start_schedule": "cosine"},
    "w256_l2_again": _TIMED,  # the first, re-measured beside them: the machine's speed drifts
    # How the potential sees the time: t alone (the first again, beside them), or with 4 or 8
    # Fourier pairs of it.
    "w256_l2_again_2": _TIMED,
    "w256_l2_time_features_4": {**_TIMED, "time_features": 4},
    "w256_l2_time_features_8": {**_TIMED, "time_features": 8},
    "w256_l2_ema_0.999": _TIMED,
    "w256_l2_logit_normal_t": _TIMED,
    # Why the closing check doubles the solve after the rule's own phase (its cosine, four
    # Fourier pairs up to 4π): the same phase with the pairs up to 2π, and with t alone.
    "rule": {},
    "rule_time_features_2": {"time_features": 2},
    "rule_time_features_0": {"time_features": 0},
}
STEPS = (4, 8, 16, 32, 64)
VALIDATION_ROWS = 2000


@contextlib.contextmanager
def _weight_average(momentum):
    """Adam keeps an exponential moving average of the weights (Keras's ``use_ema``) and the
    phase ends with it (Keras's ``finalize_variable_values`` at the end of ``fit``)."""
    adam = keras.optimizers.Adam
    with mock.patch.object(
        keras.optimizers, "Adam", functools.partial(adam, use_ema=True, ema_momentum=momentum)
    ):
        yield


@contextlib.contextmanager
def _logit_normal_time():
    """t = sigmoid(u), u ~ N(0, 1) (Esser et al. 2024), in place of t ~ U[0, 1]: the study
    patches the warm start's one uniform draw of shape [n, 1]."""
    uniform = tf.random.stateless_uniform

    def draw(shape, seed, dtype=tf.float32, **kwargs):
        if isinstance(shape, list | tuple) and len(shape) == 2 and shape[1] == 1:
            return tf.sigmoid(tf.random.stateless_normal(shape, seed=seed, dtype=dtype))
        return uniform(shape, seed=seed, dtype=dtype, **kwargs)

    with mock.patch.object(flow_matching.tf.random, "stateless_uniform", draw):
        yield


LEVERS = {  # label: (what the row records, the context the phase runs in)
    "w256_l2_ema_0.999": (
        "Adam's weight average (momentum 0.999)",
        functools.partial(_weight_average, 0.999),
    ),
    "w256_l2_logit_normal_t": ("t = sigmoid(N(0, 1))", _logit_normal_time),
}


def study(name, seconds, labels):
    data, _ = load_problem(name)
    validation = data.val[:VALIDATION_ROWS].astype("float32")
    rows = {}
    for label in labels:
        overrides = SETTINGS[label]
        config = build_config(
            data.metadata.name,
            recommended=recommended_settings(data),
            overrides=overrides,
            seed=0,
            data_dir=None,
            options={},
            source=data.metadata.source,
        )
        keras.utils.set_random_seed(0)
        model = runs.new_model(runs.recorded_config(config, data), data.metadata.dim)
        runs.adapt_to(model, config, data)
        settings = config["train"]
        timer = TrainingTime(budget_seconds=seconds)
        lever, context = LEVERS.get(label, (None, contextlib.nullcontext))
        with context():
            history = training.warm_start(model, data, callbacks=[timer], **settings)
        log_probs = {steps: model.score_samples(validation, num_steps=steps) for steps in STEPS}
        scores = {steps: -float(np.mean(log_prob)) for steps, log_prob in log_probs.items()}
        errors = {  # each n-step solve above reused; the 2n-step one solved again
            steps: discretization_error(
                model,
                validation,
                num_steps=steps,
                sample=VALIDATION_ROWS,
                log_prob=log_probs[steps],
            )
            for steps in STEPS[:3]
        }
        loss = float(FlowMatching(model, coupling="independent").loss_on(validation, 0))
        rows[label] = {
            "overrides": overrides,
            "lever": lever,
            "weights": int(sum(np.prod(v.shape) for v in model.potential.weights)),
            "steps": timer.steps,
            "seconds": timer.seconds,
            "seconds_per_step": timer.seconds / max(timer.steps, 1),
            "validation_nll_at_rk4_steps": scores,
            "discretization_error_at_rk4_steps": errors,
            "validation_flow_matching_loss": loss,
            "last_training_loss": history.history["flow_matching"][-1],
            "machine": machine(),
        }
        print(label, json.dumps(rows[label]), flush=True)
    return {
        "dataset": name,
        "settings": rows,
        "validation_rows": VALIDATION_ROWS,
        "exact_validation_nll": float(
            -np.mean(data.metadata.log_prob(validation.astype(np.float64)))
        ),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mixture_d16_draw0")
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--setting", action="append", choices=sorted(SETTINGS))
    args = parser.parse_args()
    result = study(args.dataset, args.seconds, args.setting or list(SETTINGS))
    out = pathlib.Path(__file__).parent / "results" / f"flow_matching_study_{args.dataset}.json"
    if out.exists():  # the rows of settings not run this time stay
        result["settings"] = {**json.loads(out.read_text())["settings"], **result["settings"]}
    atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
