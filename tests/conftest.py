"""Shared fixtures: quiet TensorFlow logs, the ../shared reference files, float64 helpers."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


def shared_file(relative):
    """The path of a file under ../shared, or a skip saying it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"reference file {path} is absent (it lives outside the repository)")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
