"""Training quality against the truth: test NLL reached vs the true entropy, with wall time.

Toy sets are generated exactly as FFJORD/OT-Flow generate them and trained with the paper's toy
settings (width 32, float64, α = (1, 30, 1), 8 RK4 steps, batch 5000); their true entropy is
the best test NLL any model can reach. MINIBOONE trains on the real validation split and is
scored on the real test split (the training split is not at hand here) with the paper's
MINIBOONE settings.
"""

import tempfile
import time

import numpy as np

from tfotflow import datasets, training
from tfotflow.model import OTFlowModel

TARGETS = {"8gaussians": 0.05, "checkerboard": 0.15}


def train_and_score(
    data, *, iterations, learning_rate, validate_every, patience=10, seed=0, **settings
):
    """Trains an OTFlowModel with ``settings``; returns the measured row."""
    hyper = {**data.metadata.hyperparameters, **settings}
    model = OTFlowModel(
        data.metadata.dim,
        width=hyper["width"],
        num_layers=hyper.get("num_layers", 2),
        alpha=tuple(hyper["alpha"]),
        num_steps=hyper["num_steps"],
        eval_num_steps=hyper.get("eval_num_steps", hyper["num_steps"]),
        dtype=hyper.get("dtype", "float32"),
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        history = training.train(
            model,
            data,
            iterations=iterations,
            batch_size=hyper["batch_size"],
            learning_rate=learning_rate,
            validate_every=validate_every,
            run_dir=run_dir,
            seed=seed,
            patience=patience,
        )
    seconds = time.perf_counter() - start
    nll = -float(np.mean(model.log_prob(data.test)))
    return {
        "dataset": data.metadata.name,
        "test_nll": nll,
        "true_entropy": data.metadata.entropy,
        "gap": None if data.metadata.entropy is None else nll - data.metadata.entropy,
        "iterations_run": len(history.history["loss"]) * validate_every,
        # The best checkpoint is restored at the end, optimizer state included.
        "best_iteration": int(model.optimizer.iterations.numpy()),
        "validations": [round(v, 4) for v in history.history["val_nll"]],
        "wall_seconds": seconds,
        "settings": {key: hyper[key] for key in ("width", "alpha", "num_steps", "batch_size")},
        "learning_rate": learning_rate,
    }


def run(
    quick=False,
    names=("8gaussians", "checkerboard"),
    miniboone_dir=None,
    iterations=None,
    patience=5,
):
    """Trains each toy set (and MINIBOONE when ``miniboone_dir`` holds its splits)."""
    jobs = [
        (
            datasets.load(name, num_train=100_000, num_val=10_000, num_test=100_000),
            dict(iterations=6000, learning_rate=0.05, validate_every=100),
        )
        for name in names
    ]
    if miniboone_dir is not None:
        data = datasets.load("miniboone", data_dir=miniboone_dir, train_split="val")
        jobs.append(
            (data, dict(iterations=400, learning_rate=0.01, validate_every=40, dtype="float32"))
        )
    rows = []
    for data, settings in jobs:
        if quick:
            settings = {**settings, "iterations": 4, "validate_every": 2}
        if iterations:
            settings = {**settings, "iterations": iterations}
        row = train_and_score(data, patience=patience, **settings)
        row["target_gap"] = TARGETS.get(data.metadata.name)
        rows.append(row)
    return {"benchmark": "quality", "quick": quick, "rows": rows}
