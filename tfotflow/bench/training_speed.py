"""Training-step speed: roofline, XLA on vs off, scaling with batch, width and d, peak memory.

Flops of one training step, counted analytically from the dominant product J K (2·n·M·m²·d
flops per potential evaluation): the forward solve evaluates 4·num_steps times; backprop
recomputes each evaluation once and takes two products of the same size per product (the
gradients with respect to J and to K), so a step does about 4 · 4·num_steps · 2·n·M·m²·d.
"""

import json
import math
import subprocess
import sys

import tensorflow as tf

from tfotflow import hardware
from tfotflow._keras import keras
from tfotflow.bench.timing import interleaved_medians, matmul_gflops, training_step
from tfotflow.model import OTFlowModel


def step_flops(d, width, batch, num_steps, num_layers=2):
    """The trace's floating-point operations in one training step: 2·n·M·m²·d per
    evaluation (DESIGN.md), four RK4 stages per step, about four times that with the
    backward pass."""
    return 4 * 4 * num_steps * 2.0 * batch * (num_layers - 1) * width**2 * d


def _step_function(model, jit_compile):
    return training_step(
        lambda x: model.objective(x, jit_compile=jit_compile)[0],
        model.trainable_variables,
        model.optimizer,
        jit_compile=jit_compile,
    )


def _step_contender(d, width, batch, num_steps, jit, dtype):
    """A traced training step of a fresh model on a fixed batch, as a zero-argument callable."""
    keras.utils.set_random_seed(0)
    model = OTFlowModel(d, width=width, num_steps=num_steps, dtype=dtype)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = tf.random.normal([batch, d], dtype=dtype)
    step = _step_function(model, jit)
    return lambda: step(x)


# The chunk rules compared: the machine's caches, a small-cache CPU (the trace cut as if the
# last-level cache were 4 MiB), and one pass over the whole batch (the GPU rule).
CHUNK_RULES = {"machine": None, "small_cache_4MiB": 4 * 2**20, "one_pass": 2**50}


def chunk_rules(d, width, batch, num_steps, *, rounds):
    """Seconds per training step with the trace chunked by each of :data:`CHUNK_RULES`."""
    contenders = {}
    for name, cache_bytes in CHUNK_RULES.items():
        hardware.override_cache_bytes(cache_bytes)
        try:
            contenders[name] = _step_contender(d, width, batch, num_steps, False, "float32")
            contenders[name]()  # traced now, under this rule
        finally:
            hardware.override_cache_bytes(None)
    seconds = interleaved_medians(contenders, rounds=rounds, warmup=0)
    rows = []
    for name, cache_bytes in CHUNK_RULES.items():
        hardware.override_cache_bytes(cache_bytes)
        chunk = hardware.trace_chunk_elements(4)
        hardware.override_cache_bytes(None)
        rows.append(
            {
                "rule": name,
                "chunk_elements": min(chunk, batch * d * width),
                "seconds": seconds[name],
                "achieved_gflops": step_flops(d, width, batch, num_steps) / seconds[name] / 1e9,
            }
        )
    return rows


def time_steps(configs, *, rounds, dtype="float32"):
    """Median seconds per training step for each (d, width, batch, num_steps, jit) config."""
    contenders = {config: _step_contender(*config, dtype) for config in configs}
    named = {str(key): function for key, function in contenders.items()}
    seconds = interleaved_medians(named, rounds=rounds)
    return {key: seconds[str(key)] for key in contenders}


def peak_memory_of_training(d, width, batch, num_steps, steps=2, jit_compile=False):
    """Peak resident memory (GB) of a fresh process running ``steps`` training steps."""
    code = (
        "import json, tensorflow as tf\n"
        "from tfotflow.bench.training_speed import _step_function\n"
        "from tfotflow.model import OTFlowModel\n"
        "from tfotflow._keras import keras\n"
        f"model = OTFlowModel({d}, width={width}, num_steps={num_steps})\n"
        "model.compile(optimizer=keras.optimizers.Adam(1e-3))\n"
        f"x = tf.random.normal([{batch}, {d}])\n"
        f"step = _step_function(model, {jit_compile})\n"
        f"for _ in range({steps}):\n    float(step(x))\n"
        "from tfotflow.bench.timing import peak_memory_gb\n"
        "print(json.dumps(peak_memory_gb()))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def run(quick=False):
    """Roofline and XLA comparison at MINIBOONE size, scaling table, peak memory."""
    base = (8, 32, 256, 2) if quick else (43, 256, 2000, 6)
    rounds = 2 if quick else 3
    d, width, batch, num_steps = base
    seconds = time_steps([(*base, False), (*base, True)], rounds=rounds)
    flops = step_flops(d, width, batch, num_steps)
    matmul = matmul_gflops(batch * d, width, width, "float32")
    roofline = {
        "d": d,
        "width": width,
        "batch": batch,
        "num_steps": num_steps,
        "seconds_graph": seconds[(*base, False)],
        "seconds_xla": seconds[(*base, True)],
        "xla_speedup": seconds[(*base, False)] / seconds[(*base, True)],
        "step_flops": flops,
        "achieved_gflops_graph": flops / seconds[(*base, False)] / 1e9,
        "achieved_gflops_xla": flops / seconds[(*base, True)] / 1e9,
        "matmul_gflops": matmul,
    }
    roofline["fraction_of_matmul"] = (
        max(roofline["achieved_gflops_graph"], roofline["achieved_gflops_xla"]) / matmul
    )
    rules = chunk_rules(d, width, batch, num_steps, rounds=rounds)
    for row in rules:
        row["fraction_of_matmul"] = row["achieved_gflops"] / matmul

    if quick:
        grid = [(8, 32, 128, 2), (8, 64, 128, 2), (16, 32, 128, 2)]
    else:
        grid = [(43, 256, n, 6) for n in (500, 1000, 2000)]
        grid += [(43, m, 2000, 6) for m in (64, 128)]
        grid += [(dim, 256, 2000, 6) for dim in (11, 22)]
    scaling_seconds = time_steps([(*config, False) for config in grid], rounds=rounds)
    reference = grid[0]
    scaling = []
    for config in grid:
        measured = scaling_seconds[(*config, False)] / scaling_seconds[(*reference, False)]
        predicted = step_flops(*config) / step_flops(*reference)
        scaling.append(
            {
                "d": config[0],
                "width": config[1],
                "batch": config[2],
                "num_steps": config[3],
                "seconds": scaling_seconds[(*config, False)],
                "time_ratio": measured,
                "flop_ratio": predicted,
            }
        )
    memory = {"graph": peak_memory_of_training(*base)}
    if not quick:
        memory["xla"] = peak_memory_of_training(*base, jit_compile=True)
    return {
        "benchmark": "training_speed",
        "quick": quick,
        "roofline": roofline,
        "caches": hardware.cpu_caches(),
        "chunk_rules": rules,
        "scaling": scaling,
        "peak_memory_gb": memory,
        "peak_memory_config": dict(zip(("d", "width", "batch", "num_steps"), base)),
        "nan_free": all(math.isfinite(v) for v in seconds.values()),
    }
