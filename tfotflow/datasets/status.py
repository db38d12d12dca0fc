"""What a data set is, and whether its files are there and readable (``tfotflow datasets
info``)."""

import pathlib

from tfotflow.datasets import tabular
from tfotflow.datasets.core import DatasetError, default_data_dir, load


def describe(name, *, data_dir=None):
    """A data set's description and the state of its data.

    Returns:
        A dict: ``name``, ``dim``, ``condition_dim``, ``description``, ``citation``,
        ``hyperparameters``, ``entropy``; ``data``: "readable" (or, for a MAF set whose files
        cannot be read, "absent" or "damaged", with ``error`` naming the file and how to get
        it again); ``splits``: {"train": rows, "val": rows, "test": rows} when readable.

    Raises:
        tfotflow.registry.PluginError: naming the plugin and its package, when its loader
            fails (what a plugin is cannot be told without loading it).
        DatasetError: when a plugin's data breaks the contract.
    """
    data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    state = {}
    try:
        data = load(name, data_dir=data_dir)
    except DatasetError as error:
        if name not in tabular.FILES:
            raise
        # A MAF set: what it is needs no data; what is wrong with its files is said.
        metadata = tabular.tabular_metadata(name)
        present = tabular.files_present(name, data_dir)
        state = {"data": "damaged" if present else "absent", "error": str(error)}
    else:
        metadata = data.metadata
        state = {
            "data": "readable",
            "splits": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        }
    return {
        "name": metadata.name,
        "dim": metadata.dim,
        "condition_dim": metadata.condition_dim,
        "description": metadata.description,
        "citation": metadata.citation,
        **state,
        "hyperparameters": metadata.hyperparameters,
        "entropy": metadata.entropy,
    }
