"""Exact trace in closed form vs autodiff exact trace vs Hutchinson, and the roofline.

For each problem size the closed-form ``Potential.space_time_gradient_and_trace`` is timed
against (a) the exact trace of the velocity's autodiff Jacobian (``tfb.ffjord
.trace_jacobian_exact``) and (b) TFP's one-probe and k-probe Hutchinson estimators
(``tfb.ffjord.trace_jacobian_hutchinson``), all on the same velocity v = −∇ₓΦ, plus the gradient
alone. The closed form does ≈ 2·n·M·m²·d flops; its GFLOP/s is reported next to the machine's
measured rate for the same [n·d, m] × [m, m] product.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfotflow.bench.timing import interleaved_medians, matmul_gflops, peak_memory_gb
from tfotflow.potential import Potential

tfb = tfp.bijectors

# (d, width, batch): the paper's widths; batch 2000 at MINIBOONE size.
FULL_SIZES = [(2, 32, 5000), (6, 128, 2000), (43, 256, 2000), (63, 512, 300), (784, 256, 64)]
QUICK_SIZES = [(2, 32, 500), (43, 64, 100)]


def _contenders(potential, x, t, probes):
    weights = potential.read_weights()

    def space_time(points):
        return tf.concat([points, tf.fill([tf.shape(points)[0], 1], t)], axis=1)

    def velocity(time, points):
        gradient_x, _ = potential.gradient(points, time)
        return -gradient_x

    exact_autodiff = tfb.ffjord.trace_jacobian_exact(velocity, x.shape, x.dtype)
    hutchinson = {
        k: tfb.ffjord.trace_jacobian_hutchinson(velocity, x.shape, x.dtype, num_samples=k)
        for k in probes
    }

    def summed(augmented):
        def run(points):
            derivative, trace = augmented(t, (points, tf.zeros_like(points)))
            return derivative, tf.reduce_sum(trace, axis=-1)

        return run

    functions = {
        "closed_form_exact": lambda points: potential.space_time_gradient_and_trace(
            space_time(points), weights
        ),
        "gradient_only": lambda points: potential.gradient(points, t),
        "autodiff_exact": summed(exact_autodiff),
        **{f"hutchinson_{k}": summed(h) for k, h in hutchinson.items()},
    }
    compiled = {name: tf.function(f) for name, f in functions.items()}
    return {name: (lambda f=f: f(x)) for name, f in compiled.items()}


def _errors(potential, x, t, probes):
    """Relative error of each estimator against the closed form (float64 on a small batch)."""
    _, exact = potential.gradient_and_trace(x, t)

    def velocity(time, points):
        return -potential.gradient(points, time)[0]

    errors = {}
    state = (x, tf.zeros_like(x))
    _, autodiff = tfb.ffjord.trace_jacobian_exact(velocity, x.shape, x.dtype)(t, state)
    # Our trace is of ∇²Φ; the velocity's Jacobian trace is −tr ∇²Φ.
    errors["autodiff_exact"] = float(
        tf.reduce_max(tf.abs(-tf.reduce_sum(autodiff, -1) - exact)) / tf.reduce_max(tf.abs(exact))
    )
    for k in probes:
        _, estimate = tfb.ffjord.trace_jacobian_hutchinson(
            velocity, x.shape, x.dtype, num_samples=k
        )(t, state)
        errors[f"hutchinson_{k}"] = float(
            tf.reduce_mean(tf.abs(-tf.reduce_sum(estimate, -1) - exact))
            / tf.reduce_mean(tf.abs(exact))
        )
    return errors


def run(quick=False, dtype="float32", rounds=None, probes=(1, 8)):
    """Times the trace computations; returns a JSON-ready dict (see benchmarks/README.md)."""
    sizes = QUICK_SIZES if quick else FULL_SIZES
    rounds = rounds or (2 if quick else 5)
    rows = []
    for d, width, batch in sizes:
        tf.keras.utils.set_random_seed(0)
        potential = Potential(width=width, num_layers=2, dtype=dtype)
        x = tf.random.normal([batch, d], dtype=dtype)
        potential(x)
        t = tf.constant(0.5, dtype)
        seconds = interleaved_medians(_contenders(potential, x, t, probes), rounds=rounds)
        flops = 2.0 * batch * (potential.num_layers - 1) * width**2 * d
        peak = matmul_gflops(batch * d, width, width, dtype)
        achieved = flops / seconds["closed_form_exact"] / 1e9

        small = Potential(width=width, num_layers=2, dtype="float64")
        small_x = tf.random.normal([min(batch, 64), d], dtype="float64")
        small(small_x)
        rows.append(
            {
                "d": d,
                "width": width,
                "batch": batch,
                "dtype": dtype,
                "seconds": seconds,
                "speedup_vs_autodiff_exact": seconds["autodiff_exact"]
                / seconds["closed_form_exact"],
                "ratio_to_hutchinson_1": seconds["closed_form_exact"] / seconds["hutchinson_1"],
                "ratio_to_gradient": {
                    name: value / seconds["gradient_only"] for name, value in seconds.items()
                },
                "flops": flops,
                "achieved_gflops": achieved,
                "matmul_gflops": peak,
                "fraction_of_matmul": achieved / peak,
                "relative_error": _errors(small, small_x, tf.constant(0.5, "float64"), probes),
                "peak_memory_gb": peak_memory_gb(),
            }
        )
    return {"benchmark": "trace", "quick": quick, "rows": rows}


def format_rows(result):
    """Plain-text table lines of a :func:`run` result."""
    lines = [
        f"{'d':>4} {'m':>4} {'n':>5}  {'exact s':>9} {'autodiff s':>10} {'hutch1 s':>9} "
        f"{'vs autodiff':>11} {'vs hutch1':>9} {'GFLOP/s':>8} {'matmul':>7} {'frac':>5}"
    ]
    for row in result["rows"]:
        s = row["seconds"]
        lines.append(
            f"{row['d']:>4} {row['width']:>4} {row['batch']:>5}  {s['closed_form_exact']:>9.4f} "
            f"{s['autodiff_exact']:>10.4f} {s['hutchinson_1']:>9.4f} "
            f"{row['speedup_vs_autodiff_exact']:>10.1f}x {row['ratio_to_hutchinson_1']:>8.2f}x "
            f"{row['achieved_gflops']:>8.1f} {row['matmul_gflops']:>7.1f} "
            f"{row['fraction_of_matmul']:>5.2f}"
        )
    return lines


if __name__ == "__main__":  # pragma: no cover
    import json

    result = run()
    print("\n".join(format_rows(result)))
    print(json.dumps(result, indent=1, default=np.asarray))
