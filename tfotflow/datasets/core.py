"""The dataset contract, its checks, and the registry of dataset plugins.

A dataset plugin is a callable declared in the entry-point group ``tfotflow.datasets``:

```none
loader(*, seed: int, data_dir: pathlib.Path, **options) -> Dataset
```

It returns train / validation / test splits (numpy, float32 or float64, shape [n, d]) and
:class:`Metadata`. :func:`load` checks every split and names the plugin in any error.

A conditional dataset (pairs of points x and conditions y, for p(x | y)) says so with
``Metadata.condition_dim = k`` and gives ``Dataset.conditions = {"train": [n, k], "val": …,
"test": …}``, row i the condition of point i.
"""

import dataclasses
import inspect
import math
import numbers
import os
import pathlib

import numpy as np

from tfotflow.datasets.download import DownloadError
from tfotflow.registry import DATASETS as REGISTRY
from tfotflow.registry import PluginError

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset plugin returned data that breaks the contract, or its files are missing."""


@dataclasses.dataclass(frozen=True)
class Metadata:
    """What a dataset says about itself.

    Attributes:
        name: the registry name.
        dim: the dimension d of every point.
        description: one line on what the data is.
        citation: the licence and how to cite the source.
        hyperparameters: recommended settings (``width``, ``num_layers``, ``alpha``,
            ``num_steps``, ``eval_num_steps``, ``batch_size``, ``learning_rate``…: the keys of
            a run's config). Defaults to none.
        log_prob: the true log-density ``callable([n, d] array) -> [n] array``, when known;
            for a conditional dataset ``callable(x [n, d], y [n, k]) -> [n]``, log p(x | y).
        entropy: the true differential entropy in nats (the best achievable test NLL), when
            known; for a conditional dataset the conditional entropy H(X | Y) = E_y H(X | y).
        condition_dim: the width k of the conditions (0: points alone). Defaults to 0.
        source: for data read from a file or array (:func:`tfotflow.datasets.from_file`),
            what reproduces it: the file, its SHA-256, the columns, the split fractions and
            seed. Defaults to None (a registered data set).
        image_shape: for images, the shape (height, width, channels) of one point, whose d
            values are its pixels in row-major order, in [0, 1]. Defaults to None.
        classes: when the conditions are one-hot labels, the name of each class (k of them).
            Defaults to None.
    """

    name: str
    dim: int
    description: str
    citation: str
    hyperparameters: dict = dataclasses.field(default_factory=dict)
    log_prob: object = None
    entropy: float | None = None
    condition_dim: int = 0
    source: dict | None = None
    image_shape: tuple | None = None
    classes: tuple | None = None


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits, each [n, d], with their :class:`Metadata`, and for a
    conditional dataset each split's conditions, ``conditions[split]`` [n, k]."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    metadata: Metadata
    conditions: dict | None = None

    @property
    def dim(self):
        return self.metadata.dim

    @property
    def conditional(self):
        """Whether the points come with conditions (``metadata.condition_dim > 0``)."""
        return self.metadata.condition_dim > 0

    def split(self, name):
        """The points of split ``name``, or (points, conditions) for a conditional dataset."""
        points = getattr(self, name)
        return (points, self.conditions[name]) if self.conditional else points


def default_data_dir():
    """``$TFOTFLOW_DATA``, else ``$XDG_CACHE_HOME/tfotflow`` (``~/.cache/tfotflow``)."""
    if os.environ.get("TFOTFLOW_DATA"):
        return pathlib.Path(os.environ["TFOTFLOW_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(cache) / "tfotflow"


def names():
    """Sorted names of every installed dataset (read from package metadata, nothing imported).

    >>> {"8gaussians", "checkerboard", "miniboone"} <= set(names())
    True
    """
    return REGISTRY.names()


def load(name, *, seed=0, data_dir=None, **options):
    """Loads and checks the dataset ``name``.

    Args:
        name: a name from :func:`names`.
        seed: the seed of any sampling or shuffling the dataset does. Defaults to 0.
        data_dir: where file-based datasets live. Defaults to :func:`default_data_dir`.
        **options: passed to the dataset's loader (e.g. ``num_train`` for toy sets).

    Returns:
        A checked :class:`Dataset`.

    Raises:
        tfotflow.registry.PluginError: for an unknown or broken plugin, or any other
            exception its loader raises (naming the plugin and its package).
        DatasetError: for data that breaks the contract, or missing files (with how to get them).

    >>> data = load("8gaussians", num_train=100, num_val=10, num_test=10)
    >>> data.train.shape, data.metadata.dim
    ((100, 2), 2)
    """
    loader = REGISTRY.load(name)
    check_options(name, loader, options)
    data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    try:
        result = loader(seed=seed, data_dir=data_dir, **options)
    except (DatasetError, DownloadError):  # they name the files and how to get them
        raise
    except Exception as error:
        raise PluginError(
            f"dataset plugin {name!r} from {REGISTRY.describe(name)} failed: "
            f"{type(error).__name__}: {error}"
        ) from error
    return check_dataset(result, plugin=name)


def check_options(name, loader, options):
    """Checks a loader's ``options`` before it runs: each must be a keyword of its signature
    (unless it takes ``**kwargs``), and a row count (an option named ``num_…``) must be an
    integer ≥ 0 whose rows fit in half of this machine's memory at 8 bytes a value.

    Raises:
        TypeError: naming an unknown option and listing the loader's, or a count that is no
            integer.
        ValueError: naming a count below 0 or too large, with the bytes it would need.
    """
    parameters = inspect.signature(loader).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    keywords = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    known = [key for key, p in parameters.items() if p.kind in keywords]
    unknown = sorted(set(options) - set(known)) if not takes_any else []
    if unknown:
        takes = [key for key in known if key not in ("seed", "data_dir")]
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for data set {name!r}; it "
            f"takes: {', '.join(takes) or 'none'} (and seed, data_dir)"
        )
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for key, value in options.items():
        if not key.startswith("num_"):
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"`{key}` of {name!r} must be an integer. Received: {key}={value!r}")
        if value < 0:
            raise ValueError(f"`{key}` of {name!r} must be at least 0. Received: {key}={value}")
        needed = 8 * value  # at least one float64 value a row
        if needed > available / 2:
            raise ValueError(
                f"`{key}`={value} rows of {name!r} need at least {needed / 2**30:.3g} GiB "
                f"(8 bytes a value), more than half of this machine's "
                f"{available / 2**30:.3g} GiB"
            )


def check_dataset(result, *, plugin):
    """Checks a loader's result against the contract; returns it as a :class:`Dataset`.

    Raises:
        DatasetError: naming ``plugin``, the split and what is wrong.
    """
    if not isinstance(result, Dataset):
        raise DatasetError(
            f"dataset plugin {plugin!r} must return a tfotflow.datasets.Dataset. "
            f"Received: {type(result).__name__}"
        )
    metadata = result.metadata
    if not isinstance(metadata, Metadata):
        raise DatasetError(
            f"dataset plugin {plugin!r}: metadata must be a tfotflow.datasets.Metadata. "
            f"Received: {type(metadata).__name__}"
        )
    k = metadata.condition_dim
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise DatasetError(
            f"dataset plugin {plugin!r}: metadata.condition_dim must be an integer >= 0. "
            f"Received: {k!r}"
        )
    conditions = result.conditions
    if k == 0 and conditions is not None:
        raise DatasetError(
            f"dataset plugin {plugin!r} returned conditions but metadata.condition_dim is 0: "
            "set condition_dim to their width."
        )
    if k > 0 and (not isinstance(conditions, dict) or set(conditions) != set(SPLITS)):
        found = sorted(conditions) if isinstance(conditions, dict) else type(conditions).__name__
        raise DatasetError(
            f"dataset plugin {plugin!r} has condition_dim={k}: Dataset.conditions must map "
            f"each of {list(SPLITS)} to a [n, {k}] array. Received: {found}"
        )
    shape = metadata.image_shape
    if shape is not None and (
        not all(isinstance(n, int) and n > 0 for n in shape) or math.prod(shape) != metadata.dim
    ):
        raise DatasetError(
            f"dataset plugin {plugin!r}: metadata.image_shape must be positive integers whose "
            f"product is dim={metadata.dim}. Received: {shape!r}"
        )
    if metadata.classes is not None and len(metadata.classes) != k:
        raise DatasetError(
            f"dataset plugin {plugin!r}: metadata.classes must name condition_dim={k} classes. "
            f"Received: {len(metadata.classes)}"
        )
    for split in SPLITS:
        array = getattr(result, split)
        _check_array(array, f"dataset plugin {plugin!r}, split {split!r}", metadata.dim)
        if k:
            where = f"dataset plugin {plugin!r}, conditions of split {split!r}"
            _check_array(conditions[split], where, k, rows=len(array))
    return result


def _check_array(array, where, width, rows=None):
    """A float32/float64 array [n, width] of finite values (n = ``rows`` when given, > 0)."""
    if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
        kind = getattr(array, "dtype", type(array).__name__)
        raise DatasetError(f"{where}: expected a float32 or float64 numpy array. Received: {kind}")
    n = "n" if rows is None else rows
    if (
        array.ndim != 2
        or array.shape[1] != width
        or array.shape[0] == 0
        or (rows is not None and array.shape[0] != rows)
    ):
        raise DatasetError(
            f"{where}: expected shape [{n}, {width}] with n > 0. Received: shape {array.shape}"
        )
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise DatasetError(
            f"{where}: {int(bad.sum())} NaN or Inf value(s), the first in row {row}."
        )


def split_streams(seed, num_train, num_val, num_test):
    """(random stream, size) of the train, val and test splits of a generated data set:
    independent ``numpy.random.RandomState([seed, i])`` streams.

    Raises:
        DatasetError: naming the size, when one is not a positive integer.
    """
    sizes = {"num_train": num_train, "num_val": num_val, "num_test": num_test}
    for option, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DatasetError(f"`{option}` must be a positive integer. Received: {value!r}")
    return [(np.random.RandomState([seed, index]), n) for index, n in enumerate(sizes.values())]


def as_tf_data(array, *, batch_size, shuffle=True, seed=0, repeat=False, drop_remainder=False):
    """A shuffled, batched, prefetched ``tf.data.Dataset`` over the rows of ``array``.

    Args:
        array: [n, d] numpy array.
        batch_size: rows per batch.
        shuffle: reshuffle every epoch (a full-size buffer: an exact shuffle). Defaults to True.
        seed: the shuffle seed. Defaults to 0.
        repeat: repeat forever. Defaults to False.
        drop_remainder: drop a last, smaller batch. Defaults to False.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(array)
    if shuffle:
        dataset = dataset.shuffle(len(array), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
