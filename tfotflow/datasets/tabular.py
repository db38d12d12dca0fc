"""The five tabular benchmarks of MAF (Papamakarios et al. 2017), preprocessed exactly as there.

Files are read from the MAF data layout under ``data_dir`` (``$TFOTFLOW_DATA``, by default
``~/.cache/tfotflow``), which ``tfotflow datasets download NAME`` fills from the public MAF
archive (Zenodo record 1161203, ``data.tar.gz``):

```none
power/data.npy          gas/ethylene_CO.pickle       hepmass/1000_train.csv, 1000_test.csv
miniboone/data.npy      BSDS300/BSDS300.hdf5
```

The preprocessing, per data set (``split`` below takes the last 10% as test, then the last
10% of the rest as validation, in file order):

- POWER: shuffle with ``RandomState(42)``; drop columns 3 and 1 of ``data.npy``; add uniform
  noise of width 0.001, 0.01, 1, 1, 1 and 0 to the six columns left; split; standardise with
  the train+validation mean and std.
- GAS: drop the ``Meth``, ``Eth`` and ``Time`` columns; repeatedly drop the first column that
  has a correlation > 0.98 with another; standardise with the whole table's mean and std
  (pandas, ddof = 1); split.
- HEPMASS: keep the signal rows (first column = 1) of ``1000_train.csv`` and ``1000_test.csv``
  and drop that label column (and the test file's extra last column); standardise both with the
  training mean and std (ddof = 1); drop every feature whose smallest value occurs more than 5
  times in the training data; the last 10% of training rows become validation.
- MINIBOONE: ``data.npy`` is already cleaned of outliers and over-discrete features; split;
  standardise with the train+validation mean and std.
- BSDS300: the ``train`` / ``validation`` / ``test`` arrays of the HDF5 file, as they are.

Resulting split sizes (train / validation / test): POWER 1,659,917 / 184,435 / 204,928;
GAS 852,174 / 94,685 / 105,206; HEPMASS 315,123 / 35,013 / 174,987; MINIBOONE 29,556 / 3,284 /
3,648; BSDS300 1,000,000 / 50,000 / 250,000. Loading checks them (``verify=False`` skips that,
for small files in tests).

A ``miniboone/`` folder holding ``train.npy``, ``val.npy`` and ``test.npy`` (the splits already
preprocessed, as several public repositories distribute them) is read as it is.
"""

import collections
import pathlib
import tarfile
import zlib

import numpy as np

from tfotflow.datasets.core import Dataset, DatasetError, Metadata
from tfotflow.datasets.download import download, extract_tar

MAF_ARCHIVE_URL = "https://zenodo.org/record/1161203/files/data.tar.gz"
MAF_CITATION = (
    "Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density Estimation. "
    "NeurIPS 2017 (preprocessing and archive, Zenodo 1161203). Sources: UCI Machine Learning "
    "Repository (POWER, GAS, HEPMASS, MINIBOONE; CC BY 4.0) and the Berkeley Segmentation "
    "Dataset (BSDS300)."
)

