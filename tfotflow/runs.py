"""Training runs: a run's data, its training (:func:`train_run`), its model, evaluation,
samples and plots. The files of a run directory are :mod:`tfotflow.rundir`'s; its settings
:mod:`tfotflow.settings`'.
"""

import math
import pathlib
import time
import warnings
import zipfile

import numpy as np
import tensorflow as tf

from tfotflow import checkpoint, datasets, distribute, plotting, scoring, settings, training
from tfotflow import latent as latent_module
from tfotflow._keras import keras
from tfotflow.callbacks import SolverErrorControl
from tfotflow.model import OTFlowModel
from tfotflow.rundir import (
    RunError,
    extend,
    read_config,
    read_csv,
    remove_stale_temporaries,
    run_files,
    save_model,
    write_csv,
    write_json,
    write_npy,
)
from tfotflow.settings import DEFAULTS, adapts, train_settings


def load_data(config):
    """The run's data set: a registered one loaded with the seed, folder and options of its
    ``config``, or the file of its ``source``, split as it was.

    Raises:
        tfotflow.datasets.DatasetError: naming the file, when it is missing or changed since
            the run was trained (its SHA-256 differs).
    """
    source = config.get("source")
    if source is None:
        data = datasets.load(
            config["dataset"],
            seed=config["seed"],
            data_dir=config["data_dir"],
            **config["options"],
        )
        return without_conditions(data) if config.get("unconditional") else data
    return datasets.from_file(
        source["path"],
        columns=source["columns"],
        condition_columns=source["condition_columns"],
        key=source["key"],
        split=source["split"],
        seed=source["seed"],
        drop_missing=source["drop_missing"],
        sha256_expected=source["sha256"],
    )


def without_conditions(data):
    """``data`` as points alone: its conditions (and class names) dropped."""
    import dataclasses

    metadata = dataclasses.replace(data.metadata, condition_dim=0, classes=None)
    return dataclasses.replace(data, metadata=metadata, conditions=None)


def load_autoencoder(run_dir, config=None):
    """The run's frozen autoencoder, or None for a run without a latent flow.

    Raises:
        RunError: naming ``autoencoder.keras``, when a latent run lacks it or it is damaged.
    """
    config = read_config(run_dir) if config is None else config
    if "latent" not in config:
        return None
    path = pathlib.Path(run_dir) / "autoencoder.keras"
    if not path.exists():
        raise RunError(f"{path} is missing: the run's autoencoder did not finish training")
    try:
        autoencoder = keras.models.load_model(path)
    except Exception as error:
        raise RunError(f"{path}: {_keras_file_damage(path, error)}") from error
    autoencoder.trainable = False
    return autoencoder


def new_model(config, dim):
    """The run's model for data of dimension ``dim`` (conditional when the run's
    ``model.condition_dim``, recorded from its dataset, is positive)."""
    # Runs that predate a setting have no normalization, the default trace, no time features.
    settings = {
        "normalization": None,
        "trace": DEFAULTS["trace"],
        "time_features": DEFAULTS["time_features"],
        **config["model"],
    }
    return OTFlowModel(dim, **{**settings, "alpha": tuple(settings["alpha"])})


