"""Benchmarks that measure tfotflow against its peers in one process (``tfotflow bench``).

Each benchmark module has ``run(quick=False) -> dict`` returning JSON-ready results; the
scripts in ``benchmarks/`` and the ``tfotflow bench`` command call them.
"""

import importlib

from tfotflow.about import stack_versions
from tfotflow.hardware import machine

SUITES = (
    "trace",
    "peers",
    "training_speed",
    "startup",
    "quality",
    "scaling_out",
    "time_to_quality",
    "recipe",
    "scoring",
    "images",
)
TRAINING_SUITES = ("quality", "time_to_quality", "recipe")
DATA_SUITES = (*TRAINING_SUITES, "scoring")  # they read MINIBOONE when given its folder


def run(
    suites=("trace", "peers", "training_speed"),
    *,
    quick=False,
    miniboone_dir=None,
    names=None,
    options=None,
):
    """Runs the named benchmark suites; returns ``{"quick": …, "versions": …, suite: result}``.

    ``quality`` and ``time_to_quality`` (training) are long and run only when named; they train
    on the toy sets ``names`` (default: the suite's own) and on MINIBOONE when
    ``miniboone_dir`` holds its splits. ``options`` maps a suite to more keyword arguments of
    its ``run`` (e.g. ``{"time_to_quality": {"seeds": (0, 1, 2)}}``).
    """

    results = {
        "quick": quick,
        "versions": stack_versions(),
        **machine(),
    }
    for suite in suites:
        module = importlib.import_module(f"tfotflow.bench.{suite}")
        kwargs = {}
        if suite in DATA_SUITES:
            kwargs["miniboone_dir"] = miniboone_dir
        if suite in TRAINING_SUITES and names is not None:
            kwargs["names"] = tuple(names)
        kwargs.update((options or {}).get(suite, {}))
        results[suite] = module.run(quick=quick, **kwargs)
    return results
