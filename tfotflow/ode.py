"""Fixed-step integration of the OT-Flow dynamics, compiled once, differentiated by the discrete
adjoint.

```none
dx/dt = v = −∇ₓΦ(x, t) / α_L
dℓ/dt = −tr ∇²ₓΦ(x, t) / α_L
dR_k/dt = cost_k(x, t, ∇Φ, tr ∇²Φ, v)       for each running cost (regularizer)
```

A conditional potential Φ(x, y, t) adds the condition y to the state with dy/dt = 0: it rides
along every stage (and its gradient comes out of the adjoint like x's).

From x(0) = x, ℓ(0) = R(0) = 0 at t0, ``num_steps`` equal steps reach t1. t0 = 0 → t1 = 1 maps
data to the normal (density direction); t0 = 1 → t1 = 0 maps back (sampling). ℓ(t1) is
log |det ∂x(t1)/∂x(t0)| in both directions.

ℓ and R are quadratures: their rates depend on (t, x) only, never on ℓ or R. The solve is one
``tf.while_loop`` whose body is one Runge–Kutta step and whose trip count is a run-time tensor,
so the graph does not grow with the steps and a new step count never traces again. Its gradient
is the exact derivative of the discrete map (:func:`quadrature_solve`): the forward loop keeps
only the stage points x_{k,i} (O(num_steps · stages · n · d) memory), and the backward loop
walks the steps in reverse, re-evaluating one stage at a time under a tape. TensorFlow never
differentiates the loops themselves (its while-loop gradients keep per-iteration accumulators
of every intermediate, and nested or persistent tapes would rebuild them while tracing): both
loops are cut from the tapes, and the gradient is the adjoint's alone.
"""

import collections

import tensorflow as tf

from tfotflow import hardware
from tfotflow.potential import space_time
from tfotflow.settings import DEFAULTS, TRACES, check_trace  # noqa: F401  (re-exported)
from tfotflow.validation import check_int, check_positive_float

FlowState = collections.namedtuple("FlowState", ["x", "log_det", "costs"])
FlowState.__doc__ = """The augmented state at the end of a solve.

Attributes:
    x: the transported points x(t1), [n, d].
    log_det: ℓ(t1) = log |det ∂x(t1)/∂x(t0)|, [n].
    costs: the integrated running costs R_k(t1), [n, k] (k = 0 without running costs).
"""

FlowFields = collections.namedtuple(
    "FlowFields",
    [
        "x",
        "t",
        "gradient",
        "trace",
        "velocity",
        "alpha_transport",
        "potential",
        "weights",
        "seed",
        "condition",
    ],
    defaults=(None, None, None),
)
FlowFields.__doc__ = """What the OT-Flow dynamics computed at one Runge–Kutta stage.

Attributes:
    x: points, [n, d].
    t: time, a scalar tensor.
    gradient: ∇ₛΦ = [∇ₓΦ, ∇_yΦ, ∂ₜΦ], [n, d+k+1] (k = 0 without a condition).
    trace: tr ∇²ₓΦ, [n] (with `trace="hutchinson"`, its one-probe estimate εᵀ∇²ₓΦ ε).
    velocity: v = dx/dt = −∇ₓΦ / α_L, [n, d].
    alpha_transport: α_L, a Python float.
    potential: the :class:`tfotflow.Potential`, for regularizers that need more of it.
    weights: the potential's :class:`tfotflow.potential.PotentialWeights` for this solve; a
        regularizer evaluating the potential again passes them on
        (``potential.space_time_gradient(s, fields.weights)``, with
        ``s = space_time(x, t, fields.condition)``) so its gradient reaches them.
    seed: a stateless seed, shape [2] int32, distinct for every stage of every step and equal
        when the backward pass re-evaluates that stage; random probes must be drawn from it
        (``tf.random.stateless_normal(shape, seed=fields.seed)``). None unless a running cost
        of the solve declares that it draws probes (``cost.needs_seed = True``).
    condition: the conditions y, [n, k], or None for an unconditional potential.
"""

Tableau = collections.namedtuple("Tableau", ["a", "b", "c"])
Tableau.__doc__ = """An explicit Runge–Kutta method: stage i is evaluated at
x_i = x + h Σ_{j<i} a[i][j] k_j and time t + c[i] h; the step is x + h Σ_i b[i] k_i."""

