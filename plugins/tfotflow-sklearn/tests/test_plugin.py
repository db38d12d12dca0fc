"""The plugin honours tfotflow's dataset contract and is found through its entry points."""

import numpy as np
import pytest

from tfotflow import datasets, testing
from tfotflow.registry import DATASETS

SIZES = {"digits": (1797, 64), "breast_cancer": (569, 30), "wine": (178, 13), "iris": (150, 4)}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_contract(name):
    data = testing.check_dataset_plugin(name)
    rows, dim = SIZES[name]
    assert data.metadata.dim == dim
    assert len(data.train) + len(data.val) + len(data.test) == rows
    np.testing.assert_allclose(data.train.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(data.train.std(0), 1, atol=1e-10)


def test_found_through_installed_entry_points():
    DATASETS.refresh()
    package, version = DATASETS.package_of("wine")
    assert package == "tfotflow-sklearn" and version == "0.1.0"


def test_seed_changes_the_split():
    a = datasets.load("iris", seed=0)
    b = datasets.load("iris", seed=1)
    assert not np.array_equal(a.test, b.test)
