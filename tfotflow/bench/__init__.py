"""Benchmarks that measure tfotflow against its peers in one process (``tfotflow bench``).

Each benchmark module has ``run(quick=False) -> dict`` returning JSON-ready results; the
scripts in ``benchmarks/`` and the ``tfotflow bench`` command call them.
"""

SUITES = ("trace", "peers", "training_speed", "quality", "scaling_out")


def run(suites=("trace", "peers", "training_speed"), *, quick=False, miniboone_dir=None):
    """Runs the named benchmark suites; returns ``{"quick": …, "versions": …, suite: result}``.

    ``quality`` (training to convergence) is long and runs only when named.
    """
    import importlib
    import os
    import platform

    from tfotflow.about import stack_versions

    results = {
        "quick": quick,
        "versions": stack_versions(),
        "machine": platform.machine(),
        "processors": os.cpu_count(),
    }
    for suite in suites:
        module = importlib.import_module(f"tfotflow.bench.{suite}")
        kwargs = {"miniboone_dir": miniboone_dir} if suite == "quality" else {}
        results[suite] = module.run(quick=quick, **kwargs)
    return results
