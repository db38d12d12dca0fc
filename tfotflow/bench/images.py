"""Generative modelling of digits: a class-conditional latent OT-Flow on ``mnist5k``, judged by
a classifier that never saw its training digits.

The 5,000 digits are split 3,000 (the flow's training) / 500 (its validation) / 1,500 held
out. A small CNN trains on 1,000 held-out digits and is checked on the other 500 (the
reference digits). Then, for each source of 500 digits (50 per class):

- ``ot_flow``: decoded class-conditional samples of the latent OT-Flow;
- ``gaussian``: decoded samples of a Gaussian fitted to each class's training codes (the
  floor: what the flow must beat);
- ``reconstructions``: decoded codes of the 500 validation digits (the ceiling: what the
  autoencoder allows),

the classifier's accuracy against the intended class, and the Fréchet distance between the
source's and the reference digits' features (the classifier's last hidden layer, 64 values).
Wall time of each stage is reported. The reference's settings (a dense 784 → 128
autoencoder, width 128, α = (1, 80, 500), 8 / 16 RK4 steps) are timed per step, and the cost
of full MNIST (60,000 digits) is estimated from those times.
"""

import math
import pathlib
import tempfile
import time

import numpy as np

from tfotflow import datasets, latent, runs, settings
from tfotflow._keras import keras
from tfotflow.hardware import use_xla

PER_CLASS = 50
# The reference's MNIST settings (Onken et al. 2021, OT-Flow's code): a one-layer autoencoder.
PAPER = {
    "latent_dim": 128,
    "autoencoder": "dense",
    "width": 128,
    "alpha": (1.0, 80.0, 500.0),
    "num_steps": 8,
    "eval_num_steps": 16,
}


def classifier_network(num_classes=10, image_shape=(28, 28, 1)):
    """A small CNN: two 3 × 3 convolutions with pooling, a 64-unit hidden layer (the features
    of the Fréchet distance) and the class logits."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((math.prod(image_shape),)),
            layers.Reshape(image_shape),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(64, activation="relu", name="features"),
            layers.Dense(num_classes),
        ]
    )


def train_classifier(images, labels, *, epochs=15, seed=0):
    """The CNN of :func:`classifier_network` fitted to ``images`` [n, D] and integer
    ``labels`` [n]."""
    keras.utils.set_random_seed(seed)
    network = classifier_network()
    network.compile(
        optimizer=keras.optimizers.Adam(0.002),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    network.fit(images.astype("float32"), labels, batch_size=64, epochs=epochs, verbose=0)
    return network


def accuracy(network, images, labels):
    """The share of ``images`` the classifier labels as ``labels``."""
    logits = np.asarray(network.predict(images.astype("float32"), verbose=0))
    return float(np.mean(logits.argmax(axis=1) == labels))


def features(network, images):
    """The classifier's hidden features [n, 64] of ``images``."""
    hidden = keras.Model(network.inputs, network.get_layer("features").output)
    return np.asarray(hidden.predict(images.astype("float32"), verbose=0), dtype=np.float64)


def frechet_distance(a, b):
    """‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a^½ Σ_b Σ_a^½)^½) between the Gaussians fitted to
    feature rows ``a`` [n, f] and ``b`` [m, f]."""
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    cross = np.sum(np.sqrt(np.clip(middle, 0, None)))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


class _Stopwatch(keras.callbacks.Callback):
    """Wall seconds from the start of a ``fit`` to its end, into ``times[stage]``."""

    def __init__(self, times, stage):
        super().__init__()
        self.times, self.stage = times, stage

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.times[self.stage] = time.perf_counter() - self.start


def gaussian_codes(codes, labels, per_class, seed=0):
    """``per_class`` draws, for each class, of the Gaussian fitted to that class's ``codes``;
    (codes [10·per_class, c], labels)."""
    rng = np.random.RandomState(seed)
    drawn, classes = [], []
    for label in range(10):
        own = codes[labels == label].astype(np.float64)
        drawn.append(rng.multivariate_normal(own.mean(0), np.cov(own, rowvar=False), per_class))
        classes += [label] * per_class
    return np.concatenate(drawn), np.array(classes)


def _per_step_seconds(config, data, steps=5):
    """Wall seconds per autoencoder step (batch 128) and per likelihood step of the flow at
    ``config``'s settings, each the median of ``steps`` timed steps after a first, compiling
    one."""
    times = {}
    lat = config["latent"]
    autoencoder = latent.Autoencoder(
        data.metadata.dim,
        lat["latent_dim"],
        architecture=lat["autoencoder"],
        image_shape=data.metadata.image_shape,
    )
    autoencoder.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    batch = data.train[:128].astype("float32")
    times["autoencoder_step"] = _median_seconds(autoencoder.train_on_batch, batch, batch, steps)
    codes = latent.encode_data(autoencoder, data)
    model = runs.new_model(
        {**config, "model": {**config["model"], "condition_dim": 10}}, lat["latent_dim"]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=use_xla(lat["latent_dim"]))
    model.adapt(codes.train, codes.conditions["train"])
    size = config["train"]["batch_size"]
    x = codes.train[:size].astype("float32")
    y = codes.conditions["train"][:size].astype("float32")
    times["flow_step"] = _median_seconds(model.train_on_batch, x, y, steps)
    return times


