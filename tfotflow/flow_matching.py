"""A simulation-free warm start of the potential: optimal-transport conditional flow matching.

Maximum-likelihood training solves the ODE and its exact trace at every step. Before that, the
potential can learn the transport directly, without either: pair a batch of data x₀ with
normal draws z by optimal transport within the batch, take t ~ U[0, 1] and regress OT-Flow's
velocity onto the straight line between each pair (Lipman et al. 2023; Tong et al. 2024,
OT-CFM; Pooladian et al. 2023):

```none
x_t = (1 − t)·x₀ + t·z,     L = mean ‖ −∇ₓΦ(x_t, t) / α_L − (z − x₀) ‖²
```

A step costs one closed-form gradient per point plus the coupling (a few Sinkhorn sweeps over
the [n, n] cost matrix), a small fraction of a maximum-likelihood step. Under an exact OT
coupling the target field is the gradient of a potential (Brenier; McCann's displacement
interpolation), which is the form OT-Flow's velocity takes; maximum likelihood then refines
the density (:func:`tfotflow.training.train` with ``warm_start_steps``).
"""

import tensorflow as tf

from tfotflow import serialization
from tfotflow._keras import keras
from tfotflow.callbacks import ClipWeights
from tfotflow.checks import check_choice
from tfotflow.potential import space_time
from tfotflow.settings import COUPLINGS, DEFAULTS
from tfotflow.validation import batch_points_and_conditions, check_int, check_positive_float


def sinkhorn_log_plan(cost, *, epsilon, iterations):
    """log π of the entropic optimal-transport plan between two uniform point sets.

    ```none
    π = argmin ⟨π, C⟩ − ε H(π)  subject to  π 1 = 1/n,  πᵀ 1 = 1/n,
    π_ij = exp(f_i + g_j − C_ij / ε)
    ```

    with the log-scalings f, g found by ``iterations`` alternating log-domain Sinkhorn updates
    (stable for small ε). The columns sum to 1/n exactly, the rows to 1/n within the
    iteration's tolerance.

    Args:
        cost: C, a [n, n] float tensor.
        epsilon: ε, a positive scalar in the units of ``cost``.
        iterations: Sinkhorn sweeps (each one row and one column update).

    Returns:
        log π, [n, n].
    """
    n = tf.shape(cost)[0]
    log_marginal = -tf.math.log(tf.cast(n, cost.dtype))
    scaled = -cost / epsilon

    def sweep(i, f, g):
        f = log_marginal - tf.reduce_logsumexp(scaled + g[None, :], axis=1)
        g = log_marginal - tf.reduce_logsumexp(scaled + f[:, None], axis=0)
        return i + 1, f, g

    zeros = tf.zeros([n], cost.dtype)
    _, f, g = tf.while_loop(lambda i, f, g: i < iterations, sweep, (0, zeros, zeros))
    return scaled + f[:, None] + g[None, :]


def ot_pairs(
    x0, z, *, seed, relative_epsilon=0.01, iterations=DEFAULTS["warm_start_sinkhorn_iterations"]
):
    """Reorders ``z`` so that (x0[i], z[i]) follow the batch's entropic OT plan.

    For each row i the partner j is drawn from π(i, ·) (the plan conditioned on x0[i]), so
    every data point is used once. ε is ``relative_epsilon`` times the mean squared distance
    (the plan tends to the exact assignment as it goes to zero).

    Args:
        x0: [n, d] data points.
        z: [n, d] normal draws.
        seed: a stateless seed, shape [2].
        relative_epsilon: ε over the mean cost. Defaults to 0.01.
        iterations: Sinkhorn sweeps. Defaults to 100.

    Returns:
        ``z`` reordered, [n, d] (no gradient flows through the pairing).
    """
    x0, z = tf.stop_gradient(x0), tf.stop_gradient(z)
    cost = tf.reduce_sum(tf.square(x0[:, None, :] - z[None, :, :]), axis=-1)
    epsilon = relative_epsilon * tf.reduce_mean(cost)
    log_plan = sinkhorn_log_plan(cost, epsilon=epsilon, iterations=iterations)
    # Gumbel-max: argmax_j (log π_ij + G_ij) is distributed as π(i, ·) / Σ_j π(i, j).
    uniform = tf.random.stateless_uniform(
        tf.shape(log_plan), seed=seed, minval=1e-20, maxval=1.0, dtype=log_plan.dtype
    )
    partners = tf.argmax(log_plan - tf.math.log(-tf.math.log(uniform)), axis=1)
    return tf.gather(z, partners)


def flow_matching_loss(potential, x0, z, t, *, alpha_transport=1.0, condition=None):
    """mean ‖ −∇ₓΦ(x_t, y, t)/α_L − (z − x₀) ‖² with x_t = (1 − t)·x₀ + t·z.

    Args:
        potential: a built :class:`tfotflow.Potential`.
        x0: data points, [n, d].
        z: the normal points paired with them, [n, d].
        t: times, [n, 1].
        alpha_transport: α_L. Defaults to 1.0.
        condition: each data point's condition y [n, k] for a conditional potential, or None.

    Returns:
        The loss, a scalar (per point: summed over the d coordinates).
    """
    x_t = (1.0 - t) * x0 + t * z
    s = space_time(x_t, t, condition)
    velocity = -potential.space_time_gradient(s)[:, : potential.dim] / alpha_transport
    return tf.reduce_mean(tf.reduce_sum(tf.square(velocity - (z - x0)), axis=-1))


