"""Datasets as plugins: the toy 2-D sets, the five MAF tabular sets, and any installed plugin.

>>> from tfotflow import datasets
>>> data = datasets.load("checkerboard", seed=0, num_train=1000, num_val=100, num_test=100)
>>> data.train.shape, round(data.metadata.entropy, 3)
((1000, 2), 3.466)
"""

from tfotflow.datasets.core import (
    REGISTRY,
    Dataset,
    DatasetError,
    Metadata,
    as_tf_data,
    check_dataset,
    default_data_dir,
    load,
    names,
)
from tfotflow.datasets.files import from_array, from_file, is_data_file

__all__ = [
    "REGISTRY",
    "Dataset",
    "DatasetError",
    "Metadata",
    "as_tf_data",
    "check_dataset",
    "default_data_dir",
    "from_array",
    "from_file",
    "is_data_file",
    "load",
    "names",
]
