"""Run directories: the files one training run writes, each written atomically.

```none
RUN_DIR/config.json    every setting (data set and its dimension, seed, model, training), first
RUN_DIR/autoencoder.keras, autoencoder.csv
                       a latent flow's autoencoder (after every epoch) and its log
RUN_DIR/warm_start.csv the flow-matching warm start's loss (when it ran), every ≤ 50 steps or
                       at each of its validations (val_flow_matching)
RUN_DIR/warm_start_last.npz, warm_start_best.npz
                       the warm start's checkpoints at each validation and at its best
RUN_DIR/metrics.csv    one row per validation: step, time, loss, nll, …, val_nll, learning_rate
RUN_DIR/last.npz       checkpoint after every validation (resume from here)
RUN_DIR/best.npz       checkpoint at the best validation NLL
RUN_DIR/model.keras    the final model (best weights), loadable with keras.models.load_model
RUN_DIR/val_log_prob.npy  the final model's log-density of every validation row (the reference
                       of `tfotflow score --outliers`)
RUN_DIR/*.png          plots
```

Every file is written atomically (temporary file, fsync, rename), so a kill never leaves a
half-written file under its final name. Imports no TensorFlow: a model is saved through its
own ``save``.
"""

import csv
import io
import json
import os
import pathlib

import numpy as np

from tfotflow.checkpoint import atomic_write_bytes

RUN_FILES = (
    "config.json",
    "autoencoder.keras",
    "autoencoder.csv",
    "warm_start.csv",
    "warm_start_last.npz",
    "warm_start_best.npz",
    "metrics.csv",
    "last.npz",
    "best.npz",
    "model.keras",
    "val_log_prob.npy",
    "density.png",
    "samples.png",
    "trajectories.png",
    "marginals.png",
    "samples_by_class.png",
    "interpolations.png",
)


def remove_stale_temporaries(run_dir):
    """Deletes temporary files a killed write left in ``run_dir`` (``.NAME.XXXX`` of the run
    files, ``.STEM.tmp.keras`` of its ``.keras`` files); returns their paths."""
    run_dir = pathlib.Path(run_dir)
    stale = [path for name in RUN_FILES for path in run_dir.glob(f".{name}.*") if path.is_file()]
    stale += [  # save_model's temporaries of the .keras files
        temporary
        for name in RUN_FILES
        if name.endswith(".keras")
        and (temporary := run_dir / f".{pathlib.Path(name).stem}.tmp.keras").exists()
    ]
    for path in stale:
        path.unlink()
    return stale


def run_files(run_dir):
    """The files of ``RUN_FILES`` present in ``run_dir`` (none if it does not exist)."""
    run_dir = pathlib.Path(run_dir)
    return [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]


class RunError(RuntimeError):
    """A run directory is missing, incomplete or inconsistent."""


def write_json(path, value):
    """Writes ``value`` as indented JSON to ``path``, atomically."""
    atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def read_config(run_dir):
    """The run's ``config.json``.

    Raises:
        RunError: naming the file, when it is missing or not a JSON object.
    """
    path = pathlib.Path(run_dir) / "config.json"
    if not path.exists():
        raise RunError(f"{run_dir} is not a run directory: {path.name} is missing")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is corrupted (not JSON: {error})") from error
    if not isinstance(config, dict) or not {"dataset", "model"} <= set(config):
        raise RunError(f"{path} is not a tfotflow run configuration (no dataset or model)")
    return config


def extend(run_dir, config, iterations):
    """Raises the run's iteration count to ``iterations`` in its ``config.json`` (atomically)
    and returns the new configuration, for a resume that trains on. A cosine schedule is
    stretched over the new count: from the step where training resumes, the rate is the one a
    run of ``iterations`` steps would have there (a rise from a finished run's rate of 0).

    Raises:
        ValueError: naming ``iterations``, when it is not above the run's count.
    """
    done = config["train"]["iterations"]
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations <= done:
        raise ValueError(
            f"`iterations` must be above the run's {done} to train on. "
            f"Received: iterations={iterations!r}"
        )
    config = {**config, "train": {**config["train"], "iterations": iterations}}
    write_json(pathlib.Path(run_dir) / "config.json", config)
    return config


def write_csv(path, rows):
    """Writes ``rows`` (dicts; the columns in order of first appearance) to ``path`` as CSV,
    atomically."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def read_csv(path):
    """The rows of a run's CSV log as dicts of floats ([] when absent).

    Raises:
        RunError: naming the file, when it is not such a log.
    """
    path = pathlib.Path(path)
    if not path.exists():
        return []
    try:
        with open(path, newline="") as handle:
            return [
                {k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)
            ]
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as error:
        raise RunError(f"{path} is corrupted ({type(error).__name__}: {error})") from error


def write_npy(path, array):
    """Writes ``array`` to ``path`` as .npy, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def save_model(model, path):
    """``model.save`` to a temporary name in the same folder, then an atomic rename."""
    path = pathlib.Path(path)
    temporary = path.with_name(f".{path.stem}.tmp.keras")
    model.save(temporary)
    os.replace(temporary, path)