TABLEAUS = {
    # k1 = f(t, x), k2 = f(t + h/2, x + h/2 k1), k3 = f(t + h/2, x + h/2 k2),
    # k4 = f(t + h, x + h k3);  x(t + h) = x + h/6 (k1 + 2 k2 + 2 k3 + k4)
    "rk4": Tableau(
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
        c=(0.0, 0.5, 0.5, 1.0),
    ),
    "euler": Tableau(a=((),), b=(1.0,), c=(0.0,)),
}
METHODS = tuple(TABLEAUS)


def _check_method(method):
    if method not in TABLEAUS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    return TABLEAUS[method]


def _combine(y, h, coefficients, stages):
    """y + h Σ_j coefficients[j] · stages[j] over nests, skipping zero coefficients."""
    terms = [(a, k) for a, k in zip(coefficients, stages) if a != 0.0]
    return tf.nest.map_structure(
        lambda y_i, *k_i: y_i + h * sum(a * k for (a, _), k in zip(terms, k_i)),
        y,
        *[k for _, k in terms],
    )


def runge_kutta_step(rhs, t, y, h, method="rk4"):
    """One explicit Runge–Kutta step of dy/dt = rhs(t, y) for a nested state ``y``.

    With ``method="rk4"`` the classical stages k1..k4 (see :data:`TABLEAUS`).
    """
    tableau = _check_method(method)
    stages = []
    for a_i, c_i in zip(tableau.a, tableau.c):
        stages.append(rhs(t + c_i * h, _combine(y, h, a_i, stages) if stages else y))
    return _combine(y, h, tableau.b, stages)


def solve(rhs, y0, *, t0, t1, num_steps, method="rk4"):
    """Integrates dy/dt = rhs(t, y) from t0 to t1 in ``num_steps`` equal steps (unrolled).

    A plain solver for any right-hand side, differentiable by ordinary autodiff; the OT-Flow
    solve is :func:`integrate`.

    Args:
        rhs: ``callable(t, y)`` returning dy/dt with the structure of ``y``.
        y0: the initial state, a nest of tensors.
        t0: the start time, a Python float.
        t1: the end time, a Python float (t1 < t0 integrates backwards).
        num_steps: the number of steps, a positive Python int.
        method: "rk4" (4th order) or "euler" (1st order). Defaults to "rk4".

    Returns:
        The state at t1, with the structure of ``y0``.

    Raises:
        ValueError: for an unknown ``method``; TypeError/ValueError for bad ``num_steps``.

    Example:

    >>> y = solve(lambda t, y: y, tf.constant(1.0, tf.float64), t0=0.0, t1=1.0, num_steps=8)
    >>> round(float(y), 4)  # e = 2.71828…, RK4 error ≈ 1e-5
    2.7183
    """
    num_steps = check_int("num_steps", num_steps, minimum=1)
    _check_method(method)
    dtype = tf.nest.flatten(y0)[0].dtype
    h = tf.constant((t1 - t0) / num_steps, dtype)
    y = y0
    for k in range(num_steps):
        y = runge_kutta_step(rhs, tf.constant(t0, dtype) + k * h, y, h, method)
    return y


