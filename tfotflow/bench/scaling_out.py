"""Training throughput under tf.distribute: 1 vs 2 logical devices, 1 vs 2 workers on localhost.

Each configuration runs in fresh processes (strategies must exist before TensorFlow starts);
the second of two epochs is timed, so tracing and warm-up are excluded. On one machine the
replicas share its cores: the numbers show the all-reduce overhead, not a speed-up.

Run one measurement: ``python -m tfotflow.bench.scaling_out STRATEGY --logical-cpus N``.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

SETTINGS = dict(dim=43, width=128, batch=1024, num_steps=4, steps=6)
QUICK_SETTINGS = dict(dim=8, width=16, batch=128, num_steps=2, steps=3)


def _measure(strategy_name, logical_cpus, dim, width, batch, num_steps, steps):
    import tensorflow as tf

    if logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus
        )
    from tfotflow import distribute
    from tfotflow._keras import keras
    from tfotflow.model import OTFlowModel
    from tfotflow.training import batch_stream

    strategy = distribute.make_strategy(strategy_name)
    with strategy.scope():
        model = OTFlowModel(dim, width=width, num_steps=num_steps)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = tf.random.stateless_normal([4 * batch, dim], seed=[0, 1]).numpy()

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = EpochTimer()
    model.fit(
        batch_stream(data, batch_size=batch, seed=0),
        steps_per_epoch=steps,
        epochs=2,
        callbacks=[timer],
        verbose=0,
    )
    return {
        "strategy": strategy_name,
        "replicas": strategy.num_replicas_in_sync,
        "samples_per_second": steps * batch / timer.seconds,
        "seconds_per_step": timer.seconds / steps,
    }


def _run(arguments, env=None, timeout=600):
    command = [sys.executable, "-m", "tfotflow.bench.scaling_out", *arguments]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def _result(process, timeout=600):
    stdout, stderr = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"measurement failed: {stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def run(quick=False):
    """Throughput with 1 and 2 logical devices and with 1 and 2 local workers."""
    settings = QUICK_SETTINGS if quick else SETTINGS
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]
    rows = [
        _result(_run(["default", *flags])),
        _result(_run(["mirrored", "--logical-cpus=2", *flags])),
    ]
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes = [
        _run(
            ["multiworker", *flags],
            env={
                "TF_CONFIG": json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
                )
            },
        )
        for index in range(2)
    ]
    try:
        results = [_result(process) for process in processes]
    finally:
        for process in processes:
            process.kill()
    rows.append({**results[0], "strategy": "multiworker (2 local workers)"})
    baseline = rows[0]["samples_per_second"]
    for row in rows:
        row["relative_throughput"] = row["samples_per_second"] / baseline
    return {"benchmark": "scaling_out", "quick": quick, "settings": settings, "rows": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("strategy")
    parser.add_argument("--logical-cpus", type=int, default=1)
    for key, value in SETTINGS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=value)
    args = parser.parse_args()
    print(
        json.dumps(
            _measure(
                args.strategy,
                args.logical_cpus,
                args.dim,
                args.width,
                args.batch,
                args.num_steps,
                args.steps,
            )
        )
    )