def load_model(run_dir, *, report=None):
    """The run's model and the file its weights came from: ``model.keras`` if training
    finished, else the best checkpoint, else the last one.

    Every file passed over (absent, damaged, or not this run's model) is reported, with how
    it is damaged and which file was used instead: ``report(message)`` is called once per file
    (by default a ``UserWarning``), so no number comes from other weights than it seems.

    Returns:
        ``(model, path)``: the :class:`tfotflow.OTFlowModel` and the file it was read from.

    Raises:
        RunError: naming every file tried and what is wrong with it, when no model can be
            read; or when ``model.keras`` disagrees with ``config.json``.
    """
    run_dir = pathlib.Path(run_dir)
    report = report or (lambda message: warnings.warn(message, UserWarning, stacklevel=3))
    saved = run_dir / "model.keras"
    problems = []
    if saved.exists():
        try:
            model = keras.models.load_model(saved)
        except Exception as error:  # a truncated or corrupted archive: try the checkpoints
            problems.append((saved, _keras_file_damage(saved, error)))
        else:
            _check_matches_config(model, run_dir)
            return model, saved
    else:
        problems.append((saved, "absent (training did not finish)"))
    config = read_config(run_dir)
    for name in ("best.npz", "last.npz"):
        path = run_dir / name
        if not path.exists():
            problems.append((path, "absent"))
            continue
        try:
            dim = config.get("dim")
            if dim is None:  # a run written before config.json recorded d: A is [r, d+k+1]
                arrays, _ = checkpoint.read(path)
                condition_dim = config["model"].get("condition_dim", 0)
                dim = int(arrays["weight/0"].shape[1]) - condition_dim - 1
            model = new_model(config, dim)
            state = checkpoint.restore(path, model)
            SolverErrorControl.resume(model, state.get("logs", {}))
        except checkpoint.CheckpointError as error:
            problems.append((path, str(error)))
            continue
        for damaged, why in problems:
            if why != "absent":
                report(f"{damaged}: {why}; using {path} instead")
        return model, path
    tried = "; ".join(f"{path}: {why}" for path, why in problems)
    if all(why.startswith("absent") for _, why in problems):
        raise RunError(f"{run_dir} holds neither model.keras nor a checkpoint: train it first")
    raise RunError(f"no model of {run_dir} can be read; tried {tried}")


