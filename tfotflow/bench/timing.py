"""Interleaved timing: every contender runs once per round, medians over rounds after warm-up."""

import gc
import resource
import statistics
import time

import tensorflow as tf


def _block(result):
    """Waits for every tensor in ``result`` (TensorFlow may run asynchronously)."""
    for value in tf.nest.flatten(result):
        if hasattr(value, "numpy"):
            value.numpy()


def interleaved_medians(contenders, *, rounds=5, warmup=1):
    """Median wall time in seconds of each zero-argument callable, measured in turns.

    Args:
        contenders: a dict from name to a callable returning tensors.
        rounds: timed rounds; each round runs every contender once, in order. Defaults to 5.
        warmup: untimed rounds first (tracing, compilation, caches). Defaults to 1.

    Returns:
        A dict from name to the median seconds.
    """
    for _ in range(warmup):
        for function in contenders.values():
            _block(function())
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, function in contenders.items():
            gc.collect()
            start = time.perf_counter()
            _block(function())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_gb():
    """The process's peak resident memory so far, in GB.

    Reads ``VmHWM`` from ``/proc/self/status`` where there is one: unlike ``ru_maxrss``, it
    starts afresh in a new program, so a child process does not report its parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def matmul_gflops(rows, inner, cols, dtype, *, rounds=5):
    """The machine's measured dense matmul rate for a [rows, inner] × [inner, cols] product."""
    a = tf.random.normal([rows, inner], dtype=dtype)
    b = tf.random.normal([inner, cols], dtype=dtype)
    product = tf.function(lambda a, b: a @ b)
    seconds = interleaved_medians({"matmul": lambda: product(a, b)}, rounds=rounds)["matmul"]
    return 2.0 * rows * inner * cols / seconds / 1e9


def training_step(loss_fn, variables, optimizer, *, jit_compile=False):
    """A compiled step: the gradient of ``loss_fn(x)`` applied to ``variables``."""

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            loss = loss_fn(x)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step