def _median_seconds(step, x, y, repeats):
    """The median wall seconds of ``step(x, y)`` over ``repeats`` calls after a first one."""
    step(x, y)
    spans = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x, y)
        spans.append(time.perf_counter() - start)
    return float(np.median(spans))


def _full_mnist_cost(config, times, digits=60_000):
    """Seconds for full MNIST at ``config``'s epochs and iterations, from per-step times."""
    lat, train = config["latent"], config["train"]
    autoencoder_steps = lat["autoencoder_epochs"] * math.ceil(
        digits / lat["autoencoder_batch_size"]
    )
    return {
        "autoencoder_seconds": autoencoder_steps * times["autoencoder_step"],
        "flow_seconds_per_epoch": math.ceil(digits / train["batch_size"]) * times["flow_step"],
        "flow_seconds_at_run_iterations": train["iterations"] * times["flow_step"],
    }


QUICK = {
    "iterations": 20,
    "validate_every": 10,
    "warm_start": 20,
    "autoencoder_epochs": 1,
    "width": 16,
}


def run(quick=False):
    """Trains the latent flow, the classifier and the floor, and scores the three sources."""
    data = datasets.load("mnist5k", num_val=500, num_test=1500)
    held_out = data.conditions["test"].argmax(axis=1)
    train_images, train_labels = data.test[:1000], held_out[:1000]
    reference, reference_labels = data.test[1000:], held_out[1000:]
    times, result = {}, {"benchmark": "images", "quick": quick}
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        run_dir, config, data = runs.prepare_run(  # as tfotflow train prepares a run
            "mnist5k",
            run_dir=folder / "run",
            overrides=QUICK if quick else {},
            options={"num_val": 500, "num_test": 1500},
            data=data,
        )
        result["settings"] = {**config["latent"], **config["model"], **config["train"]}
        start = time.perf_counter()
        model, _ = runs.train_run(
            folder / "run",
            config,
            data=data,
            autoencoder_callbacks=[_Stopwatch(times, "autoencoder")],
            warm_start_callbacks=[_Stopwatch(times, "warm_start")],
            callbacks=[_Stopwatch(times, "likelihood")],
        )
        times["run_total"] = time.perf_counter() - start
        autoencoder = runs.load_autoencoder(folder / "run")
        start = time.perf_counter()
        classifier = train_classifier(train_images, train_labels, epochs=2 if quick else 15)
        times["classifier"] = time.perf_counter() - start
        result["classifier_accuracy"] = accuracy(classifier, reference, reference_labels)
        labels = np.repeat(np.arange(10), PER_CLASS)
        start = time.perf_counter()
        samples = latent.draw(model, PER_CLASS, condition=np.eye(10), autoencoder=autoencoder)
        times["sampling_500"] = time.perf_counter() - start
        flow_images = latent.rows_by_condition(samples)
        codes = autoencoder.encode(data.train)
        floor_codes, floor_labels = gaussian_codes(
            codes, data.conditions["train"].argmax(axis=1), PER_CLASS
        )
        sources = {
            "ot_flow": (flow_images, labels),
            "gaussian": (autoencoder.decode(floor_codes), floor_labels),
            "reconstructions": (
                autoencoder.decode(autoencoder.encode(data.val)),
                data.conditions["val"].argmax(axis=1),
            ),
        }
        reference_features = features(classifier, reference)
        result["sources"] = {
            name: {
                "accuracy": accuracy(classifier, images, intended),
                "frechet_distance": frechet_distance(
                    features(classifier, images), reference_features
                ),
            }
            for name, (images, intended) in sources.items()
        }
        result["test"] = runs.evaluate(model, data, autoencoder=autoencoder)
        result["seconds"] = times
        paper = settings.build_config(
            "mnist5k",
            recommended=settings.recommended_settings(data),
            overrides=PAPER,
            seed=0,
            data_dir=None,
            options={},
        )
        ours = _per_step_seconds(config, data)
        reference_times = _per_step_seconds(paper, data)
        result["per_step_seconds"] = {"recipe": ours, "paper": reference_times}
        result["full_mnist_estimate"] = {
            "recipe": _full_mnist_cost(config, ours),
            "paper": _full_mnist_cost(paper, reference_times),
        }
    print(result, flush=True)
    return result