@serialization.register
class FlowMatching(keras.Model):
    """Trains an :class:`tfotflow.OTFlowModel`'s potential by OT conditional flow matching.

    The two models share the potential: ``fit`` on this one moves the OT-Flow model's weights.
    Each step draws z ~ N(0, I) and t ~ U[0, 1] from a stateless seed folded with the step
    number (reproducible, and the same under every ``tf.distribute`` strategy), pairs the
    batch by :func:`ot_pairs` (``coupling="ot"``) or keeps each x₀ with its own z
    (``"independent"``: no [n, n] cost, no Sinkhorn) and reports the loss as
    ``flow_matching``. Either coupling's regression has its optimum at the gradient field that
    moves the interpolation's marginals; the OT coupling makes them straighter. Evaluation
    (``val_flow_matching`` in ``fit``) pairs independently, with the draws of step 0, so a
    validation loss is a fixed function of the weights.

    A conditional model (``condition_dim > 0``) trains on (points, conditions) batches with
    the independent coupling (each x₀ keeps its own z): the target of conditional flow
    matching must transport p(x | y) to the normal for every y, which a coupling across
    points of different conditions would not.

    Args:
        flow: the :class:`tfotflow.OTFlowModel` to warm-start (its potential and α_L).
        relative_epsilon: the Sinkhorn ε over the batch's mean squared distance. Defaults to
            0.01.
        sinkhorn_iterations: Sinkhorn sweeps per step. Defaults to 100.
        seed: the seed of the normal draws, times and pairings. Defaults to 0.
        coupling: "ot" or "independent". Defaults to "ot".
        clip: after each update, the potential's weights are clipped to [−clip, clip] (as
            :class:`tfotflow.callbacks.ClipWeights` does in maximum-likelihood training, so
            the warm-started weights survive it), or None. Defaults to 1.5.

    Example:

    >>> import numpy as np
    >>> from tfotflow.model import OTFlowModel
    >>> model = OTFlowModel(2, width=8)
    >>> warm = FlowMatching(model)
    >>> warm.compile(optimizer=keras.optimizers.Adam(0.01))
    >>> data = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    >>> sorted(warm.fit(data, batch_size=32, epochs=1, verbose=0).history)
    ['flow_matching']
    """

    def __init__(
        self,
        flow,
        *,
        relative_epsilon=0.01,
        sinkhorn_iterations=DEFAULTS["warm_start_sinkhorn_iterations"],
        seed=0,
        clip=DEFAULTS["weight_clip"],
        coupling=DEFAULTS["warm_start_coupling"],
        **kwargs,
    ):
        super().__init__(dtype=flow.precision, **kwargs)
        self.flow = flow
        self.relative_epsilon = check_positive_float("relative_epsilon", relative_epsilon)
        self.sinkhorn_iterations = check_int("sinkhorn_iterations", sinkhorn_iterations, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.clip = None if clip is None else check_positive_float("clip", clip)
        self.coupling = check_choice("coupling", coupling, COUPLINGS)
        self.built = True
        self._loss_tracker = keras.metrics.Mean(name="flow_matching")

    def loss_on(self, x0, step, condition=None, *, coupling=None):
        """The flow-matching loss on data ``x0`` [n, d] (conditions [n, k]), in the data's units,
        with the draws of ``step``, paired by ``coupling`` (None: the model's); the flow's
        coordinates are matched (:meth:`OTFlowModel.standardize`)."""
        x0 = tf.cast(x0, self.flow.precision)
        condition = self.flow.potential.check_condition(condition)
        x0, condition = self.flow.standardize(x0, condition)  # the flow's coordinates
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)]), 3
        )
        n = tf.shape(x0)[0]
        z = tf.random.stateless_normal(tf.shape(x0), seed=seeds[0], dtype=x0.dtype)
        if condition is None and (coupling or self.coupling) == "ot":
            z = ot_pairs(
                x0,
                z,
                seed=seeds[1],
                relative_epsilon=self.relative_epsilon,
                iterations=self.sinkhorn_iterations,
            )
        t = tf.random.stateless_uniform([n, 1], seed=seeds[2], dtype=x0.dtype)
        return flow_matching_loss(
            self.flow.potential, x0, z, t, alpha_transport=self.flow.alpha[0], condition=condition
        )

    def train_step(self, data):
        x0, condition = batch_points_and_conditions(data, self.flow.condition_dim)
        variables = self.flow.potential.trainable_variables
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.loss_on(x0, self.optimizer.iterations, condition)
            scaled = loss / replicas
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        ClipWeights.clip(variables, self.clip)
        self._loss_tracker.update_state(loss)
        return {"flow_matching": self._loss_tracker.result()}

    def test_step(self, data):
        # Each validation point keeps its own draw: no [n, n] cost, and the loss has the same
        # minimizer, the field that moves the interpolation's marginals.
        x0, condition = batch_points_and_conditions(data, self.flow.condition_dim)
        self._loss_tracker.update_state(self.loss_on(x0, 0, condition, coupling="independent"))
        return {"flow_matching": self._loss_tracker.result()}

    @property
    def metrics(self):
        return [self._loss_tracker]

    def get_config(self):
        return {
            "flow": keras.saving.serialize_keras_object(self.flow),
            "relative_epsilon": self.relative_epsilon,
            "sinkhorn_iterations": self.sinkhorn_iterations,
            "seed": self.seed,
            "clip": self.clip,
            "coupling": self.coupling,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["flow"] = keras.saving.deserialize_keras_object(config["flow"])
        return cls(**config)