def _keras_file_damage(path, error):
    """How a ``.keras`` file that Keras could not load is damaged, in words."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, OSError) as zip_error:
        return f"damaged: not a readable zip archive, truncated or overwritten ({zip_error})"
    if bad_member is not None:
        return f"damaged: {bad_member} inside it fails its CRC check (corrupted bytes)"
    return f"cannot be loaded ({type(error).__name__}: {error})"


def _check_matches_config(model, run_dir):
    """``model.keras`` and ``config.json`` must describe the same model."""
    path = pathlib.Path(run_dir) / "config.json"
    if not path.exists():
        return
    expected = read_config(run_dir)["model"]
    found = model.get_config()
    differ = {
        key: (found[key], expected[key])
        for key in ("width", "num_layers", "rank", "time_features", "condition_dim")
        if key in expected and found.get(key) != expected[key]
    }
    if differ:
        described = ", ".join(f"{k}={a} (config.json: {b})" for k, (a, b) in differ.items())
        raise RunError(
            f"{pathlib.Path(run_dir) / 'model.keras'} does not match {path}: {described}"
        )


class MetricsWriter(keras.callbacks.Callback):
    """Rewrites ``metrics.csv`` atomically after every validation (one row each)."""

    def __init__(self, path, rows, start):
        super().__init__()
        self.path, self.rows, self.start = path, rows, start

    def on_epoch_end(self, epoch, logs=None):
        if not distribute.is_chief(self.model.distribute_strategy):
            return
        row = {
            "step": int(self.model.optimizer.iterations.numpy()),
            "seconds": round(time.perf_counter() - self.start, 3),
        }
        row.update({key: float(value) for key, value in (logs or {}).items()})
        if "learning_rate" not in row:  # logged by the plateau callback, not by a schedule
            row["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())
        self.rows.append(row)
        write_csv(self.path, self.rows)


def train_run(
    run_dir,
    config,
    *,
    resume=False,
    callbacks=(),
    warm_start_callbacks=(),
    autoencoder_callbacks=(),
    verbose=0,
    strategy="default",
    data=None,
):
    """Trains the run in ``run_dir``; returns ``(model, data)`` with the best weights.

    A new run with ``warm_start`` steps first fits the potential by flow matching
    (:func:`tfotflow.training.warm_start`, with ``warm_start_callbacks``), then by maximum
    likelihood (with ``callbacks``); a resumed run continues the latter.

    A latent run (``config["latent"]``) first trains its autoencoder
    (:func:`tfotflow.latent.fit_autoencoder`, with ``autoencoder_callbacks``; an interrupted
    one continues), and the flow models its codes; ``data`` returned is still the points.

    ``strategy`` names a :mod:`tfotflow.distribute` strategy; only its chief writes files.
    ``data`` is the run's dataset when the caller already loaded it (else it is loaded from
    ``config``).
    """
    strategy = distribute.make_strategy(strategy)  # first: multi-worker needs it before any op
    chief = distribute.is_chief(strategy)
    run_dir = pathlib.Path(run_dir)
    data = load_data(config) if data is None else data
    latent = config.get("latent")
    config = recorded_config(config, data)
    run_dir.mkdir(parents=True, exist_ok=True)
    if chief:
        remove_stale_temporaries(run_dir)
    if not resume and chief:
        write_json(run_dir / "config.json", config)
    images = data
    if latent:  # the autoencoder first (continued if interrupted), then a flow of its codes
        autoencoder = latent_module.fit_autoencoder(
            data,
            latent_dim=latent["latent_dim"],
            architecture=latent["autoencoder"],
            epochs=latent["autoencoder_epochs"],
            batch_size=latent["autoencoder_batch_size"],
            learning_rate=latent["autoencoder_learning_rate"],
            run_dir=run_dir,
            seed=config["seed"],
            callbacks=autoencoder_callbacks,
            verbose=verbose,
        )
        data = latent_module.encode_data(autoencoder, data)
    keras.utils.set_random_seed(config["seed"])
    train = train_settings(config)
    with strategy.scope():
        model = new_model(config, data.metadata.dim)
        training.compile_for(model, train, train["iterations"])
        if not resume:  # a resume restores the map from the checkpoint
            adapt_to(model, config, data)
    rows = read_csv(run_dir / "metrics.csv") if resume else []
    if resume and (run_dir / "last.npz").exists():
        done = checkpoint.read(run_dir / "last.npz")[1]["state"].get("epoch", 0)
        rows = rows[:done]
    elif resume and not (train["warm_start"] and (run_dir / "warm_start_last.npz").exists()):
        raise RunError(
            f"{run_dir} has no checkpoint (last.npz, or warm_start_last.npz) to resume from"
        )
    start = time.perf_counter()
    training.train(
        model,
        data,
        run_dir=run_dir,
        seed=config["seed"],
        resume=resume,
        callbacks=[MetricsWriter(run_dir / "metrics.csv", rows, start), *callbacks],
        warm_start_callbacks=[
            MetricsWriter(run_dir / "warm_start.csv", [], start),
            *warm_start_callbacks,
        ],
        verbose=verbose,
        **train,
    )
    if chief:
        save_model(model, run_dir / "model.keras")
        write_npy(run_dir / "val_log_prob.npy", validation_log_prob(model, data))
    return model, images


def recorded_config(config, data):
    """``config`` as a run records it for ``data``: with the dimension the flow models (the
    codes' for a latent flow), the condition width (a conditional dataset makes a
    conditional model, so the run reloads as one), and an image set's shape and classes."""
    meta, latent = data.metadata, config.get("latent")
    return {
        **config,
        "dim": latent["latent_dim"] if latent else meta.dim,
        "model": {**config["model"], "condition_dim": meta.condition_dim},
        **({"image_shape": list(meta.image_shape)} if meta.image_shape else {}),
        **({"classes": list(meta.classes)} if meta.classes else {}),
    }


def adapt_to(model, config, data):
    """Sets ``model``'s map from the flow's coordinates to the data's from ``data``'s
    training rows (and conditions) when the run's ``config`` says so
    (:func:`tfotflow.settings.adapts`), with its spread; returns whether it did."""
    if not adapts(config):
        return False
    model.adapt(
        data.train,
        data.conditions["train"] if data.conditional else None,
        spread=train_settings(config)["spread"],
    )
    return True


