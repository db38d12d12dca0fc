"""What the first call costs: tracing and compilation against a steady call.

For each setting, a fresh :class:`tfotflow.OTFlowModel` is built and timed as a user meets
it: the first training step (``train_on_batch``, tracing included) against the median of the
steady steps after it; the first ``log_prob`` at the evaluation step count against steady
ones; and ``log_prob`` at a new step count, which runs the same compiled loop (no new trace) and
should cost in proportion to its steps. Ratios within one process; a warm-up model of another
shape absorbs TensorFlow's own start-up first.
"""

import time

import tensorflow as tf

from tfotflow._keras import keras
from tfotflow.bench.timing import interleaved_medians
from tfotflow.hardware import use_xla
from tfotflow.model import OTFlowModel

# name: (d, width, batch, training steps, evaluation steps, dtype) — the paper's settings.
SETTINGS = {
    "toy": (2, 32, 5000, 8, 8, "float64"),
    "miniboone": (43, 256, 2000, 6, 18, "float32"),
    "bsds300": (63, 512, 300, 14, 40, "float32"),
}
QUICK_SETTINGS = {"toy": (2, 16, 512, 4, 8, "float64"), "small": (8, 32, 256, 2, 6, "float32")}


def _timed(function):
    start = time.perf_counter()
    result = function()
    for value in tf.nest.flatten(result):
        if hasattr(value, "numpy"):
            value.numpy()
    return time.perf_counter() - start


def first_and_steady(d, width, batch, num_steps, eval_num_steps, dtype, *, rounds=3):
    """Seconds of the first and of steady training steps and ``log_prob`` calls."""
    keras.utils.set_random_seed(0)
    model = OTFlowModel(
        d, width=width, num_steps=num_steps, eval_num_steps=eval_num_steps, dtype=dtype
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=use_xla(d))
    x = tf.random.normal([batch, d], dtype=dtype)
    first_step = _timed(lambda: model.train_on_batch(x, return_dict=True))
    first_log_prob = _timed(lambda: model.log_prob(x))
    other_steps = eval_num_steps + eval_num_steps // 2
    first_other = _timed(lambda: model.log_prob(x, num_steps=other_steps))
    steady = interleaved_medians(
        {
            "step": lambda: model.train_on_batch(x, return_dict=True),
            "log_prob": lambda: model.log_prob(x),
            "log_prob_other": lambda: model.log_prob(x, num_steps=other_steps),
        },
        rounds=rounds,
        warmup=0,
    )
    return {
        "d": d,
        "width": width,
        "batch": batch,
        "num_steps": num_steps,
        "eval_num_steps": eval_num_steps,
        "other_num_steps": other_steps,
        "dtype": dtype,
        "xla": use_xla(d),
        "first_step_seconds": first_step,
        "steady_step_seconds": steady["step"],
        "first_step_ratio": first_step / steady["step"],
        "first_log_prob_seconds": first_log_prob,
        "steady_log_prob_seconds": steady["log_prob"],
        "first_log_prob_ratio": first_log_prob / steady["log_prob"],
        "first_other_steps_log_prob_seconds": first_other,
        "steady_other_steps_log_prob_seconds": steady["log_prob_other"],
        "first_other_steps_ratio": first_other / steady["log_prob_other"],
    }


def run(quick=False):
    """First-call ratios for each setting (toy d = 2, MINIBOONE d = 43, BSDS300 d = 63)."""
    settings = QUICK_SETTINGS if quick else SETTINGS
    first_and_steady(3, 8, 16, 1, 1, "float32", rounds=1)  # TensorFlow's own start-up
    rows = [
        {"setting": name, **first_and_steady(*config, rounds=2 if quick else 3)}
        for name, config in settings.items()
    ]
    return {"benchmark": "startup", "quick": quick, "rows": rows}