FILES = {
    "power": ["power/data.npy"],
    "gas": ["gas/ethylene_CO.pickle"],
    "hepmass": ["hepmass/1000_train.csv", "hepmass/1000_test.csv"],
    "miniboone": ["miniboone/data.npy"],
    "bsds300": ["BSDS300/BSDS300.hdf5"],
}
SPLIT_SIZES = {
    "power": (1_659_917, 184_435, 204_928),
    "gas": (852_174, 94_685, 105_206),
    "hepmass": (315_123, 35_013, 174_987),
    "miniboone": (29_556, 3_284, 3_648),
    "bsds300": (1_000_000, 50_000, 250_000),
}
# The paper's settings (Onken et al. 2021, Table 5): width, α, steps (train / eval), batch.
HYPERPARAMETERS = {
    "power": dict(
        width=128,
        alpha=(1.0, 500.0, 5.0),
        num_steps=10,
        eval_num_steps=24,
        batch_size=10000,
        learning_rate=0.03,
    ),
    "gas": dict(
        width=350,
        alpha=(1.0, 1200.0, 40.0),
        num_steps=10,
        eval_num_steps=30,
        batch_size=2000,
        learning_rate=0.01,
    ),
    "hepmass": dict(
        width=256,
        alpha=(1.0, 500.0, 40.0),
        num_steps=12,
        eval_num_steps=24,
        batch_size=2000,
        learning_rate=0.02,
    ),
    "miniboone": dict(
        width=256,
        alpha=(1.0, 100.0, 15.0),
        num_steps=6,
        eval_num_steps=18,
        batch_size=2000,
        learning_rate=0.02,
    ),
    "bsds300": dict(
        width=512,
        alpha=(1.0, 2000.0, 800.0),
        num_steps=14,
        eval_num_steps=40,
        batch_size=300,
        learning_rate=0.001,
    ),
}
DESCRIPTIONS = {
    "power": "household electric power consumption (UCI), 6-d",
    "gas": "gas sensor array under dynamic gas mixtures (UCI), 8-d",
    "hepmass": "high-energy physics signal events, 1000 GeV (UCI), 21-d",
    "miniboone": "MiniBooNE particle identification signal events (UCI), 43-d",
    "bsds300": "8x8 natural image patches, 63-d (BSDS300)",
}
DIMENSIONS = {"power": 6, "gas": 8, "hepmass": 21, "miniboone": 43, "bsds300": 63}


def split_last(data):
    """The MAF split: the last 10% is test, then the last 10% of the rest is validation."""
    n_test = int(0.1 * data.shape[0])
    test, rest = data[-n_test:], data[:-n_test]
    n_val = int(0.1 * rest.shape[0])
    return rest[:-n_val], rest[-n_val:], test


def standardise(train, val, test):
    """Standardises the three splits with the mean and std (ddof 0) of train + validation."""
    both = np.vstack([train, val])
    mean, std = both.mean(axis=0), both.std(axis=0)
    return tuple((split - mean) / std for split in (train, val, test))


def power_splits(raw):
    """POWER from the raw ``data.npy`` [N, 8]; see the module docstring."""
    rng = np.random.RandomState(42)
    data = np.array(raw, dtype=np.float64)
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    noise = np.hstack(
        [0.001 * rng.rand(n, 1), 0.01 * rng.rand(n, 1), rng.rand(n, 3), np.zeros((n, 1))]
    )
    return standardise(*split_last(data + noise))


def gas_splits(frame):
    """GAS from the ``ethylene_CO.pickle`` pandas table; see the module docstring."""
    frame = frame.drop(columns=["Meth", "Eth", "Time"])

    def correlated_counts(table):
        return (table.corr() > 0.98).to_numpy().sum(axis=1)

    counts = correlated_counts(frame)
    while np.any(counts > 1):
        frame = frame.drop(columns=frame.columns[np.where(counts > 1)[0][0]])
        counts = correlated_counts(frame)
    frame = (frame - frame.mean()) / frame.std()
    return split_last(frame.to_numpy(dtype=np.float64))


def hepmass_splits(train_frame, test_frame):
    """HEPMASS from the ``1000_train.csv`` / ``1000_test.csv`` tables; see the docstring."""
    label = train_frame.columns[0]
    train = train_frame[train_frame[label] == 1].drop(columns=label)
    test_label = test_frame.columns[0]
    test = test_frame[test_frame[test_label] == 1].drop(columns=test_label)
    test = test.drop(columns=test.columns[-1])
    mean, std = train.mean(), train.std()
    train = ((train - mean) / std).to_numpy(dtype=np.float64)
    test = ((test - mean.to_numpy()) / std.to_numpy()).to_numpy(dtype=np.float64)
    keep = [i for i, feature in enumerate(train.T) if _smallest_value_count(feature) <= 5]
    train, test = train[:, keep], test[:, keep]
    n_val = int(0.1 * train.shape[0])
    return train[:-n_val], train[-n_val:], test


def _smallest_value_count(feature):
    """How often the smallest value of a feature occurs (MAF's over-discreteness test)."""
    counts = collections.Counter(feature)
    return counts[min(counts)]