def validation_log_prob(model, data):
    """The model's log-density of every validation row (with its conditions), [n_val]."""
    conditions = data.conditions["val"] if data.conditional else None
    return model.score_samples(data.val, conditions)


def outlier_threshold(run_dir, quantile, model=None, data=None):
    """The ``quantile`` of the validation rows' log-densities recorded by the run
    (``val_log_prob.npy``; computed from ``model`` and ``data`` for a run without it)."""
    path = pathlib.Path(run_dir) / "val_log_prob.npy"
    if path.exists():
        try:
            scores = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise RunError(f"{path} is corrupted ({type(error).__name__}: {error})") from error
    elif model is not None and data is not None:
        scores = validation_log_prob(model, data)
    else:
        raise RunError(f"{path} is missing: the run did not finish")
    return float(np.quantile(scores, quantile))


def scored_columns(config, dim, condition_dim):
    """The columns a run trained on, ``(points, conditions)``: a file run's names, or the
    first d (then k) columns by position for a registered data set."""
    source = config.get("source")
    if source is not None:
        return list(source["columns"]), list(source["condition_columns"])
    return [str(i) for i in range(dim)], [str(dim + i) for i in range(condition_dim)]


def conditions_of_test_split(model, data):
    """The test split's conditions in the model's dtype, or None for unconditional data."""
    return data.conditions["test"].astype(model.precision) if data.conditional else None


def evaluate(model, data, *, num_steps=None, round_trip_points=500, autoencoder=None):
    """Test NLL (nats; the conditional NLL −log p(x | y) for conditional data), round-trip
    error, parameter count, seconds of one evaluation, and the solver's error on up to 1,000
    test rows (:func:`tfotflow.scoring.discretization_error`: |log p at n RK4 steps − at 2n|).

    With the run's ``autoencoder`` (a latent flow) the NLL is the codes' (the latent NLL), and
    ``reconstruction_error`` is the mean squared error per value of the test points decoded
    from their codes."""
    if autoencoder is not None:
        codes = latent_module.encode_data(autoencoder, data)
        return {
            **evaluate(model, codes, num_steps=num_steps, round_trip_points=round_trip_points),
            "latent_dim": autoencoder.latent_dim,
            "reconstruction_error": latent_module.reconstruction_error(autoencoder, data.test),
        }
    num_steps = num_steps or model.eval_num_steps
    test, conditions = data.test.astype(model.precision), conditions_of_test_split(model, data)
    start = time.perf_counter()
    log_prob = np.asarray(model.log_prob(test, conditions, num_steps=num_steps))
    seconds = time.perf_counter() - start
    subset = tf.constant(test[:round_trip_points])
    condition = None if conditions is None else tf.constant(conditions[:round_trip_points])
    kwargs = model.bijector_kwargs(condition, num_steps)
    flow = model.bijector
    z = flow.inverse(subset, **kwargs)
    back = flow.forward(tf.identity(z), **kwargs)
    return {
        "test_nll": float(-np.mean(log_prob)),
        "test_nll_sem": float(np.std(log_prob) / math.sqrt(len(log_prob))),
        "round_trip_error": float(np.max(np.abs(np.asarray(back) - np.asarray(subset)))),
        "num_parameters": int(sum(np.prod(v.shape) for v in model.potential.weights)),
        "num_steps": num_steps,
        "num_test_points": len(log_prob),
        "seconds": seconds,
        "true_entropy": data.metadata.entropy,
        "discretization_error": scoring.discretization_error(
            model, test, conditions, num_steps=num_steps, log_prob=log_prob
        ),
    }


