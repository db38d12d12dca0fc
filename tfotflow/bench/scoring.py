"""Scoring throughput: ``tfotflow score`` on a million rows at d = 43 against the peers' exact
``log_prob`` at matched accuracy, with peak memory.

The three models (OT-Flow at the recipe's width for MINIBOONE's size, FFJORD and BayesFlow's
flow matching with about as many weights) train for the same few seconds on MINIBOONE's
validation split (or, without it, on a 43-d Gaussian mixture), one after another. Each is
then scored at the cheapest solver setting whose test NLL stays within 0.01 nats of its own
reference accuracy (:func:`tfotflow.bench.time_to_quality.matched_accuracy`, timed
interleaved on one batch). OT-Flow also scores a 1M-row ``.npy`` end to end with
:func:`tfotflow.scoring.score_file` (reading, chunking and writing included) at its matched
setting; its rows per second are compared with the peers' ``log_prob`` rows per second
(file reading not included for them).
"""

import pathlib
import resource
import tempfile
import time

import numpy as np

from tfotflow import datasets, scoring
from tfotflow._keras import keras
from tfotflow.bench.clock import Clock, race
from tfotflow.bench.contenders import FFJORDContender, FlowMatchingContender, OTFlowContender
from tfotflow.bench.peers import matched_hidden_width
from tfotflow.bench.time_to_quality import bayesflow_available, matched_accuracy

D = 43


def _data(miniboone_dir, seed=0):
    """MINIBOONE's validation (train) and test splits, or a 43-d Gaussian mixture."""
    if miniboone_dir is not None:
        data = datasets.load("miniboone", data_dir=miniboone_dir, train_split="val")
        return data.train.astype("float32"), data.test.astype("float32"), "miniboone"
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(8, D))
    labels = rng.integers(8, size=24_000)
    points = (centres[labels] + rng.normal(size=(24_000, D))).astype("float32")
    points = (points - points.mean(axis=0)) / points.std(axis=0)
    return points[:20_000], points[20_000:], "gaussian mixture"


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(quick=False, miniboone_dir=None, rows=1_000_000, train_seconds=60.0):
    """Trains the three models briefly, matches their accuracy, and scores ``rows`` rows."""
    train, test, source = _data(miniboone_dir)
    if quick:
        rows, train_seconds, test = 20_000, 2.0, test[:50]
    test = test[:500]
    keras.utils.set_random_seed(0)
    ours = OTFlowContender(
        datasets.from_array(train),
        overrides=dict(
            width=64,
            num_steps=6,
            eval_num_steps=12,
            batch_size=512,
            warm_start=0,
            iterations=10**6,  # the clock stops it
        ),
    )
    contenders = [
        ours,
        FFJORDContender(
            D,
            hidden=matched_hidden_width(D, ours.num_parameters),
            learning_rate=1e-3,
            dtype="float32",
        ),
    ]
    if bayesflow_available():
        contenders.append(
            FlowMatchingContender(D, widths=(48, 48), learning_rate=1e-3, dtype="float32")
        )
    trained = {}

    def train_briefly(contender):
        # scored once, by the matched-accuracy step
        clock = Clock(
            lambda: float("nan"), budget_seconds=train_seconds, first_score=train_seconds
        )
        if isinstance(contender, OTFlowContender):
            result = contender.run(clock)
        else:
            result = race(contender.step, iter(contender.batches(train, batch=512, seed=0)), clock)
        trained[contender.name] = {
            "iterations": result["iterations"],
            "parameters": contender.num_parameters,
        }

    # OT-Flow first, alone: its end-to-end scoring's peak memory is its own.
    train_briefly(ours)
    setting = matched_accuracy([ours], test, batch=len(test), rounds=1)[ours.name]["setting"]
    before = _peak_mib()
    with tempfile.TemporaryDirectory() as folder:
        table = pathlib.Path(folder) / "rows.npy"
        rng = np.random.default_rng(1)
        written = np.lib.format.open_memmap(table, mode="w+", dtype="float32", shape=(rows, D))
        for begin in range(0, rows, 50_000):  # in chunks: the peak memory is the scoring's
            size = min(50_000, rows - begin)
            picks = rng.integers(len(test), size=size)
            written[begin : begin + size] = test[picks] + rng.normal(scale=0.01, size=(size, D))
        written.flush()
        del written
        start = time.perf_counter()
        summary = scoring.score_file(
            ours.model,
            table,
            pathlib.Path(folder) / "scores.npy",
            columns=[str(i) for i in range(D)],
            num_steps=setting,
        )
        seconds = time.perf_counter() - start
    after_ours = _peak_mib()
    for contender in contenders[1:]:
        train_briefly(contender)
    matched = matched_accuracy(contenders, test, batch=len(test), rounds=3)
    ours_rate = rows / seconds
    return {
        "benchmark": "scoring",
        "quick": quick,
        "data": source,
        "d": D,
        "rows": rows,
        "train_seconds": train_seconds,
        "training": trained,
        "matched": matched,
        "otflow_score_file": {
            "seconds": seconds,
            "rows_per_second": ours_rate,
            "setting": setting,
            "discretization_error": summary["discretization_error"],
            "peak_rss_mib_before": before,
            "peak_rss_mib_after": after_ours,
        },
        "peak_rss_mib_after_peers": _peak_mib(),
        "score_file_speedups": {
            name: ours_rate / row["log_prob_per_second"]
            for name, row in matched.items()
            if name != ours.name
        },
    }
