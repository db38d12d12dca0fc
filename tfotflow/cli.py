"""The ``tfotflow`` command: train, evaluate, score, sample, plot, export, datasets, plugins,
bench.

A thin click group over the library. Progress and tables go to stderr (rich); results go to
stdout (``--json`` where a program reads them). TensorFlow is imported only inside the
commands that need it, so ``--help`` stays fast. Bad arguments exit 2 naming the option;
runtime failures exit 1 with one line and a hint (``--debug`` shows the traceback).
"""

import functools
import json
import math
import os
import pathlib
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tfotflow import __version__, rundir
from tfotflow.about import describe
from tfotflow.bench import SUITES
from tfotflow.settings import ARCHITECTURES, COUPLINGS, SCHEDULES, TRACES, WARM_START_SCHEDULES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

console = Console(stderr=True, soft_wrap=True)
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


def _runtime_errors(function):
    """Turns library failures into one clear line and exit 1 (a traceback with --debug)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        context = click.get_current_context()
        try:
            return function(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if context.find_root().params.get("debug"):
                raise
            raise click.ClickException(f"{type(error).__name__}: {error}") from error

    return wrapper


def _start_tensorflow():
    """Imports TensorFlow for a command that needs it. Unless ``--debug``, its C++ start-up
    lines (absl's preamble, the CUDA probe failing on a machine without a GPU) are silenced
    and its Python warnings (e.g. retracing notices) are shown from ERROR up."""
    if "tensorflow" in sys.modules:
        return
    if click.get_current_context().find_root().params.get("debug"):
        import tensorflow  # noqa: F401  (everything shown)

        return
    sys.stderr.flush()
    saved, silent = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(silent, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # the device probe prints its lines now, unseen
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(silent)
    tf.get_logger().setLevel("ERROR")


def _load_run_model(run_dir):
    """The run's model (:func:`tfotflow.runs.load_model`) and its weights file; each file
    passed over is named on stderr, with the substitute, whatever the warning filters."""
    from tfotflow import runs

    return runs.load_model(
        run_dir, report=lambda message: console.print(f"[yellow]warning:[/] {escape(message)}")
    )


def _emit(result, as_json):
    """Prints a result dict: JSON on stdout, or ``key: value`` lines."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            click.echo(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", message=describe())
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug):
    """OT-Flow continuous normalizing flows: train, evaluate, sample and plot density models."""


# ----------------------------------------------------------------------------- train


def _alpha(context, parameter, value):
    if value is None:
        return None
    try:
        alpha = [float(part) for part in value.split(",")]
    except ValueError:
        alpha = []
    if len(alpha) != 3 or not all(map(math.isfinite, alpha)) or alpha[0] <= 0 or min(alpha) < 0:
        raise click.BadParameter(
            "expected three finite numbers α_L,α_C,α_R with α_L > 0, e.g. 1,30,1. "
            f"Received: {value!r}"
        )
    return alpha