def save_samples(
    model, n, path, *, condition=None, seed=0, num_steps=None, autoencoder=None, image_shape=None
):
    """Draws ``n`` samples (:func:`tfotflow.latent.draw`) and writes them to ``path``
    atomically: a .npy array (images as [n, H, W, C] with ``image_shape``), or a .png grid of
    the images, a row of the n samples per ``condition`` row (or 10 to a row)."""
    samples = latent_module.draw(
        model, n, condition=condition, seed=seed, num_steps=num_steps, autoencoder=autoencoder
    )
    path = pathlib.Path(path)
    if path.suffix == ".png":
        if image_shape is None:
            raise ValueError(f"`path` {path}: a .png grid needs images; this run's points are not")
        columns = 10 if samples.ndim == 2 else samples.shape[0]
        picture = plotting.image_grid(
            latent_module.rows_by_condition(samples), image_shape, columns=columns
        )
        plotting.write_image(path, picture)
        return samples
    if image_shape is not None:
        samples = samples.reshape(*samples.shape[:-1], *image_shape)
    write_npy(path, samples)
    return samples


def plot_title(data, run_dir, test_nll=None):
    """The plots' title: the data set, and its test NLL when given, else the run's best
    validation NLL (from metrics.csv), with the exact entropy when the data set has one."""
    meta = data.metadata
    parts = [meta.name if not meta.condition_dim else f"{meta.name} (conditional)"]
    if test_nll is not None:
        parts.append(f"test NLL {test_nll:.3f}")
    else:
        scores = [
            row["val_nll"]
            for row in read_csv(pathlib.Path(run_dir) / "metrics.csv")
            if "val_nll" in row
        ]
        if scores:
            parts.append(f"best validation NLL {min(scores):.3f}")
    if meta.entropy is not None:
        parts.append(f"exact entropy {meta.entropy:.3f}")
    return ", ".join(parts)


def plot(model, data, run_dir, *, dims=None, seed=0, test_nll=None, autoencoder=None):
    """The run's plots (see :mod:`tfotflow.plotting`), titled by :func:`plot_title`; returns
    the paths written. A latent flow of images (with its ``autoencoder``) gets sample grids and
    interpolations (:func:`tfotflow.plotting.plot_images`)."""
    if autoencoder is not None and data.metadata.image_shape is not None:
        return plotting.plot_images(model, autoencoder, data, run_dir, seed=seed)
    if autoencoder is not None:  # other points: the codes' marginals
        data = latent_module.encode_data(autoencoder, data)
    conditions = conditions_of_test_split(model, data)
    title = plot_title(data, run_dir, test_nll)
    if data.metadata.dim == 2:
        return plotting.plot_2d(
            model, data.test, run_dir, conditions=conditions, seed=seed, title=title
        )
    dims = list(dims) if dims else list(range(min(4, data.metadata.dim)))
    return plotting.plot_marginals(
        model, data.test, run_dir, conditions=conditions, dims=dims, seed=seed, title=title
    )


