"""One training step of each phase at d = 43, OT-Flow against BayesFlow's flow matching.

Run: python benchmarks/profile_steps.py  (writes results/step_profile_miniboone_mixture.json)

On ``miniboone_mixture`` rows, float32, graph mode (as training at d = 43 runs): OT-Flow's
recipe potential (width 128, 2 layers) in a flow-matching warm-start step with 100, 20 and 5
Sinkhorn sweeps of its coupling, or with the independent coupling; the coupling alone; a
maximum-likelihood step (6 RK4 steps, batch 1024) with the exact trace and with the one-probe
trace; and one step of BayesFlow's ``FlowMatching`` tuned (widths 224-224, batch 512) and at
its defaults (batch 32). Median seconds of 15 interleaved rounds after 2 untimed ones.
"""

import json
import math
import pathlib

import numpy as np
import tensorflow as tf

from tfotflow import datasets
from tfotflow._keras import keras
from tfotflow.bench.contenders import FlowMatchingContender
from tfotflow.bench.timing import interleaved_medians, training_step
from tfotflow.checkpoint import atomic_write_bytes
from tfotflow.flow_matching import FlowMatching, flow_matching_loss, ot_pairs
from tfotflow.model import OTFlowModel


def main():
    data = datasets.load("miniboone_mixture", num_train=100_000, num_val=10, num_test=10)
    train = data.split("train").astype("float32")
    rng = np.random.default_rng(0)

    def rows(n):
        return tf.constant(train[rng.choice(len(train), n, replace=False)])

    model = OTFlowModel(43, width=128, alpha=(1.0, 30.0, 1.0), num_steps=6, dtype="float32")
    variables = model.potential.trainable_variables

    def adam_step(loss):
        return training_step(loss, variables, keras.optimizers.Adam(1e-3))

    steps = {}
    for sweeps in (100, 20, 5):
        matching = FlowMatching(model, sinkhorn_iterations=sweeps)
        steps[f"warm_b256_sinkhorn{sweeps}"] = (
            adam_step(lambda x, m=matching: m.loss_on(x, 3)),
            rows(256),
        )

    def independent(x):
        z = tf.random.normal(tf.shape(x))
        t = tf.random.uniform([tf.shape(x)[0], 1])
        return flow_matching_loss(model.potential, x, z, t, alpha_transport=30.0)

    steps["warm_b256_independent"] = (adam_step(independent), rows(256))
    steps["warm_b1024_independent"] = (adam_step(independent), rows(1024))

    def coupling(x):
        return ot_pairs(x, tf.random.normal(tf.shape(x)), seed=tf.constant([1, 2]))

    steps["sinkhorn100_only_b256"] = (tf.function(coupling), rows(256))
    steps["likelihood_b1024_exact"] = (adam_step(lambda x: model.objective(x)[0]), rows(1024))
    steps["likelihood_b1024_hutchinson"] = (
        adam_step(lambda x: model.objective(x, trace="hutchinson")[0]),
        rows(1024),
    )
    tuned = FlowMatchingContender(43, widths=(224, 224), learning_rate=1e-3, dtype="float32")
    steps["bayesflow_224x2_b512"] = (tuned.step, rows(512))
    defaults = FlowMatchingContender(43, defaults=True, total_steps=312_500, dtype="float32")
    steps["bayesflow_defaults_b32"] = (defaults.step, rows(32))
    seconds = interleaved_medians(
        {name: (lambda f=f, x=x: f(x)) for name, (f, x) in steps.items()}, rounds=15, warmup=2
    )
    result = {
        "seconds": seconds,
        "parameters": {
            "otflow": int(sum(math.prod(v.shape) for v in variables)),
            "bayesflow_224x2": tuned.num_parameters,
            "bayesflow_defaults": defaults.num_parameters,
        },
    }
    text = json.dumps(result, indent=1)
    print(text)
    out = pathlib.Path(__file__).parent / "results" / "step_profile_miniboone_mixture.json"
    atomic_write_bytes(out, (text + "\n").encode())


if __name__ == "__main__":
    main()
