"""scikit-learn's bundled data sets (never the ``fetch_*`` ones) as tfotflow datasets.

Each loader follows the tfotflow dataset contract::

    loader(*, seed, data_dir, **options) -> tfotflow.datasets.Dataset
"""

import functools

import numpy as np
import sklearn.datasets

from tfotflow.datasets import Dataset, Metadata

CITATION = (
    "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011 (the bundled "
    "copies); original data: UCI Machine Learning Repository (CC BY 4.0)"
)
SOURCES = {
    "digits": (sklearn.datasets.load_digits, "8x8 handwritten digits, dequantized, 64-d", True),
    "breast_cancer": (sklearn.datasets.load_breast_cancer, "Wisconsin breast cancer, 30-d", False),
    "wine": (sklearn.datasets.load_wine, "wine recognition chemistry, 13-d", False),
    "iris": (sklearn.datasets.load_iris, "Fisher's iris measurements, 4-d", False),
}
FRACTIONS = (0.7, 0.15)  # train, validation; the rest is test


def load(name, *, seed=0, data_dir=None, dtype="float64"):
    """Loads ``name`` with a seeded 70/15/15 split, standardised with training statistics.

    Integer-valued data (digits) gets uniform noise in [0, 1) first, the usual dequantization,
    so that a density on the reals can be fitted.
    """
    del data_dir  # bundled with scikit-learn
    read, description, integer_valued = SOURCES[name]
    data = read().data.astype(np.float64)
    rng = np.random.default_rng(seed)
    if integer_valued:
        data = data + rng.uniform(size=data.shape)
    data = data[rng.permutation(len(data))]
    n_train = int(FRACTIONS[0] * len(data))
    n_val = int(FRACTIONS[1] * len(data))
    train, val, test = np.split(data, [n_train, n_train + n_val])
    mean, std = train.mean(axis=0), train.std(axis=0)
    splits = [((split - mean) / std).astype(dtype) for split in (train, val, test)]
    metadata = Metadata(
        name=name,
        dim=data.shape[1],
        description=description,
        citation=CITATION,
        hyperparameters=dict(
            width=64 if data.shape[1] > 10 else 32,
            num_layers=2,
            alpha=(1.0, 100.0, 15.0),
            num_steps=8,
            eval_num_steps=16,
            batch_size=min(256, n_train),
            learning_rate=0.01,
        ),
    )
    return Dataset(*splits, metadata=metadata)


digits = functools.partial(load, "digits")
breast_cancer = functools.partial(load, "breast_cancer")
wine = functools.partial(load, "wine")
iris = functools.partial(load, "iris")