def _positive_rate(context, parameter, value):
    """A learning rate: finite and > 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"expected a finite number > 0. Received: {value}")
    return value


def _names(context, parameter, value):
    """Comma-separated column names or indices."""
    if value is None:
        return None
    names = [part.strip() for part in value.split(",")]
    if not all(names):
        raise click.BadParameter(
            f"expected comma-separated column names or indices. Received: {value!r}"
        )
    return names


def _split(context, parameter, value):
    """Three fractions train,val,test (:func:`tfotflow.datasets.files.check_split`)."""
    if value is None:
        return None
    from tfotflow.datasets.files import DatasetError, check_split

    try:
        return list(check_split(value.split(",")))
    except DatasetError as error:
        raise click.BadParameter(str(error)) from error


@main.command(context_settings=CONTEXT)
@click.argument("dataset", default="8gaussians")
@click.option(
    "--iterations",
    type=click.IntRange(min=0),
    help="Maximum-likelihood steps (0: the warm start's flow matching alone).",
)
@click.option("--batch-size", type=click.IntRange(min=1), help="Points per step.")
@click.option("--width", type=click.IntRange(min=1), help="Potential width m.")
@click.option("--num-layers", type=click.IntRange(min=2), help="ResNet layers of Φ.")
@click.option("--rank", type=click.IntRange(min=1), help="Rank of Φ's quadratic term.")
@click.option(
    "--time-features",
    type=click.IntRange(min=0),
    help="Fourier pairs cos(jπt), sin(jπt) of the time Φ reads besides t (0: none).",
)
@click.option("--alpha", callback=_alpha, help="α_L,α_C,α_R (transport, NLL, HJB weights).")
@click.option(
    "--learning-rate",
    "--lr",
    "learning_rate",
    type=float,
    callback=_positive_rate,
    help="Adam learning rate.",
)
@click.option("--num-steps", type=click.IntRange(min=1), help="RK4 steps in training.")
@click.option("--eval-num-steps", type=click.IntRange(min=1), help="RK4 steps in validation.")
@click.option("--validate-every", type=click.IntRange(min=1), help="Steps between validations.")
@click.option(
    "--schedule",
    type=click.Choice(SCHEDULES),
    help="Learning rate: divided by 10 on plateaus, or cosine-decayed to 0.",
)
@click.option(
    "--warm-start",
    type=click.IntRange(min=0),
    help="Flow-matching steps before maximum likelihood (0: none).",
)
@click.option(
    "--warm-start-batch-size", type=click.IntRange(min=1), help="Points per warm-start step."
)
@click.option(
    "--warm-start-learning-rate", type=float, callback=_positive_rate, help="Warm-start Adam rate."
)
@click.option(
    "--warm-start-sinkhorn-iterations",
    type=click.IntRange(min=1),
    help="Sinkhorn sweeps of each warm-start step's OT coupling.",
)
@click.option(
    "--warm-start-coupling",
    type=click.Choice(COUPLINGS),
    help="How each warm-start batch pairs data with normal draws: ot (Sinkhorn) or independent.",
)
@click.option(
    "--warm-start-schedule",
    type=click.Choice(WARM_START_SCHEDULES),
    help="The warm start's rate: constant, or cosine-decayed to 0 over its steps.",
)
@click.option(
    "--solver-tolerance",
    type=click.FloatRange(min=0),
    help="Nats of the training solve's error (mean |log p at n − 2n RK4 steps|) above which "
    "training doubles its steps (0: never).",
)
@click.option(
    "--weight-clip",
    type=click.FloatRange(min=0),
    help="Bound on every weight, clipped before each training step (0: no clipping).",
)
@click.option(
    "--spread",
    type=click.FloatRange(min=0, min_open=True),
    help="Standard deviation of the flow's coordinates when the data is standardized "
    "(default 1; 2 suits 2-D data with narrow modes).",
)
@click.option(
    "--standardize",
    is_flag=True,
    default=None,
    help="Standardize a registered data set's points (and start p(x | y) from its "
    "linear-Gaussian fit), as files always are.",
)
@click.option(
    "--trace",
    type=click.Choice(TRACES),
    help="Training steps' trace: closed form, or a one-probe estimate (scores stay exact).",
)
@click.option(
    "--patience", type=click.IntRange(min=1), help="Validations before the rate is divided by 10."
)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), help="Float type.")
@click.option(
    "--seed", type=click.IntRange(0, 2**31 - 1), default=0, help="Seed of data, init and order."
)
@click.option(
    "--out",
    "run_dir",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    help="Run directory. Defaults to runs/DATASET.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML file of these settings (flags override it).",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    help="Continue the run in this directory after an interruption.",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where data sets live.")
@click.option("--num-train", type=click.IntRange(min=1), help="Toy sets: training points.")
@click.option(
    "--train-split",
    type=click.Choice(["train", "val"]),
    help="Tabular sets: train on the validation split ('val') when the folder holds only "
    "val.npy and test.npy (e.g. MINIBOONE's published splits).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the run files of an existing run directory (otherwise refused).",
)
@click.option(
    "--strategy",
    type=click.Choice(["default", "mirrored", "multiworker"]),
    default="default",
    help="tf.distribute strategy (multiworker reads TF_CONFIG).",
)
@click.option(
    "--whiten",
    "normalization",
    flag_value="whiten",
    default=None,
    help="Whiten the data in the flow's chain (x = μ + L x̃, L the Cholesky factor of the "
    "covariance) instead of scaling each column: for strongly correlated columns. A file's "
    "recipe whitens above d = 16 when the covariance is well conditioned.",
)
@click.option(
    "--diagonal",
    "normalization",
    flag_value="diagonal",
    help="Scale each column of a file's data by its standard deviation (x = μ + σ ⊙ x̃) even "
    "where the recipe would whiten.",
)
@click.option(
    "--columns",
    callback=_names,
    help="Files: the points' columns, comma-separated names or 0-based indices "
    "(default: every column not in --condition-columns).",
)
@click.option(
    "--condition-columns",
    callback=_names,
    help="Files: the conditions' columns (names or indices): a conditional run, p(x | y).",
)
@click.option("--key", help="Files: the array of an .npz that holds several.")
@click.option(
    "--split",
    callback=_split,
    help="Files: train, validation and test fractions, seeded by --seed.  [default: 0.8,0.1,0.1]",
)
@click.option(
    "--drop-missing",
    is_flag=True,
    help="Files: drop rows holding an empty cell, NaN or Inf (and say how many) instead of "
    "refusing them.",
)
@click.option(
    "--latent-dim",
    type=click.IntRange(min=0),
    help="Model the codes of an autoencoder trained first, this many (0: the points "
    "themselves). Image data sets recommend one.",
)
@click.option(
    "--autoencoder",
    type=click.Choice(ARCHITECTURES),
    help="The autoencoder of a latent flow: one dense layer each way, or convolutions (images).",
)
@click.option("--autoencoder-epochs", type=click.IntRange(min=1), help="Autoencoder epochs.")
@click.option(
    "--unconditional",
    is_flag=True,
    help="Model p(x) of a data set that comes with conditions (e.g. labels), ignoring them.",
)
@click.option("--no-plot", is_flag=True, help="Skip the plots at the end.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_runtime_errors
def train(
    dataset,
    run_dir,
    config_file,
    resume_dir,
    data_dir,
    num_train,
    train_split,
    overwrite,
    strategy,
    no_plot,
    as_json,
    seed,
    columns,
    condition_columns,
    key,
    split,
    drop_missing,
    unconditional,
    **flags,
):
    """Train an OT-Flow on DATASET, a registered data set with its recommended settings or a
    table file of your own (.csv, .tsv, .txt, .npy, .npz, .parquet) with settings chosen from
    its size (any flag overrides)."""
    files = {
        "columns": columns,
        "condition_columns": condition_columns,
        "key": key,
        "split": split,
        "drop_missing": drop_missing or None,
    }
    request = {
        "run_dir": run_dir,
        "config_file": config_file,
        "num_train": num_train,
        "train_split": train_split,
        "data_dir": data_dir,
        "unconditional": unconditional or None,
        **files,
    }
    run_dir, config, data = _prepare(dataset, resume_dir, request, files, flags, seed, overwrite)
    from tfotflow import runs

    console.print(f"[bold]tfotflow train[/] {config['dataset']} → {run_dir}")
    console.print(f"model {config['model']}  train {config['train']}")
    if "latent" in config:
        console.print(f"latent {config['latent']}")
    bars = _progress_bars(config, data, resumed=resume_dir is not None)
    try:
        model, data = runs.train_run(
            run_dir,
            config,
            resume=resume_dir is not None,
            callbacks=bars["likelihood"],
            warm_start_callbacks=bars["warm_start"],
            autoencoder_callbacks=bars["autoencoder"],
            strategy=strategy,
            data=data,
        )
    except KeyboardInterrupt:
        for shown in bars.values():
            for bar in shown:
                bar.stop()
        written = [pathlib.Path(run_dir) / name for name in ("last.npz", "warm_start_last.npz")]
        resumable = any(path.exists() for path in written)
        hint = f"resume with: tfotflow train --resume {run_dir}" if resumable else None
        console.print(
            f"[yellow]interrupted[/]; {hint or 'no checkpoint was written yet; start again'}"
        )
        sys.exit(130)
    with console.status("scoring the test set and plotting…"):
        result = runs.finish_run(model, data, run_dir, config, plot_results=not no_plot)
    _warn_of_solver_error(result["discretization_error"], "mean", "the test NLL's log-densities")
    _emit(result, as_json)


# Where a request's faulty part is shown: tfotflow.settings.RequestError's part → the option.
_REQUEST_HINTS = {
    "dataset": "DATASET",
    "config": "--config",
    "run_dir": "--out",
    "resume": "--resume",
    "iterations": "--iterations",
    "unconditional": "--unconditional",
}


def _prepare(dataset, resume_dir, request, files, flags, seed, overwrite):
    """The run to train, ``(run_dir, config, data)``: a resumed one, or a new one checked
    before TensorFlow starts (:func:`tfotflow.settings.check_request`) and prepared by
    :func:`tfotflow.runs.prepare_run`; a bad request exits 2 naming its option."""
    from tfotflow import settings

    context = click.get_current_context()
    flag = {param.name: param.opts[0] for param in context.command.params}
    config_file = request["config_file"]
    iterations = flags.pop("iterations") if resume_dir is not None else None
    try:
        if resume_dir is not None:
            taken = [flag[k] for k, v in {**flags, **request}.items() if v is not None]
            settings.check_resume(resume_dir, taken)
            _start_tensorflow()
            from tfotflow import runs

            config, data = runs.prepare_resume(resume_dir, iterations)
            _say_training_on(config, iterations)
            return resume_dir, config, data
        file_settings = settings.read_config_file(config_file) if config_file else {}
        settings.check_request(
            file_settings.get("dataset", dataset),
            file_options={flag[k]: v for k, v in files.items()},
            file_settings=file_settings,
            config_file=config_file,
        )
        _start_tensorflow()
        from tfotflow import runs

        return runs.prepare_run(
            dataset,
            run_dir=request["run_dir"],
            overrides={k: v for k, v in flags.items() if v is not None},
            file_settings=file_settings,
            seed=seed,
            data_dir=request["data_dir"],
            options={k: request[k] for k in ("num_train", "train_split") if request[k]},
            file_options=files,
            unconditional=bool(request["unconditional"]),
            overwrite=overwrite,
            report=lambda message: console.print(escape(message)),
        )
    except settings.RequestError as error:
        message = str(error)
        if error.part == "settings":
            message += f" (from {f'a flag or {config_file}' if config_file else 'a flag'})"
        hint = _REQUEST_HINTS.get(error.part, error.part)
        raise click.BadParameter(message, param_hint=hint) from error


def _say_training_on(config, iterations):
    """Says that a resumed run trains on to ``iterations`` (None: to its own count)."""
    if iterations is None:
        return
    stretched = (
        "; the cosine schedule is stretched to them (from here the rate is what a run of "
        f"{iterations} iterations would have)"
    )
    cosine = config["train"]["schedule"] == "cosine"
    console.print(f"training on to {iterations} iterations" + (stretched if cosine else ""))


def _progress_bars(config, data, *, resumed):
    """The progress bars of each phase (lists, empty when the phase does not run)."""
    from tfotflow.progress import ProgressBar

    train, latent = config["train"], config.get("latent")
    steps = train["iterations"]
    bars = {"likelihood": [ProgressBar(steps, console)] if steps else []}
    warm = train.get("warm_start", 0) if not resumed else 0
    bars["warm_start"] = [ProgressBar(warm, console, label="warm start")] if warm else []
    bars["autoencoder"] = []
    if latent:  # its bar counts the optimizer's steps over every epoch
        per_epoch = math.ceil(len(data.train) / latent["autoencoder_batch_size"])
        steps = latent["autoencoder_epochs"] * per_epoch
        bars["autoencoder"] = [ProgressBar(steps, console, label="autoencoder")]
    return bars


# ----------------------------------------------------------------------------- inspect a run

_run_dir = click.argument(
    "run_dir", type=click.Path(exists=True, file_okay=False, path_type=pathlib.Path)
)


def _warn_of_solver_error(error, statistic, what):
    """Warns when the ``statistic`` ("mean" or "max") of a
    :func:`tfotflow.scoring.discretization_error` exceeds :data:`tfotflow.settings.TRUST_NATS`."""
    from tfotflow.settings import TRUST_NATS

    if not error or error[statistic] <= TRUST_NATS:
        return
    n = error["num_steps"]
    console.print(
        f"[yellow]warning:[/] {what} are not converged in the RK4 steps: log p moves by "
        f"{error[statistic]:.3g} nats ({statistic} over {error['rows']} rows) from {n} to "
        f"{2 * n} steps. Score with a larger --num-steps to trust them to "
        f"{TRUST_NATS} nats; if that changes them a lot, the model was fitted to its "
        "training steps' error: train with more --num-steps or a larger α_R (--alpha)"
    )


@main.command(context_settings=CONTEXT)
@_run_dir
@click.option("--num-steps", type=click.IntRange(min=1), help="RK4 steps (default: the run's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_runtime_errors
def evaluate(run_dir, num_steps, as_json):
    """Test NLL (nats), round-trip error, parameter count and time of a trained run, and the
    weights file scored (model.keras, or the checkpoint used when it is absent or damaged)."""
    _start_tensorflow()
    from tfotflow import runs

    model, weights = _load_run_model(run_dir)
    config = rundir.read_config(run_dir)
    autoencoder = runs.load_autoencoder(run_dir, config)
    data = runs.load_data(config)
    result = runs.evaluate(model, data, num_steps=num_steps, autoencoder=autoencoder)
    _warn_of_solver_error(result["discretization_error"], "mean", "the test NLL's log-densities")
    _emit({**result, "weights": str(weights)}, as_json)


@main.command(context_settings=CONTEXT)
@_run_dir
@click.option(
    "-n", "--num-samples", type=click.IntRange(min=1), default=1000, help="How many samples."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    required=True,
    help="The .npy file to write (images as [n, H, W, C]), or for images a .png grid.",
)
@click.option("--seed", type=int, default=0, help="Sampling seed.")
@click.option("--num-steps", type=click.IntRange(min=1), help="RK4 steps (default: the run's).")
@click.option(
    "--condition",
    help="Conditional runs: y as comma-separated values (k of them), or a .npy file of [k] "
    "or [m, k] (then n samples for each of the m conditions: [n, m, d]); for labelled data "
    "(e.g. digits) a class name, such as 3.",
)
@_runtime_errors
def sample(run_dir, num_samples, output, seed, num_steps, condition):
    """Draw samples from a trained run into a .npy file (of p(x | y) for a conditional run),
    or, for a run on images, a .png grid of them."""
    if output.suffix not in (".npy", ".png"):
        raise click.BadParameter(
            f"expected a .npy or .png path. Received: {output}", param_hint="-o"
        )
    config = _peek_config(run_dir)
    image_shape = config.get("image_shape")
    if output.suffix == ".png" and "model" in config and image_shape is None:
        raise click.BadParameter(
            f"{run_dir} models points, not images: write a .npy file", param_hint="-o"
        )
    if condition is not None:
        condition = _read_condition(condition, config.get("classes"))
    _start_tensorflow()
    from tfotflow import runs

    model, _ = _load_run_model(run_dir)
    autoencoder = runs.load_autoencoder(run_dir)
    if model.condition_dim and condition is None:
        raise click.BadParameter(
            f"{run_dir} holds a conditional model (condition_dim={model.condition_dim}): "
            "pass the condition y",
            param_hint="--condition",
        )
    if condition is not None and condition.shape[-1] != model.condition_dim:
        raise click.BadParameter(
            f"{run_dir} holds a model with condition_dim={model.condition_dim}; expected "
            f"{model.condition_dim} value(s) per condition. Received: shape {condition.shape}",
            param_hint="--condition",
        )
    samples = runs.save_samples(
        model,
        num_samples,
        output,
        condition=condition,
        seed=seed,
        num_steps=num_steps,
        autoencoder=autoencoder,
        image_shape=image_shape,
    )
    click.echo(f"wrote samples of shape {list(samples.shape)} to {output}")


def _peek_config(run_dir):
    """The run's ``config.json`` read before TensorFlow starts, or {} when it cannot be read
    (the library then names what is wrong)."""
    try:
        return rundir.read_config(run_dir)
    except rundir.RunError:
        return {}


def _read_condition(text, classes=None):
    """A condition from ``--condition``: a .npy file ([k] or [m, k]), comma-separated values,
    or, for labelled data (``classes``), a class name (its one-hot row)."""
    import numpy as np

    if classes and text in classes:
        return np.eye(len(classes))[classes.index(text)]
    if text.endswith(".npy"):
        try:
            values = np.load(text, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise click.BadParameter(
                f"cannot read {text} as a .npy array: {error}", param_hint="--condition"
            ) from error
    else:
        try:
            values = np.array([float(v) for v in text.split(",")])
        except ValueError as error:
            raise click.BadParameter(
                f"expected comma-separated numbers or a .npy file. Received: {text!r}",
                param_hint="--condition",
            ) from error
    if values.ndim not in (1, 2) or not np.issubdtype(values.dtype, np.number):
        raise click.BadParameter(
            f"expected numbers of shape [k] or [m, k]. Received: {values.dtype} {values.shape}",
            param_hint="--condition",
        )
    if not np.all(np.isfinite(values)):
        raise click.BadParameter(
            f"the condition must be finite. Received: {text}", param_hint="--condition"
        )
    return values.astype(np.float64)


@main.command(context_settings=CONTEXT)
@_run_dir
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    required=True,
    help="Where the scores go: .npy (the log-densities), .csv or .parquet (with the id column "
    "and outlier flags).",
)
@click.option("--id-column", help="A column of FILE carried into the output (name or index).")
@click.option("--num-steps", type=click.IntRange(min=1), help="RK4 steps (default: the run's).")
@click.option(
    "--outliers",
    "quantile",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Flag rows below this quantile of the validation rows' log-densities (e.g. 0.01).",
)
@click.option("--key", help="The array of an .npz that holds several.")
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=50_000,
    help="Rows read and scored at once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_runtime_errors
def score(run_dir, file, output, id_column, num_steps, quantile, key, chunk_rows, as_json):
    """Write the log-density (nats, in the data's units) of every row of FILE under a trained
    run, streamed in chunks, with an estimate of the solver's error on FILE's rows."""
    from tfotflow.scoring import check_output

    try:
        check_output(output, id_column)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="-o") from error
    _start_tensorflow()
    from rich.progress import Progress

    from tfotflow import datasets, runs, scoring

    config = rundir.read_config(run_dir)
    if "latent" in config:
        raise click.BadParameter(
            f"{run_dir} models the codes of an autoencoder (a latent flow), whose densities "
            "are not those of the points: score is for flows of the points themselves",
            param_hint="RUN_DIR",
        )
    model, _ = _load_run_model(run_dir)
    columns, condition_columns = runs.scored_columns(config, model.dim, model.condition_dim)
    threshold = None if quantile is None else runs.outlier_threshold(run_dir, quantile)
    total = scoring.count_rows(file)
    try:
        with Progress(*Progress.get_default_columns(), console=console) as progress:
            task = progress.add_task(f"scoring {file.name}", total=total)
            summary = scoring.score_file(
                model,
                file,
                output,
                columns=columns,
                condition_columns=condition_columns,
                id_column=id_column,
                key=key,
                num_steps=num_steps,
                outlier_threshold=threshold,
                rows=chunk_rows,
                progress=lambda done: progress.update(task, completed=done),
            )
    except datasets.DatasetError as error:
        raise click.BadParameter(str(error), param_hint="FILE") from error
    _warn_of_solver_error(summary["discretization_error"], "max", "these rows' scores")
    if threshold is not None:
        summary["outlier_threshold"] = threshold
    _emit(summary, as_json)


@main.command(context_settings=CONTEXT)
@_run_dir
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=pathlib.Path))
@_runtime_errors
def export(run_dir, out_dir):
    """Export a trained run as a SavedModel (log_prob and sample signatures) to OUT_DIR.

    The SavedModel serves with TensorFlow alone (tf.saved_model.load, TensorFlow Serving):
    neither tfotflow nor TensorFlow Probability is needed to load it.
    """
    if out_dir.exists() and any(out_dir.iterdir()):
        raise click.BadParameter(
            f"{out_dir} exists and is not empty; choose a new folder", param_hint="OUT_DIR"
        )
    _start_tensorflow()
    from tfotflow import runs, serving

    model = _load_run_model(run_dir)[0]
    autoencoder = runs.load_autoencoder(run_dir)
    if autoencoder is None:
        path = model.export(out_dir, verbose=False)
    else:
        path = serving.export(model, out_dir, autoencoder=autoencoder)
    click.echo(f"wrote a SavedModel with signatures log_prob and sample to {path}")


@main.command(context_settings=CONTEXT)
@_run_dir
@click.option("--dims", help="Comma-separated dimensions for d > 2 (default: the first four).")
@click.option("--seed", type=int, default=0, help="Sampling seed.")
@_runtime_errors
def plot(run_dir, dims, seed):
    """Plot a run: density, samples and trajectories (2-D), or pairwise marginals; for images,
    decoded samples (a row per class) and interpolations between test images."""
    _start_tensorflow()
    from tfotflow import runs

    model, _ = _load_run_model(run_dir)
    config = rundir.read_config(run_dir)
    data = runs.load_data(config)
    autoencoder = runs.load_autoencoder(run_dir, config)
    chosen = None
    if dims:
        try:
            chosen = [int(d) for d in dims.split(",")]
        except ValueError:
            chosen = []
        if not chosen or not all(0 <= d < data.metadata.dim for d in chosen):
            raise click.BadParameter(
                f"expected dimensions in 0..{data.metadata.dim - 1}. Received: {dims!r}",
                param_hint="--dims",
            )
    for path in runs.plot(model, data, run_dir, dims=chosen, seed=seed, autoencoder=autoencoder):
        click.echo(str(path))


# ----------------------------------------------------------------------------- datasets, plugins


@main.group(context_settings=CONTEXT)
def datasets():
    """List, describe and download data sets."""


@datasets.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def datasets_list(as_json):
    """Every installed data set (read from package metadata; nothing is imported)."""
    from tfotflow.registry import DATASETS

    rows = [
        dict(zip(("name", "package", "version"), (name, *DATASETS.package_of(name))))
        for name in DATASETS.names()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "package", "version")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    Console().print(table)


@datasets.command("info", context_settings=CONTEXT)
@click.argument("name")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where data sets live.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_runtime_errors
def datasets_info(name, data_dir, as_json):
    """Dimension (and condition width), description, citation and recommended settings of
    NAME, and whether its data is readable: rows per split, or what is wrong with its files
    (then the exit status is 1)."""
    from tfotflow import datasets as library

    if name not in library.names():
        raise click.BadParameter(
            f"unknown dataset {name!r}; installed: {', '.join(library.names())}",
            param_hint="NAME",
        )
    from tfotflow.datasets.status import describe

    result = describe(name, data_dir=data_dir)
    _emit(result, as_json)
    if result["data"] not in ("readable",):  # absent or damaged: a script can tell
        console.print(f"[red]error:[/] {escape(result['error'])}")
        sys.exit(1)


@datasets.command("download", context_settings=CONTEXT)
@click.argument("name", type=click.Choice(["power", "gas", "hepmass", "miniboone", "bsds300"]))
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where data sets live.")
@_runtime_errors
def datasets_download(name, data_dir):
    """Download the MAF archive (resumable) and unpack NAME into the data folder.

    What is checked: the archive's length against the server's Content-Length, and NAME's
    split sizes and dimension after the MAF preprocessing. No checksum of the archive is
    pinned (none is published with it). Files already in the folder that the archive does
    not hold are kept.
    """
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from tfotflow.datasets import default_data_dir, tabular

    target = pathlib.Path(data_dir) if data_dir else default_data_dir()
    with Progress(
        *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console
    ) as progress:
        task = progress.add_task(f"MAF archive → {target}", total=None)
        data = tabular.fetch(
            name,
            target,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    click.echo(f"{name}: {len(data.train)} / {len(data.val)} / {len(data.test)} rows in {target}")


@main.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def plugins(as_json):
    """Installed data set and regularizer plugins, with their package and status.

    "loads": the plugin imports and is callable (a dataset's data is not loaded here; its
    contract is checked by tfotflow.testing.check_dataset_plugin); otherwise the error.
    """
    import warnings

    from tfotflow.registry import DATASETS, REGULARIZERS

    _start_tensorflow()  # the regularizer plugins are TensorFlow code
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broken plugins are shown in the table instead
        for kind, registry in (("dataset", DATASETS), ("regularizer", REGULARIZERS)):
            rows += [{"kind": kind, **row} for row in registry.status()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("kind", "name", "package", "version", "status")
    for row in rows:
        status = row["status"]
        style = "green" if status == "loads" else "yellow" if status.startswith("loads") else "red"
        table.add_row(
            row["kind"],
            row["name"],
            str(row["package"]),
            str(row["version"]),
            f"[{style}]{status}[/]",
        )
    Console().print(table)


@main.command(context_settings=CONTEXT)
@click.option("--quick", is_flag=True, help="Small sizes: a run of about a minute.")
@click.option(
    "--suite",
    "suites",
    multiple=True,
    type=click.Choice(SUITES),
    help="Suites to run (repeatable). Default: trace, peers, training_speed.",
)
@click.option(
    "--miniboone-dir",
    type=click.Path(file_okay=False),
    help="For the quality and time_to_quality suites: a folder holding miniboone/val.npy "
    "and test.npy.",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    help="Write the full results as JSON to this file ('-': standard output); without it "
    "only the tables are shown.",
)
@_runtime_errors
def bench(quick, suites, miniboone_dir, json_file):
    """Measure tfotflow against autodiff, Hutchinson and TFP's FFJORD on this machine."""
    _start_tensorflow()
    from tfotflow import bench as benchmarks
    from tfotflow.bench.report import summary_tables
    from tfotflow.checkpoint import atomic_write_bytes

    suites = suites or ("trace", "peers", "training_speed")
    with console.status(f"benchmarking {', '.join(suites)}{' (quick)' if quick else ''}"):
        results = benchmarks.run(suites, quick=quick, miniboone_dir=miniboone_dir)
    for table in summary_tables(results):
        console.print(table)
    text = json.dumps(results, indent=1)
    if json_file is not None and str(json_file) == "-":
        click.echo(text)
    elif json_file is not None:
        atomic_write_bytes(json_file, (text + "\n").encode())
        console.print(f"wrote {json_file}")


if __name__ == "__main__":  # pragma: no cover
    main()
