"""OT-Flow against TFP's FFJORD on the same machine, in one process, interleaved.

FFJORD (``tfb.FFJORD``) gets a state network of about the same parameter count as our
potential: an MLP (x, t) → dx/dt with two tanh hidden layers. It runs with TFP's defaults
(DormandPrince, one-probe Hutchinson trace) and, for the "same work, same solver" comparison,
with the exact autodiff trace and our fixed-step RK4. Reported per problem: time per training
iteration, ``log_prob`` and sampling throughput, function evaluations, parameter counts, and
the peak resident memory so far.
"""

import collections
import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfotflow import ode
from tfotflow._keras import keras
from tfotflow.bench.timing import interleaved_medians, peak_memory_gb, training_step
from tfotflow.hardware import use_xla
from tfotflow.model import OTFlowModel

tfb, tfd = tfp.bijectors, tfp.distributions

_Solution = collections.namedtuple("_Solution", ["states"])


def fixed_rk4_solver(num_steps):
    """A TFP ``ode_solve_fn`` doing ``num_steps`` RK4 steps (tfotflow's solver)."""

    def solve(ode_fn, initial_time, initial_state, solution_times, **kwargs):
        final = ode.solve(
            lambda t, y: ode_fn(t, y),
            initial_state,
            t0=float(initial_time),
            t1=float(solution_times[-1]),
            num_steps=num_steps,
        )
        return _Solution(tf.nest.map_structure(lambda s: s[tf.newaxis], final))

    return solve


def matched_hidden_width(d, parameters):
    """h such that the MLP d+1 → h → h → d has about ``parameters`` weights."""
    # (d+1)h + h + h² + h + h d + d = h² + (2d + 3) h + d
    b = 2 * d + 3
    return max(4, round((-b + math.sqrt(b * b + 4 * (parameters - d))) / 2))


class CountedField(tf.Module):
    """The FFJORD state network, counting its evaluations in a variable."""

    def __init__(self, d, hidden, dtype):
        super().__init__()
        self.network = keras.Sequential(
            [
                keras.Input((d + 1,), dtype=dtype),
                keras.layers.Dense(hidden, activation="tanh", dtype=dtype),
                keras.layers.Dense(hidden, activation="tanh", dtype=dtype),
                keras.layers.Dense(d, dtype=dtype),
            ]
        )
        self.evaluations = tf.Variable(0, dtype=tf.int64, trainable=False)

    def __call__(self, t, x):
        self.evaluations.assign_add(1)
        time = tf.fill([tf.shape(x)[0], 1], tf.cast(t, x.dtype))
        return self.network(tf.concat([x, time], axis=1))

    @property
    def num_parameters(self):
        return int(sum(math.prod(v.shape) for v in self.network.weights))


def ffjord_distribution(field, d, dtype, *, trace="hutchinson", num_steps=None, solver=None):
    """``TransformedDistribution(N(0, I), FFJORD(field))``.

    Args:
        trace: "hutchinson", "exact", or a TFP trace augmentation function.
        num_steps: fixed RK4 steps (tfotflow's solver); None for TFP's default DormandPrince.
        solver: an ``ode_solve_fn`` to use instead (overrides ``num_steps``).
    """
    trace_fn = {
        "hutchinson": tfb.ffjord.trace_jacobian_hutchinson,
        "exact": tfb.ffjord.trace_jacobian_exact,
    }.get(trace, trace)
    if solver is None and num_steps is not None:
        solver = fixed_rk4_solver(num_steps)
    bijector = tfb.FFJORD(
        state_time_derivative_fn=field,
        ode_solve_fn=solver,
        trace_augmentation_fn=trace_fn,
        dtype=dtype,
    )
    return tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(d, dtype)), bijector)


def compare(
    d, width, batch, *, num_steps, dtype="float32", rounds=3, ffjord_rk4=True, ffjord_adaptive=True
):
    """One problem size: OT-Flow vs FFJORD variants; returns a JSON-ready row."""
    keras.utils.set_random_seed(0)
    x = tf.random.normal([batch, d], dtype=dtype)
    model = OTFlowModel(d, width=width, num_steps=num_steps, dtype=dtype)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ours_parameters = int(sum(math.prod(v.shape) for v in model.potential.weights))
    hidden = matched_hidden_width(d, ours_parameters)

    jit = use_xla(d)  # as tfotflow's training does
    ours_step = training_step(
        lambda x: model.objective(x)[0],  # traced into the step, compiled as it is
        model.trainable_variables,
        model.optimizer,
        jit_compile=jit,
    )
    ours_log_prob = tf.function(lambda x: model.distribution.log_prob(x))
    ours_sample = tf.function(lambda: model.distribution.sample(batch, seed=(1, 2)))
    contenders = {
        "otflow_train_step": lambda: ours_step(x),
        "otflow_log_prob": lambda: ours_log_prob(x),
        "otflow_sample": ours_sample,
    }
    fields = {}
    variants = []
    if ffjord_adaptive:
        variants.append(("ffjord_hutchinson_dopri", "hutchinson", None))
    if ffjord_rk4:
        variants.append(("ffjord_exact_rk4", "exact", num_steps))
    for name, trace, steps in variants:
        field = CountedField(d, hidden, dtype)
        fields[name] = field
        distribution = ffjord_distribution(field, d, dtype, trace=trace, num_steps=steps)
        optimizer = keras.optimizers.Adam(1e-3)
        step = training_step(
            lambda x, dist=distribution: -tf.reduce_mean(dist.log_prob(x)),
            field.network.trainable_variables,
            optimizer,
        )
        log_prob = tf.function(lambda x, dist=distribution: dist.log_prob(x))
        sample = tf.function(lambda dist=distribution: dist.sample(batch, seed=(1, 2)))
        contenders[f"{name}_train_step"] = lambda step=step: step(x)
        contenders[f"{name}_log_prob"] = lambda log_prob=log_prob: log_prob(x)
        contenders[f"{name}_sample"] = sample
    seconds = interleaved_medians(contenders, rounds=rounds)

    evaluations = {}
    for name, field in fields.items():
        field.evaluations.assign(0)
        contenders[f"{name}_log_prob"]()
        evaluations[name] = int(field.evaluations.numpy())
    row = {
        "d": d,
        "width": width,
        "batch": batch,
        "num_steps": num_steps,
        "dtype": dtype,
        "peers": list(fields),
        "otflow_parameters": ours_parameters,
        "ffjord_hidden": hidden,
        "ffjord_parameters": next(iter(fields.values())).num_parameters if fields else None,
        "seconds": seconds,
        "throughput_per_second": {
            key: batch / value for key, value in seconds.items() if not key.endswith("step")
        },
        "function_evaluations_log_prob": {"otflow": 4 * num_steps, **evaluations},
        "peak_memory_gb": peak_memory_gb(),
    }
    row["speedups"] = {
        f"{name}_{what}": seconds[f"{name}_{what}"] / seconds[f"otflow_{what}"]
        for name in fields
        for what in ("train_step", "log_prob", "sample")
    }
    return row


def run(quick=False):
    """OT-Flow vs FFJORD on a toy 2-D size and on MINIBOONE's size (d = 43, batch 2000)."""
    if quick:
        rows = [compare(2, 16, 256, num_steps=4, rounds=2)]
    else:
        rows = [
            compare(2, 32, 5000, num_steps=8, dtype="float64"),
            compare(43, 256, 2000, num_steps=6, rounds=3, ffjord_adaptive=False),
        ]
    return {"benchmark": "peers", "quick": quick, "rows": rows}
