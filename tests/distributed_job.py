"""A training job run in its own process by test_distribute.py (strategies need a fresh TF).

Usage: python distributed_job.py STRATEGY RUN_DIR ITERATIONS [--logical-cpus N] [--resume]
       [--dataset NAME]
Prints the final weights as JSON on the last line of stdout.
"""

import argparse
import json


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("strategy")
    parser.add_argument("run_dir")
    parser.add_argument("iterations", type=int)
    parser.add_argument("--logical-cpus", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--dataset", default="moons")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    if args.logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus
        )

    from tfotflow import datasets, distribute, training
    from tfotflow._keras import keras
    from tfotflow.model import OTFlowModel

    strategy = distribute.make_strategy(args.strategy)
    data = datasets.load(args.dataset, seed=1, num_train=512, num_val=64, num_test=64)
    keras.utils.set_random_seed(7)
    with strategy.scope():
        model = OTFlowModel(
            2,
            width=6,
            num_steps=2,
            dtype="float64",
            alpha=(1.0, 10.0, 1.0),
            condition_dim=data.metadata.condition_dim,
        )
        model.compile(optimizer=keras.optimizers.Adam(0.02))
    history = training.train(
        model,
        data,
        iterations=args.iterations,
        batch_size=64,
        validate_every=2,
        run_dir=args.run_dir,
        seed=5,
        resume=args.resume,
    )
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "chief": distribute.is_chief(strategy),
                "iterations": int(model.optimizer.iterations.numpy()),
                "nll": [float(v) for v in history.history["nll"]],
                "weights": [np.asarray(v).tolist() for v in model.weights],
            }
        )
    )


if __name__ == "__main__":
    main()