def miniboone_splits(data):
    """MINIBOONE from the cleaned ``data.npy`` [36488, 43]; see the module docstring."""
    return standardise(*split_last(np.asarray(data, dtype=np.float64)))


def bsds300_splits(path):
    """BSDS300 from ``BSDS300.hdf5``: its train / validation / test arrays."""
    import h5py

    with h5py.File(path, "r") as handle:
        return tuple(
            np.asarray(handle[key], dtype=np.float64) for key in ("train", "validation", "test")
        )


def _reason(error):
    """An exception as one line: its type and its message with the line breaks folded."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _unreadable(path, error, name):
    return DatasetError(
        f"{path} cannot be read ({_reason(error)}): the file is truncated or "
        f"not the MAF one. Delete it and run `tfotflow datasets download {name}`."
    )


def _read_array(path, name):
    """A 2-D numeric array [rows, columns] from the ``.npy`` file ``path`` (no pickles)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:  # truncated, pickled or not .npy
        raise _unreadable(path, error, name) from error
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise DatasetError(
            f"{path} holds an array of shape {array.shape} and dtype {array.dtype}; expected a "
            f"2-D numeric array [rows, columns]. Delete it and run "
            f"`tfotflow datasets download {name}`."
        )
    return array


def _read_pandas(kind, path, name):
    import pandas

    try:
        if kind == "pickle":
            return pandas.read_pickle(path)
        return pandas.read_csv(path, index_col=False)
    except Exception as error:  # pandas raises many kinds for a damaged file
        raise _unreadable(path, error, name) from error


def _missing_message(name, data_dir, missing):
    return (
        f"dataset {name!r} needs {', '.join(str(data_dir / f) for f in missing)}, which "
        f"{'is' if len(missing) == 1 else 'are'} missing. Get the MAF archive with "
        f"`tfotflow datasets download {name}` (about 1 GB from {MAF_ARCHIVE_URL}), or unpack "
        f"its data/ folder into {data_dir} yourself (set TFOTFLOW_DATA or pass data_dir=)."
    )


PRESPLIT_FILES = [f"miniboone/{split}.npy" for split in ("train", "val", "test")]


def files_present(name, data_dir):
    """Whether any of ``name``'s files (or MINIBOONE's pre-split ones) is in ``data_dir``."""
    data_dir = pathlib.Path(data_dir)
    files = FILES[name] + (PRESPLIT_FILES if name == "miniboone" else [])
    return any((data_dir / file).exists() for file in files)


def _read_splits(name, data_dir, train_split):
    data_dir = pathlib.Path(data_dir)
    if name == "miniboone":
        folder = data_dir / "miniboone"
        presplit = {split: folder / f"{split}.npy" for split in ("train", "val", "test")}
        have = {split: path.exists() for split, path in presplit.items()}
        if have["val"] and have["test"] and not (folder / "data.npy").exists():
            if not have["train"] and train_split != "val":
                raise DatasetError(
                    f"{presplit['train']} is missing beside val.npy and test.npy; pass "
                    "train_split='val' to train on the validation split, or provide train.npy."
                )
            val, test = (_read_array(presplit[split], name) for split in ("val", "test"))
            train = val if train_split == "val" else _read_array(presplit["train"], name)
            return (train, val, test), False
    paths = [data_dir / file for file in FILES[name]]
    missing = [file for file, path in zip(FILES[name], paths) if not path.exists()]
    if missing:
        raise DatasetError(_missing_message(name, data_dir, missing))
    if name == "power":
        splits = power_splits(_read_array(paths[0], name))
    elif name == "gas":
        splits = gas_splits(_read_pandas("pickle", paths[0], name))
    elif name == "hepmass":
        splits = hepmass_splits(*(_read_pandas("csv", path, name) for path in paths))
    elif name == "miniboone":
        splits = miniboone_splits(_read_array(paths[0], name))
    else:
        try:
            splits = bsds300_splits(paths[0])
        except (OSError, KeyError) as error:  # h5py's errors for a damaged or foreign file
            raise _unreadable(paths[0], error, name) from error
    if train_split == "val":
        splits = (splits[1], splits[1], splits[2])
    return splits, True


