"""Benchmarks that measure tfotflow against its peers in one process (``tfotflow bench``).

Each benchmark module has ``run(quick=False) -> dict`` returning JSON-ready results; the
scripts in ``benchmarks/`` and the ``tfotflow bench`` command call them.
"""