def prepare_run(
    dataset,
    *,
    run_dir=None,
    overrides=None,
    file_settings=None,
    seed=0,
    data_dir=None,
    options=None,
    file_options=None,
    unconditional=False,
    overwrite=False,
    report=None,
    data=None,
):
    """A new run's directory, configuration and data, checked before anything is written:
    the data set loaded (a file read with ``file_options``), its settings built
    (:func:`tfotflow.settings.build_config`: ``overrides`` over a config file's
    ``file_settings`` over the data's recommended ones) and checked, and a ``run_dir``
    (default ``runs/NAME``) that holds a run emptied of the run's files only with
    ``overwrite``. ``report(message)`` hears what a file gave and of ignored settings.
    ``data``: the data set when the caller loaded it already (a benchmark), else loaded here.

    Returns:
        ``(run_dir, config, data)``.

    Raises:
        tfotflow.settings.RequestError: naming the part of the request at fault.
    """
    report = report or (lambda message: None)
    options, file_settings = dict(options or {}), dict(file_settings or {})
    dataset = file_settings.pop("dataset", dataset)
    chosen = {name: value for name, value in (file_options or {}).items() if value is not None}
    if data is None and datasets.is_data_file(dataset):
        try:
            data = datasets.from_file(dataset, seed=seed, **chosen)
        except datasets.DatasetError as error:  # the file the user named
            raise settings.RequestError(str(error), "dataset") from error
        report(_what_the_file_gave(data))
    elif data is None:  # a registered set's data that cannot be read is a failure at run time
        data = datasets.load(dataset, seed=seed, data_dir=data_dir, **options)
    if unconditional:
        if not data.conditional:
            raise settings.RequestError(
                f"{dataset!r} has no conditions to ignore", "unconditional"
            )
        data = without_conditions(data)
    config = settings.build_config(
        dataset,
        recommended=settings.recommended_settings(data),
        overrides={**file_settings, **(overrides or {})},
        seed=seed,
        data_dir=data_dir,
        options=options,
        source=data.metadata.source,
        unconditional=unconditional,
        warn=report,
    )
    meta = data.metadata
    try:
        settings.check_config(config, meta.dim, meta.condition_dim, meta.image_shape)
    except (TypeError, ValueError) as error:
        raise settings.RequestError(str(error), "settings") from error
    run_dir = pathlib.Path(run_dir or pathlib.Path("runs") / pathlib.Path(dataset).stem)
    existing = run_files(run_dir)
    if existing and not overwrite:
        raise settings.RequestError(
            f"{run_dir} already holds a run ({', '.join(p.name for p in existing)}): "
            "continue it with --resume, choose another --out, or pass --overwrite",
            "run_dir",
        )
    for path in existing:  # only files a run writes; anything else stays
        path.unlink()
    return run_dir, config, data


def prepare_resume(run_dir, iterations=None):
    """A run to continue: its configuration (its iterations raised to ``iterations``, the
    cosine stretched to them: :func:`tfotflow.rundir.extend`) and its data, refused when the
    file it read changed.

    Returns:
        ``(config, data)``.

    Raises:
        tfotflow.settings.RequestError: naming the part at fault ("resume", "iterations").
    """
    config = read_config(run_dir)
    try:
        data = load_data(config)
    except datasets.DatasetError as error:
        raise settings.RequestError(str(error), "resume") from error
    if iterations is not None:
        try:
            config = extend(run_dir, config, iterations)
        except ValueError as error:
            raise settings.RequestError(str(error), "iterations") from error
    return config, data


def _what_the_file_gave(data):
    """One line on the rows and columns a file gave, the rows dropped and the split."""
    source = data.metadata.source
    rows = f"{source['rows']} rows" + (
        f" ({source['dropped']} with missing values dropped)" if source["dropped"] else ""
    )
    given = f" given {', '.join(source['condition_columns'])}" if data.conditional else ""
    line = (
        f"{source['path']}: {rows} of {', '.join(source['columns'])}{given}; split "
        f"{len(data.train)} / {len(data.val)} / {len(data.test)}"
    )
    if not data.metadata.hyperparameters:
        line += (
            "\nsettings chosen from the data's size (tfotflow.settings.recipe): "
            f"d = {data.metadata.dim}, k = {data.metadata.condition_dim}, "
            f"n = {len(data.train)} training rows"
        )
    return line


def finish_run(model, data, run_dir, config, *, plot_results=True):
    """The end of a run: its test scores (:func:`evaluate`, with its autoencoder for a latent
    flow) and, with ``plot_results``, its plots (:func:`plot`); returns the result dict."""
    autoencoder = load_autoencoder(run_dir, config)
    result = {"run_dir": str(run_dir), **evaluate(model, data, autoencoder=autoencoder)}
    if plot_results:
        paths = plot(
            model,
            data,
            run_dir,
            seed=config["seed"],
            test_nll=result["test_nll"],
            autoencoder=autoencoder,
        )
        result["plots"] = [str(p) for p in paths]
    return result