def load_tabular(name, *, seed=0, data_dir, verify=True, train_split="train", dtype="float64"):
    """Loads one of the five MAF data sets.

    Args:
        name: "power", "gas", "hepmass", "miniboone" or "bsds300".
        seed: unused (the MAF preprocessing fixes its own seed); kept for the common signature.
        data_dir: the folder holding the MAF layout.
        verify: check the split sizes against the documented ones. Defaults to True.
        train_split: "train", or "val" to train on the validation split (when only the
            validation and test splits are at hand). Defaults to "train".
        dtype: "float64" or "float32". Defaults to "float64".

    Raises:
        DatasetError: for missing files (saying how to get them) or wrong split sizes.
    """
    del seed
    if train_split not in ("train", "val"):
        raise DatasetError(f"`train_split` must be 'train' or 'val'. Received: {train_split!r}")
    (train, val, test), from_raw = _read_splits(name, data_dir, train_split)
    sizes = (len(train), len(val), len(test))
    expected = SPLIT_SIZES[name]
    if verify and from_raw and train_split == "train" and sizes != expected:
        raise DatasetError(
            f"dataset {name!r} in {data_dir} gives splits of {sizes} rows, expected {expected}: "
            f"the files are incomplete or corrupted. Download them again with "
            f"`tfotflow datasets download {name}`."
        )
    if verify and from_raw and train.shape[1] != DIMENSIONS[name]:
        raise DatasetError(
            f"dataset {name!r} in {data_dir} has {train.shape[1]} columns after preprocessing, "
            f"expected {DIMENSIONS[name]}: the files are not the MAF ones."
        )
    metadata = tabular_metadata(name, dim=train.shape[1])
    cast = [np.ascontiguousarray(split, dtype=dtype) for split in (train, val, test)]
    return Dataset(*cast, metadata=metadata)


def tabular_metadata(name, *, dim=None):
    """The :class:`Metadata` of MAF set ``name`` (no data needed); ``dim`` defaults to the
    dimension after the MAF preprocessing."""
    return Metadata(
        name=name,
        dim=DIMENSIONS[name] if dim is None else dim,
        description=DESCRIPTIONS[name],
        citation=MAF_CITATION,
        hyperparameters=dict(HYPERPARAMETERS[name]),
    )


def fetch(name, data_dir, *, progress=None, url=MAF_ARCHIVE_URL, opener=None):
    """Downloads the MAF archive, unpacks it into ``data_dir`` and checks the data set ``name``.

    The archive download resumes where a previous attempt stopped and is renamed into place
    only when complete; an archive already present that cannot be unpacked (truncated or
    corrupt) is deleted and downloaded once more; unpacking replaces the archive's files one
    by one and keeps everything else; the archive is deleted once ``name`` loads with the
    documented split sizes.

    Args:
        name: one of the five MAF data sets.
        data_dir: where the MAF layout goes.
        progress: ``callable(done_bytes, total_bytes)`` for a progress bar.
        url: the archive's address. Defaults to the MAF Zenodo record.
        opener: ``callable(request) -> response``. Defaults to ``urllib.request.urlopen``.

    Returns:
        The loaded, verified :class:`Dataset`.
    """
    if name not in FILES:
        raise DatasetError(f"`name` must be one of {sorted(FILES)}. Received: {name!r}")
    data_dir = pathlib.Path(data_dir)
    archive = data_dir / "maf-data.tar.gz"
    fresh = not archive.exists()
    if fresh:
        download(url, archive, progress=progress, opener=opener)
    try:
        extract_tar(archive, data_dir, members_under="data")
    except (tarfile.TarError, EOFError, zlib.error) as error:
        archive.unlink()
        if fresh:
            raise DatasetError(
                f"the archive downloaded from {url} cannot be unpacked "
                f"({_reason(error)}); it was deleted, so the next attempt downloads it again."
            ) from error
        download(url, archive, progress=progress, opener=opener)  # the old copy was damaged
        extract_tar(archive, data_dir, members_under="data")
    dataset = load_tabular(name, data_dir=data_dir)
    archive.unlink()
    return dataset
