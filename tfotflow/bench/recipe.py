"""The automatic recipe against the tuned ones: each built-in set trained three ways, one
after another in one process, and scored on the same held-out test split.

- ``tuned``: ``tfotflow train NAME`` — the data set's recommended settings (the CLI's run);
- ``file``: ``tfotflow train FILE`` — the set's training and validation rows written to a
  ``.npy`` file, split 0.8 / 0.1 / 0.1 by the file path, standardized by ``adapt`` and trained
  with the settings :func:`tfotflow.settings.recipe` chooses from d, k and n;
- ``keras``: plain Keras — ``OTFlowModel(d)``, ``compile()`` with no arguments, ``fit`` on the
  training split (the recipe's batch, steps and warm start).

Each row: the exact test NLL (the model's evaluation steps), its gap to the exact entropy,
the test NLL at four times the evaluation steps (``reference_nll``: a model whose training
solve was fitted shows it here), the RK4 steps training ended with, wall and CPU seconds of
training.
"""

import pathlib
import tempfile
import time

import numpy as np

from tfotflow import datasets, runs
from tfotflow._keras import keras as keras_lib
from tfotflow.model import OTFlowModel

NAMES = ("8gaussians", "checkerboard", "rotating_gaussians", "banana", "linear_gaussian")


def _test_nll(model, data, num_steps=None):
    conditions = data.conditions["test"] if data.conditional else None
    return -float(np.mean(model.score_samples(data.test, conditions, num_steps=num_steps)))


def _timed(train):
    wall, cpu = time.perf_counter(), time.process_time()
    model = train()
    return model, time.perf_counter() - wall, time.process_time() - cpu


QUICK = {"iterations": 4, "validate_every": 2, "warm_start": 10}


def _run_config(data, name, folder, quick, seed):
    """``tfotflow train``'s path: the run prepared as the command prepares it, trained."""
    overrides = QUICK if quick else {}
    run_dir, config, data = runs.prepare_run(
        name, run_dir=folder, overrides=overrides, seed=seed, data=data
    )
    return runs.train_run(run_dir, config, data=data)[0], config


def contenders(data, folder, quick=False, seed=0):
    """The three ways of training ``data``: ``{way: callable() -> (model, settings)}``
    (``quick``: a few steps each; ``seed``: the runs' and the Keras model's seed)."""
    name = data.metadata.name
    d, k = data.metadata.dim, data.metadata.condition_dim

    def tuned():
        return _run_config(data, name, folder / "tuned", quick, seed)

    def from_file():
        rows = np.concatenate([data.train, data.val])
        table = rows
        if data.conditional:
            conditions = np.concatenate([data.conditions["train"], data.conditions["val"]])
            table = np.concatenate([rows, conditions], axis=1)
        path = folder / f"{name}.npy"
        np.save(path, table)
        condition_columns = [str(d + i) for i in range(k)] or None
        file_data = datasets.from_file(path, condition_columns=condition_columns)
        return _run_config(file_data, str(path), folder / "file", quick, seed)

    def keras():
        keras_lib.utils.set_random_seed(seed)
        model = OTFlowModel(d, condition_dim=k)
        model.compile()
        conditions = data.conditions["train"] if data.conditional else None
        if quick:
            model.fit(data.train, conditions, epochs=1, warm_start=10, verbose=0)
        else:
            model.fit(data.train, conditions, verbose=0)
        return model, {"width": model.potential.width, "steps": int(model.optimizer.iterations)}

    return {"tuned": tuned, "file": from_file, "keras": keras}


def run(quick=False, names=NAMES, miniboone_dir=None, seeds=(0,), ways=None):
    """Trains each set of ``names`` the three ways (or only ``ways``), once per seed of
    ``seeds``; returns the rows."""
    del miniboone_dir  # MINIBOONE's tuned run (width 256) takes about half an hour here
    rows = []
    for name in names:
        options = {"num_train": 2000, "num_val": 200, "num_test": 500} if quick else {}
        data = datasets.load(name, **options)
        for seed in seeds:
            with tempfile.TemporaryDirectory() as folder:
                chosen = contenders(data, pathlib.Path(folder), quick, seed)
                for way, train in chosen.items():
                    if ways is not None and way not in ways:
                        continue
                    (model, settings), wall, cpu = _timed(train)
                    nll = _test_nll(model, data)
                    entropy = data.metadata.entropy
                    row = {
                        "dataset": name,
                        "way": way,
                        "seed": seed,
                        "test_nll": nll,
                        "gap": None if entropy is None else nll - entropy,
                        "reference_nll": _test_nll(model, data, 4 * model.eval_num_steps),
                        "final_num_steps": model.num_steps,
                        "wall_seconds": wall,
                        "cpu_seconds": cpu,
                        "settings": settings.get("model", settings) | settings.get("train", {}),
                    }
                    print(row, flush=True)
                    rows.append(row)
    return {"benchmark": "recipe", "quick": quick, "rows": rows}
