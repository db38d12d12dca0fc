"""Latent flows: an autoencoder maps high-dimensional points (images) to a few codes, and
OT-Flow models the codes, as in OT-Flow's MNIST experiment (Onken et al., AAAI 2021).

```none
x [n, D] ──encode──▶ c [n, latent_dim] ──OT-Flow (standardized codes)──▶ z ~ N(0, I)
x̂ [n, D] ◀──decode── c ◀──────────────────── flow.forward ◀──────────── z
```

The autoencoder trains first (binary cross-entropy: points are in [0, 1]) and is then frozen;
the flow's log-density is that of the codes, log p(c) (or log p(c | y)), the "latent NLL".
Any data set can use it: the architecture is ``"dense"`` (the reference's one layer each
way, D → latent_dim → D with a sigmoid decoder; its codes are linear here, since a ReLU code
can die, and a constant code has no density) or ``"conv"`` (two stride-2 convolutions each
way, for ``image_shape`` with height and width divisible by 4).

A run with a latent flow writes ``autoencoder.keras`` (after every epoch, atomically) and
``autoencoder.csv`` (one row per epoch) beside the flow's files.
"""

import math
import pathlib

import numpy as np
import tensorflow as tf

from tfotflow import distribute, rundir, serialization
from tfotflow._keras import keras
from tfotflow.datasets.core import Dataset, Metadata
from tfotflow.settings import ARCHITECTURES, check_architecture  # noqa: F401  (re-exported)