def quadrature_solve(
    rhs, x0, q0, params, *, num_steps, t0, t1, method="rk4", seed=None, vjp_rows=None
):
    """Integrates dx/dt = f(t, x), dq/dt = g(t, x) with a loop, differentiated by the discrete
    adjoint.

    The rates of the quadratures q depend on (t, x) only, so only x drives the stages:

    ```none
    forward:  for k = 0..N−1:  x_{k,i} = x_k + h Σ_{j<i} a_ij f_{k,j},  f_{k,i}, g_{k,i} at x_{k,i}
              x_{k+1} = x_k + h Σ_i b_i f_{k,i},   q_{k+1} = q_k + h Σ_i b_i g_{k,i}
              keep x_{k,i} only                                     [N, stages, n, d]
    backward: q̄ is constant; x̄_N = ∂J/∂x_N;  for k = N−1..0, i = stages..1:
              f̄_{k,i} = h b_i x̄_{k+1} + h Σ_{j>i} a_ji x̄_{k,j},   ḡ_{k,i} = h b_i q̄
              (x̄_{k,i}, θ̄_{k,i}) = VJP of (f, g)(x_{k,i}; θ) with (f̄_{k,i}, ḡ_{k,i})
              x̄_k = x̄_{k+1} + Σ_i x̄_{k,i},   θ̄ += Σ_i θ̄_{k,i}
    ```

    This is exact backprop of the discrete Runge–Kutta map (not the continuous adjoint ODE):
    gradients equal those of the unrolled graph to rounding, while only one stage's
    intermediates are alive at a time. Points are independent (f and g act row by row), so a
    stage's VJP can also run over row chunks, at most two at a time (``vjp_rows``), which
    bounds the taped intermediates to two chunks'.

    Args:
        rhs: ``callable(t, x, params, seed) -> (f, g)``: dx/dt [n, d] and a tuple of quadrature
            rates, each shaped like its entry of ``q0`` (batch first: row r of every output
            depends on row r of x only). ``seed`` is a stateless seed [2] for
            the stage (or None when ``seed`` is None); the backward pass re-evaluates each
            stage with the seed the forward pass used.
        x0: the initial points, [n, d].
        q0: a tuple of initial quadrature values.
        params: a nest of tensors ``rhs`` depends on; their gradients come from the adjoint.
        num_steps: the number of steps, an int32 scalar (a tensor: no retracing per value).
        t0: the start time, a scalar of x's dtype.
        t1: the end time, a scalar of x's dtype.
        method: "rk4" or "euler". Defaults to "rk4".
        seed: a stateless seed [2] int32 from which every stage's seed is derived, or None.
            Defaults to None.
        vjp_rows: points per chunk of the backward pass's stage VJPs, or None for the whole
            batch. Ignored when ``seed`` is given (a stage's random draws depend on its batch
            shape) or the batch size is not static. Defaults to None.

    Returns:
        (x(t1), q(t1)).
    """
    tableau = _check_method(method)
    num_stages = len(tableau.b)
    dtype = x0.dtype
    num_steps = tf.convert_to_tensor(num_steps, tf.int32)
    t0, t1 = tf.cast(t0, dtype), tf.cast(t1, dtype)
    h = (t1 - t0) / tf.cast(num_steps, dtype)
    flat_params = tf.nest.flatten(params)
    num_q = len(q0)
    n = x0.shape[0]
    sizes = None  # row chunks of the backward stage VJPs
    if vjp_rows is not None and seed is None and n is not None and n > vjp_rows:
        chunks = -(-n // vjp_rows)
        sizes = hardware.even_sizes(n, chunks)

    def evaluate(k, i, x, flat, t0, h):
        """f and g (as one flat list) of stage i of step k at x."""
        t = t0 + (tf.cast(k, dtype) + tableau.c[i]) * h
        stage_seed = (
            None
            if seed is None
            else tf.random.experimental.stateless_fold_in(seed, k * num_stages + i)
        )
        f, g = rhs(t, x, tf.nest.pack_sequence_as(params, flat), stage_seed)
        return [f, *g]

    @tf.custom_gradient
    def solve_loop(x, *args):
        # The loops are cut from the tapes (the gradient is `backward`'s alone), so a tape that
        # records for second derivatives (persistent or nested) does not wrap and
        # differentiate them while they are built: that costs minutes of graph building.
        x, *args = tf.nest.map_structure(tf.stop_gradient, (x, *args))
        q, flat = list(args[:num_q]), list(args[num_q:])

        def step(k, x, q, stages):
            points, rates = [], []
            for i in range(num_stages):
                points.append(_combine(x, h, tableau.a[i], [r[0] for r in rates]) if i else x)
                rates.append(evaluate(k, i, points[i], flat, t0, h))
            x = _combine(x, h, tableau.b, [r[0] for r in rates])
            q = [_combine(q_j, h, tableau.b, [r[1 + j] for r in rates]) for j, q_j in enumerate(q)]
            return k + 1, x, q, stages.write(k, tf.stack(points))

        stages = tf.TensorArray(
            dtype, size=num_steps, element_shape=tf.TensorShape([num_stages]).concatenate(x.shape)
        )
        _, x1, q1, stages = tf.while_loop(
            lambda k, *_: k < num_steps, step, (tf.constant(0), x, q, stages), name="steps"
        )
        # [N, stages, n, d], stacked to a plain tensor for XLA's sake, and what the backward
        # pass reads of the forward one: cut from the tapes as well.
        stages = tf.stop_gradient(stages.stack())

        def backward(x_bar, *q_bar):
            x_bar = tf.zeros_like(x) if x_bar is None else x_bar
            q_bar = [tf.zeros_like(v) if g is None else g for g, v in zip(q_bar, q)]
            upstream = [x_bar, *q_bar]
            # Differentiable once: the adjoint loop is cut from the tapes too (its own
            # derivatives would not be the solve's second derivatives).
            x_bar, q_bar, flat_, t0_, h_ = tf.nest.map_structure(
                tf.stop_gradient, (x_bar, q_bar, flat, t0, h)
            )

            def stage_vjp(k, i, point, f_bar, g_bars):
                """(x̄, θ̄) of stage i of step k at ``point``, for cotangents (f̄, ḡ)."""
                with tf.GradientTape() as tape:
                    tape.watch([point, *flat_])
                    rates = evaluate(k, i, point, flat_, t0_, h_)
                bars = tape.gradient(
                    rates,
                    [point, *flat_],
                    output_gradients=[f_bar, *g_bars],
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
                return bars[0], bars[1:]

            def chunked_stage_vjp(k, i, point, f_bar, g_bars):
                """:func:`stage_vjp` over row chunks, at most two running at a time."""
                if sizes is None:
                    return stage_vjp(k, i, point, f_bar, g_bars)
                pieces = [tf.split(v, sizes) for v in (point, f_bar, *g_bars)]
                point_bars, p_bars = [], None
                for piece in zip(*pieces):
                    if len(point_bars) >= 2:  # two chunks at a time (two cores), no more
                        with tf.control_dependencies([point_bars[-2]]):
                            piece = [tf.identity(v) for v in piece]
                    point_bar, p_bar = stage_vjp(k, i, piece[0], piece[1], piece[2:])
                    point_bars.append(point_bar)
                    p_bars = p_bar if p_bars is None else [a + b for a, b in zip(p_bars, p_bar)]
                return tf.concat(point_bars, axis=0), p_bars

            def adjoint_step(k, x_bar, p_bar):
                points = tf.gather(stages, k)
                point_bars = [None] * num_stages
                for i in reversed(range(num_stages)):
                    later = [
                        (tableau.a[j][i], point_bars[j])
                        for j in range(i + 1, num_stages)
                        if tableau.a[j][i] != 0.0
                    ]
                    f_bar = h_ * tableau.b[i] * x_bar + sum(h_ * a * bar for a, bar in later)
                    g_bars = [h_ * tableau.b[i] * g for g in q_bar]
                    point_bars[i], bars = chunked_stage_vjp(k, i, points[i], f_bar, g_bars)
                    p_bar = [p + g for p, g in zip(p_bar, bars)]
                return k - 1, x_bar + sum(point_bars), p_bar

            _, x0_bar, p_bar = tf.while_loop(
                lambda k, *_: k >= 0,
                adjoint_step,
                (num_steps - 1, x_bar, [tf.zeros_like(p) for p in flat_]),
                name="adjoint_steps",
            )
            return _first_order_only([x0_bar, *q_bar, *p_bar], upstream + flat)

        return [x1, *q1], backward

    outputs = solve_loop(x0, *q0, *flat_params)
    return outputs[0], tuple(outputs[1:])


def _first_order_only(outputs, sources):
    """``outputs`` unchanged, with a derivative that fails when run: they are a gradient
    computed by :func:`quadrature_solve`'s adjoint loop, which is not itself differentiated.

    ``sources`` (what the gradient depends on) tie the failure to every path a second
    derivative would take, so it fails instead of silently returning zeros.
    """

    @tf.custom_gradient
    def identity(*tensors):
        def no_second_derivative(*upstream):
            check = tf.debugging.Assert(
                False,
                [
                    "Second derivatives through the OT-Flow solve are not available: its "
                    "gradient (the discrete adjoint) is computed once, not differentiated."
                ],
            )
            with tf.control_dependencies([check]):
                return [tf.zeros_like(tensor) for tensor in tensors]

        return list(tensors[: len(outputs)]), no_second_derivative

    return identity(*outputs, *sources)


def hutchinson_trace(potential, x, t, weights, seed, condition=None):
    """(∇ₛΦ, εᵀ ∇²ₓΦ ε): the gradient and a one-probe estimate of the Hessian trace.

    ε is a Rademacher vector per point drawn from ``seed`` (E[εᵀHε] = tr H; its variance,
    2 Σ_{i≠j} H_ij², is the smallest of the one-probe estimators). The Hessian–probe product
    is one reverse pass through the closed-form gradient (no Jacobian recurrence), so its
    cost does not grow with d the way the exact trace's does.
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        gradient = potential.space_time_gradient(space_time(x, t, condition), weights)
        gradient_x = gradient[:, : potential.dim]
    signs = tf.random.stateless_uniform(tf.shape(x), seed=seed, maxval=2, dtype=tf.int32)
    probe = tf.cast(2 * signs - 1, x.dtype)
    hessian_probe = tape.gradient(gradient_x, x, output_gradients=probe)
    return gradient, tf.reduce_sum(probe * hessian_probe, axis=-1)


def flow_dynamics(
    potential, *, alpha_transport=1.0, running_costs=(), log_det=True, trace=DEFAULTS["trace"]
):
    """The right-hand side of the augmented OT-Flow ODE, for :func:`quadrature_solve`.

    Args:
        potential: a built :class:`tfotflow.Potential`.
        alpha_transport: α_L, dividing the velocity and the log-det rate. Defaults to 1.0.
        running_costs: regularizer functions ``cost(FlowFields) -> [n]`` (see
            :mod:`tfotflow.regularizers`), one state column each. Defaults to none.
        log_det: integrate ℓ. Without it (and without running costs) only the gradient is
            evaluated, skipping the O(m²d) trace: transport alone, e.g. for sampling, and dℓ/dt
            is reported as 0. Defaults to True.
        trace: "exact" (the closed-form trace) or "hutchinson" (:func:`hutchinson_trace`,
            an unbiased one-probe estimate drawn from the stage's seed, for training).
            Defaults to "exact".

    Returns:
        ``rhs(t, state, weights, seed) -> (dstate/dt, (dℓ/dt [n], dR/dt [n, k]))`` with
        ``weights`` the potential's :class:`tfotflow.potential.PotentialWeights`. The state is
        the points x [n, d], or for a conditional potential (x, y), [n, d + condition_dim],
        whose y-columns do not move.
    """
    with_trace = log_det or bool(running_costs)
    d = potential.dim

    def rhs(t, state, weights, seed):
        x, condition = (state[:, :d], state[:, d:]) if potential.condition_dim else (state, None)
        if not with_trace:
            gradient = potential.space_time_gradient(space_time(x, t, condition), weights)
            trace_value = tf.zeros_like(x[:, 0])
        elif trace == "hutchinson":
            gradient, trace_value = hutchinson_trace(potential, x, t, weights, seed, condition)
        else:
            gradient, trace_value = potential.space_time_gradient_and_trace(
                space_time(x, t, condition), weights
            )
        velocity = -gradient[:, :d] / alpha_transport
        fields = FlowFields(
            x,
            t,
            gradient,
            trace_value,
            velocity,
            alpha_transport,
            potential,
            weights,
            seed,
            condition,
        )
        rates = [cost(fields) for cost in running_costs]
        costs = tf.stack(rates, axis=-1) if rates else tf.zeros_like(x[:, :0])
        if condition is not None:  # the condition stands still
            velocity = tf.concat([velocity, tf.zeros_like(condition)], axis=-1)
        return velocity, (-trace_value / alpha_transport, costs)

    return rhs


def _integrate(
    potential,
    x,
    condition,
    num_steps,
    t0,
    t1,
    alpha_transport,
    running_costs,
    method,
    log_det,
    trace,
):
    rhs = flow_dynamics(
        potential,
        alpha_transport=alpha_transport,
        running_costs=running_costs,
        log_det=log_det,
        trace=trace,
    )
    # One seed per solve, from which each stage's seed is folded, for a Hutchinson trace and
    # for running costs that draw random probes (they declare `needs_seed = True`).
    needs_seed = trace == "hutchinson" or any(
        getattr(cost, "needs_seed", False) for cost in running_costs
    )
    seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32) if needs_seed else None
    # The backward pass tapes one stage over row chunks of the trace's chunk size.
    chunk_elements = hardware.trace_chunk_elements(x.dtype.size)
    vjp_rows = (
        None
        if chunk_elements is None
        else max(1, chunk_elements // (potential.dim * potential.width))
    )
    quadratures = (
        tf.zeros_like(x[:, 0]),
        tf.zeros(tf.stack([tf.shape(x)[0], len(running_costs)]), x.dtype),
    )
    state = x if condition is None else tf.concat([x, condition], axis=-1)
    state1, (log_det, costs) = quadrature_solve(
        rhs,
        state,
        quadratures,
        potential.read_weights(),
        num_steps=num_steps,
        t0=t0,
        t1=t1,
        method=method,
        seed=seed,
        vjp_rows=vjp_rows,
    )
    x1 = state1 if condition is None else state1[:, : potential.dim]
    return FlowState(x1, log_det, costs)


_COMPILED = {
    False: tf.function(_integrate),
    True: tf.function(_integrate, jit_compile=True),
}


def compiled_integrator(jit_compile):
    """The ``tf.function`` behind :func:`integrate` (for inspecting its tracing count)."""
    return _COMPILED[bool(jit_compile)]


def integrate(
    potential,
    x,
    *,
    num_steps,
    reverse=False,
    alpha_transport=1.0,
    running_costs=(),
    method="rk4",
    jit_compile=False,
    time_span=None,
    log_det=True,
    trace=DEFAULTS["trace"],
    condition=None,
):
    """Transports points along the OT-Flow and accumulates the log-det and running costs.

    Args:
        potential: a built :class:`tfotflow.Potential`.
        x: points, a float tensor of shape [n, d] in the potential's dtype.
        num_steps: the number of RK4 steps over the unit time interval.
        reverse: integrate from t = 1 back to t = 0 (sampling) instead of 0 → 1 (density).
            Defaults to False.
        alpha_transport: α_L. Defaults to 1.0.
        running_costs: a tuple of regularizer functions. Defaults to none.
        method: "rk4" or "euler". Defaults to "rk4".
        jit_compile: compile the solve with XLA. Inside a ``tf.function`` that is itself
            compiled by XLA (a Keras step with ``jit_compile=True``), pass False: the solve is
            then part of the enclosing program. Defaults to False.
        time_span: ``(t0, t1)`` to integrate only part of the unit interval (for trajectories);
            overrides ``reverse``. Defaults to None.
        log_det: integrate the log-determinant (the exact trace); False transports points
            only, several times faster, and returns ℓ = 0. Defaults to True.
        trace: "exact" or "hutchinson" (a one-probe estimate of the trace, unbiased for ℓ
            and cheaper for large d: for training only). Defaults to "exact".
        condition: the conditions y [n, k] of a conditional potential (one row per point),
            None for an unconditional one. Defaults to None.

    Returns:
        :class:`FlowState` ``(x(t1), ℓ(t1), R(t1))``, differentiable (by the discrete adjoint)
        with respect to ``x``, ``condition`` and the potential's weights.

    Raises:
        ValueError: for a condition that is missing, unexpected or of the wrong width.

    Called eagerly, the solve runs as a compiled function, traced once per input shape,
    dtype, potential and setting; the step count, direction and time span are run-time values
    and never cause a new trace. Inside a ``tf.function`` it is traced into the enclosing graph
    (a nested XLA function only with ``jit_compile=True``): XLA compiling the gradient of a
    nested function call can take every value feeding the call (the weights, the data) as a
    compile-time constant, and then compiles again at every training step.
    """
    num_steps = check_int("num_steps", num_steps, minimum=1)
    alpha_transport = check_positive_float("alpha_transport", alpha_transport)
    _check_method(method)
    check_trace(trace)
    t0, t1 = (1.0, 0.0) if reverse else (0.0, 1.0)
    if time_span is not None:
        t0, t1 = (float(t) for t in time_span)
    dtype = x.dtype
    condition = potential.check_condition(condition)
    inline = tf.inside_function() and not jit_compile
    return (_integrate if inline else _COMPILED[bool(jit_compile)])(
        potential,
        x,
        condition,
        tf.constant(num_steps, tf.int32),
        tf.constant(t0, dtype),
        tf.constant(t1, dtype),
        alpha_transport,
        tuple(running_costs),
        method,
        bool(log_det),
        trace,
    )