@serialization.register
class Autoencoder(keras.Model):
    """An encoder [n, D] → [n, latent_dim] and a decoder back to [n, D] with values in (0, 1).

    Args:
        input_dim: D, the width of a point.
        latent_dim: the number of codes.
        architecture: "dense" or "conv". Defaults to "conv".
        image_shape: (height, width, channels) of a point, for "conv". Defaults to None.
    """

    def __init__(self, input_dim, latent_dim, *, architecture="conv", image_shape=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("input_dim", input_dim), ("latent_dim", latent_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}")
        image_shape = None if image_shape is None else tuple(int(n) for n in image_shape)
        check_architecture(architecture, image_shape)
        if image_shape is not None and math.prod(image_shape) != input_dim:
            raise ValueError(
                f"`image_shape` {image_shape} holds {math.prod(image_shape)} values, not "
                f"input_dim={input_dim}"
            )
        self.input_dim, self.latent_dim = input_dim, latent_dim
        self.architecture, self.image_shape = architecture, image_shape
        layers = keras.layers
        if architecture == "dense":
            self.encoder = keras.Sequential(
                [keras.Input((input_dim,)), layers.Dense(latent_dim)],
                name="encoder",
            )
            self.decoder = keras.Sequential(
                [keras.Input((latent_dim,)), layers.Dense(input_dim, activation="sigmoid")],
                name="decoder",
            )
        else:
            height, width, channels = image_shape
            self.encoder = keras.Sequential(
                [
                    keras.Input((input_dim,)),
                    layers.Reshape(image_shape),
                    layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
                    layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
                    layers.Flatten(),
                    layers.Dense(latent_dim),
                ],
                name="encoder",
            )
            self.decoder = keras.Sequential(
                [
                    keras.Input((latent_dim,)),
                    layers.Dense(height // 4 * width // 4 * 64, activation="relu"),
                    layers.Reshape((height // 4, width // 4, 64)),
                    layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu"),
                    layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
                    layers.Conv2D(channels, 3, padding="same", activation="sigmoid"),
                    layers.Flatten(),
                ],
                name="decoder",
            )
        self.built = True  # both halves are built from their inputs' shapes

    def call(self, x, training=False):
        return self.decoder(self.encoder(x, training=training), training=training)

    def encode(self, x, batch_size=2048):
        """Codes [n, latent_dim] of points ``x`` [n, D] (numpy, in batches)."""
        return _batched(self.encoder, x, batch_size)

    def decode(self, codes, batch_size=2048):
        """Points [n, D] in (0, 1) of ``codes`` [n, latent_dim] (numpy, in batches)."""
        return _batched(self.decoder, codes, batch_size)

    def get_config(self):
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "latent_dim": self.latent_dim,
            "architecture": self.architecture,
            "image_shape": None if self.image_shape is None else list(self.image_shape),
        }


def _batched(network, x, batch_size):
    x = np.asarray(x, dtype="float32")
    if len(x) == 0:
        return np.zeros((0, network.output_shape[-1]), "float32")
    return np.concatenate(
        [np.asarray(network(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    )


def reconstruction_error(autoencoder, x):
    """The mean squared error per value of ``x`` [n, D] through the autoencoder."""
    x = np.asarray(x, dtype="float32")
    return float(np.mean((autoencoder.decode(autoencoder.encode(x)) - x) ** 2))


class _EpochWriter(keras.callbacks.Callback):
    """After every epoch: ``autoencoder.keras`` (atomically) and a row of ``autoencoder.csv``."""

    def __init__(self, run_dir, rows):
        super().__init__()
        self.run_dir, self.rows = pathlib.Path(run_dir), rows

    def on_epoch_end(self, epoch, logs=None):
        if not distribute.is_chief(self.model.distribute_strategy):
            return
        rundir.save_model(self.model, self.run_dir / "autoencoder.keras")
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        rundir.write_csv(self.run_dir / "autoencoder.csv", self.rows)


def fit_autoencoder(
    data,
    *,
    latent_dim,
    architecture,
    epochs,
    batch_size,
    learning_rate,
    run_dir,
    seed=0,
    callbacks=(),
    verbose=0,
):
    """Trains (or, in a run that already holds it, restores and finishes) the autoencoder of
    ``data``'s points, checkpointed into ``run_dir`` after every epoch; returns it frozen.

    Args:
        data: a :class:`tfotflow.datasets.Dataset` (its ``image_shape`` is used for "conv").
        latent_dim: the number of codes.
        architecture: "dense" or "conv" (see :class:`Autoencoder`).
        epochs: passes over the training split (validated on the validation split).
        batch_size: points per Adam step.
        learning_rate: Adam's rate.
        run_dir: where ``autoencoder.keras`` and ``autoencoder.csv`` go; an interrupted
            training continues from the last epoch written there.
        seed: the shuffling seed. Defaults to 0.
        callbacks: Keras callbacks (e.g. a progress bar).
        verbose: Keras's verbosity. Defaults to 0.
    """
    run_dir = pathlib.Path(run_dir)
    saved, log = run_dir / "autoencoder.keras", run_dir / "autoencoder.csv"
    rows = rundir.read_csv(log) if saved.exists() else []
    if rows:
        autoencoder = keras.models.load_model(saved)
    else:
        autoencoder = Autoencoder(
            data.metadata.dim,
            latent_dim,
            architecture=architecture,
            image_shape=data.metadata.image_shape,
        )
        autoencoder.compile(
            optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy"
        )
    done = len(rows)
    if done < epochs:
        keras.utils.set_random_seed(seed + done)
        train = data.train.astype("float32")
        val = data.val.astype("float32")
        autoencoder.fit(
            train,
            train,
            batch_size=batch_size,
            epochs=epochs,
            initial_epoch=done,
            validation_data=(val, val),
            callbacks=[_EpochWriter(run_dir, rows), *callbacks],
            verbose=verbose,
        )
    autoencoder.trainable = False
    return autoencoder


def encode_data(autoencoder, data):
    """``data`` with every split's points replaced by their codes (conditions kept): the data
    set a latent flow trains on."""
    codes = {split: autoencoder.encode(getattr(data, split)) for split in ("train", "val", "test")}
    meta = data.metadata
    metadata = Metadata(
        name=f"{meta.name} codes",
        dim=autoencoder.latent_dim,
        description=f"{autoencoder.architecture} autoencoder codes of {meta.name}",
        citation=meta.citation,
        condition_dim=meta.condition_dim,
        classes=meta.classes,
    )
    return Dataset(**codes, metadata=metadata, conditions=data.conditions)


def draw(model, n, *, condition=None, seed=0, num_steps=None, autoencoder=None):
    """``n`` samples of ``model``, [n, d] (of p(x | y) for a ``condition`` y [k]; for [m, k]:
    [n, m, d]); with a latent flow's ``autoencoder``, its codes decoded: [n, D] (or
    [n, m, D])."""
    samples = np.asarray(model.sample(n, condition, seed=(seed, 0), num_steps=num_steps))
    if autoencoder is None:
        return samples
    return autoencoder.decode(samples.reshape(-1, samples.shape[-1])).reshape(
        *samples.shape[:-1], autoencoder.input_dim
    )


def rows_by_condition(samples):
    """Samples [n, D] as they are, and [n, m, D] (n for each of m conditions) condition by
    condition: [m · n, D], the n samples of the first condition first."""
    samples = np.asarray(samples)
    return (
        samples if samples.ndim == 2 else np.swapaxes(samples, 0, 1).reshape(-1, samples.shape[-1])
    )


def interpolate(model, autoencoder, start, end, *, num_points=8, condition=None):
    """Points decoded along the straight line between ``start`` and ``end`` ([D] each) in the
    flow's normal space: z = (1 − t) T(c_start) + t T(c_end) for t in [0, 1], mapped back by
    the flow and the decoder; [num_points, D]. ``condition`` [k] for a conditional flow."""
    codes = autoencoder.encode(np.stack([start, end])).astype(model.precision)
    y = (
        None
        if condition is None
        else np.repeat(np.asarray(condition, model.precision)[None], 2, 0)
    )
    kwargs = model.bijector_kwargs(None if y is None else tf.constant(y))
    z = np.asarray(model.bijector.inverse(tf.constant(codes), **kwargs))
    t = np.linspace(0.0, 1.0, num_points, dtype=model.precision)[:, None]
    line = (1 - t) * z[0] + t * z[1]
    y_line = None if y is None else tf.constant(np.repeat(y[:1], num_points, 0))
    path = model.bijector.forward(tf.constant(line), **model.bijector_kwargs(y_line))
    return autoencoder.decode(np.asarray(path))
