"""A user's own table as a data set: ``.npy``, ``.npz``, ``.csv`` / ``.tsv`` / ``.txt`` and
``.parquet`` files, or arrays in memory.

```none
from_file(path)  →  read_table  →  columns chosen, cells checked  →  seeded split  →  Dataset
```

Every file is read by pandas (and pyarrow, for Parquet: ``pip install 'tfotflow[tabular]'``)
or numpy; every bad input is a :class:`~tfotflow.datasets.DatasetError` naming the file, and
the row and column where there is one: an empty file, too few rows for the split, a cell that
is not a number, a NaN or Inf (or, with ``drop_missing``, the rows holding one are dropped and
counted), a constant column, a column that does not exist. The split is a permutation of the
rows fixed by ``seed``; the SHA-256 of the file is recorded in ``Metadata.source``, so a run
reproduces its split and refuses a file that changed.
"""

import hashlib
import math
import pathlib
import re

import numpy as np

from tfotflow.datasets.core import Dataset, DatasetError, Metadata

SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".txt", ".parquet")
SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": r"\s+"}
MISSING = {"", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None"}
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
INSTALL_TABULAR = "pip install 'tfotflow[tabular]'"


def is_data_file(name):
    """Whether ``name`` (a path or a data set name) ends in a table's suffix."""
    return pathlib.Path(str(name)).suffix.lower() in SUFFIXES


def sha256(path):
    """The SHA-256 of a file's bytes, hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def has_header(path, separator):
    """Whether the first non-empty line holds a field that is not a number (a header)."""
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            if line.strip():
                fields = re.split(separator, line.strip())
                break
        else:
            return False
    for field in fields:
        text = field.strip().strip('"')
        if text in MISSING:
            continue
        try:
            float(text)
        except ValueError:
            return True
    return False


def check_table_file(path):
    """``path`` as a ``pathlib.Path`` to an existing, non-empty file of a table's suffix.

    Raises:
        DatasetError: naming the file, when it is of another suffix, missing or empty.
    """
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DatasetError(f"{path}: expected one of {', '.join(SUFFIXES)}. Received: {suffix!r}")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path} is empty")
    return path


def read_text(path, *, rows=None):
    """A ``.csv`` / ``.tsv`` / ``.txt`` table read by pandas with every cell as a string (so a
    cell that is not a number can be named), its header row detected.

    Returns:
        ``(frame, first_line)``: the ``DataFrame`` — or, with ``rows``, an iterator of frames
        of that many rows — and the file line of the table's first row (2 after a header).
    """
    import pandas

    separator = SEPARATORS[pathlib.Path(path).suffix.lower()]
    header = has_header(path, separator)
    frames = pandas.read_csv(
        path,
        sep=separator,
        header=0 if header else None,
        dtype=str,
        keep_default_na=False,
        chunksize=rows,
        engine="python" if separator == r"\s+" else "c",
    )
    return frames, 2 if header else 1


def read_table(path, *, key=None):
    """A file's table as a pandas ``DataFrame`` of its cells, with its column names (a header
    row's names, else "0", "1", …) and, for text files, the cells as read (strings).

    Args:
        path: a ``.npy``, ``.npz``, ``.csv``, ``.tsv``, ``.txt`` or ``.parquet`` file.
        key: the array of an ``.npz`` holding more than one. Defaults to its only array.

    Returns:
        ``(frame, first_line)``: the table, and the file line of its first row (1 + a
        header), for messages (None for binary formats).

    Raises:
        DatasetError: naming the file: missing, of another format, unreadable, empty, an
            ``.npz`` key missing or needed, or a Parquet file without pyarrow installed.
    """
    path = check_table_file(path)
    suffix = path.suffix.lower()
    import pandas  # imported on first use: `tfotflow --help` stays fast

    first_line = None
    try:
        if suffix in (".npy", ".npz"):
            frame = pandas.DataFrame(_read_array(path, key))
        elif suffix == ".parquet":
            try:
                frame = pandas.read_parquet(path)
            except ImportError as error:
                raise DatasetError(f"reading {path} needs pyarrow: {INSTALL_TABULAR}") from error
        else:
            frame, first_line = read_text(path)
    except DatasetError:
        raise
    except Exception as error:  # pandas' and numpy's many parser errors
        raise DatasetError(f"{path} cannot be read: {type(error).__name__}: {error}") from error
    frame.columns = [str(column) for column in frame.columns]
    if len(frame) == 0:
        raise DatasetError(f"{path} holds no rows")
    return frame, first_line


def _read_array(path, key):
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        array = loaded
    else:
        with loaded:
            keys = list(loaded.files)
            if key is None and len(keys) != 1:
                raise DatasetError(
                    f"{path} holds the arrays {', '.join(keys)}: choose one with `key` "
                    "(--key on the command line)"
                )
            if key is not None and key not in keys:
                raise DatasetError(f"{path} holds no array {key!r}; it holds {', '.join(keys)}")
            array = loaded[key if key is not None else keys[0]]
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DatasetError(
            f"{path} holds an array of shape {array.shape}; expected [rows, columns]"
        )
    return array


def resolve_columns(path, frame, chosen, what):
    """Column names for ``chosen`` (names or 0-based indices, as given), or a DatasetError
    naming the one that does not exist."""
    names = list(frame.columns)
    resolved = []
    for column in chosen:
        text = str(column).strip()
        if text in names:
            resolved.append(text)
        elif text.lstrip("-").isdigit() and 0 <= int(text) < len(names):
            resolved.append(names[int(text)])
        else:
            raise DatasetError(
                f"{path} has no column {text!r} (in {what}); its columns are "
                f"{', '.join(names)} (or their indices 0..{len(names) - 1})"
            )
    return resolved


def numeric_columns(path, frame, names, first_line):
    """The columns ``names`` as a float64 array; a cell that is not a number is named."""
    import pandas

    columns = []
    for name in names:
        cells = frame[name]
        if cells.dtype == object or pandas.api.types.is_string_dtype(cells.dtype):
            text = cells.astype(str).str.strip()
            values = pandas.to_numeric(text.where(~text.isin(MISSING)), errors="coerce")
            bad = values.isna() & ~text.isin(MISSING)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                where = f"line {first_line + row}" if first_line else f"row {row}"
                raise DatasetError(
                    f"{path}, {where}, column {name!r}: {text.iloc[row]!r} is not a number"
                )
            columns.append(values.to_numpy(dtype=np.float64))
        elif pandas.api.types.is_numeric_dtype(cells.dtype) or cells.dtype == bool:
            columns.append(cells.to_numpy(dtype=np.float64, na_value=np.nan))
        else:
            raise DatasetError(f"{path}, column {name!r}: holds {cells.dtype} values, not numbers")
    return np.stack(columns, axis=1)


def _drop_missing(path, values, names, first_line, drop):
    """The rows of ``values`` with no NaN or Inf, and how many were dropped; without
    ``drop``, a DatasetError naming the first such cell."""
    bad = ~np.isfinite(values)
    rows = bad.any(axis=1)
    if not rows.any():
        return values, 0
    if not drop:
        row, column = (int(i) for i in np.argwhere(bad)[0])
        where = f"line {first_line + row}" if first_line else f"row {row}"
        raise DatasetError(
            f"{path}, {where}, column {names[column]!r}: a missing, NaN or Inf value "
            f"({int(rows.sum())} row(s) hold one); drop those rows with --drop-missing "
            "(drop_missing=True)"
        )
    return values[~rows], int(rows.sum())


def check_split(split):
    """``split`` as three fractions (train, val, test), each > 0, summing to 1."""
    try:
        fractions = tuple(float(f) for f in split)
    except (TypeError, ValueError):
        fractions = ()
    if (
        len(fractions) != 3
        or not all(math.isfinite(f) and f > 0 for f in fractions)
        or abs(sum(fractions) - 1) > 1e-6
    ):
        raise DatasetError(
            "`split` must be three fractions > 0 summing to 1 (train, val, test), e.g. "
            f"0.8,0.1,0.1. Received: split={split!r}"
        )
    return fractions


def split_rows(n, split, seed, where):
    """Row indices of the train, validation and test splits: a permutation of ``n`` rows
    fixed by ``seed``, cut at the ``split`` fractions (at least 2 training rows, 1 each)."""
    fractions = check_split(split)
    sizes = [round(fractions[1] * n), round(fractions[2] * n)]
    train = n - sum(sizes)
    if train < 2 or min(sizes) < 1:
        raise DatasetError(
            f"{where}: {n} rows are too few for the split {','.join(map(str, fractions))} "
            "(it needs at least 2 training rows and 1 each for validation and test)"
        )
    order = np.random.default_rng(seed).permutation(n)
    return order[:train], order[train : train + sizes[0]], order[train + sizes[0] :]


def _check_not_constant(where, values, names, what):
    spread = np.ptp(values, axis=0) if len(values) else np.zeros(values.shape[1])
    for column, width in enumerate(spread):
        if width == 0:
            raise DatasetError(
                f"{where}: {what} {names[column]!r} is constant ({values[0, column]:g} in "
                "every row), so the density is degenerate; leave it out (--columns)"
            )


def from_array(
    points,
    conditions=None,
    *,
    split=DEFAULT_SPLIT,
    seed=0,
    name="array",
    columns=None,
    condition_columns=None,
    source=None,
):
    """A :class:`~tfotflow.datasets.Dataset` from points [n, d] (and conditions [n, k], for
    p(x | y)), split at random by ``seed``.

    Args:
        points: [n, d] numbers.
        conditions: [n, k] numbers, row i the condition of point i, or None.
        split: (train, val, test) fractions. Defaults to (0.8, 0.1, 0.1).
        seed: the split's seed. Defaults to 0.
        name: the data set's name. Defaults to "array".
        columns: the points' column names, for messages. Defaults to "0", "1", …
        condition_columns: the conditions' column names. Defaults to "0", "1", …
        source: where the data came from (recorded in ``Metadata.source``). Defaults to
            ``{"split": …, "seed": …}``.

    Returns:
        A Dataset with no recommended settings (a run chooses them from d and n).

    Raises:
        DatasetError: for non-numeric, non-finite or constant columns, or too few rows.

    >>> import numpy as np
    >>> data = from_array(np.random.default_rng(0).normal(size=(100, 3)))
    >>> data.train.shape, data.val.shape, data.test.shape
    ((80, 3), (10, 3), (10, 3))
    """
    points = np.asarray(points)
    if points.ndim == 1:
        points = points[:, None]
    arrays = {"points": points}
    if conditions is not None:
        conditions = np.asarray(conditions)
        arrays["conditions"] = conditions[:, None] if conditions.ndim == 1 else conditions
    for what, array in arrays.items():
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise DatasetError(
                f"{name}: `{what}` must be numbers of shape [n, columns]. "
                f"Received: {array.dtype} of shape {array.shape}"
            )
        if len(array) != len(points):
            raise DatasetError(
                f"{name}: `conditions` must have one row per point ({len(points)}). "
                f"Received: {len(array)} rows"
            )
        if not np.all(np.isfinite(array)):
            row, column = (int(i) for i in np.argwhere(~np.isfinite(array))[0])
            raise DatasetError(
                f"{name}: `{what}` holds a NaN or Inf, at row {row}, column {column}"
            )
    points = points.astype(np.float64)
    columns = list(columns) if columns else [str(i) for i in range(points.shape[1])]
    _check_not_constant(name, points, columns, "column")
    if conditions is not None:
        conditions = arrays["conditions"].astype(np.float64)
        condition_columns = (
            list(condition_columns)
            if condition_columns
            else [str(i) for i in range(conditions.shape[1])]
        )
        _check_not_constant(name, conditions, condition_columns, "condition column")
    parts = split_rows(len(points), split, seed, name)
    source = {"split": list(check_split(split)), "seed": seed, **(source or {})}
    metadata = Metadata(
        name=name,
        dim=points.shape[1],
        description=f"{len(points)} rows of {', '.join(columns)}"
        + (f" given {', '.join(condition_columns)}" if conditions is not None else ""),
        citation="the user's own data",
        condition_dim=0 if conditions is None else conditions.shape[1],
        source={"columns": columns, "condition_columns": condition_columns or [], **source},
    )
    condition_splits = (
        None
        if conditions is None
        else dict(zip(("train", "val", "test"), (conditions[i] for i in parts)))
    )
    return Dataset(*(points[i] for i in parts), metadata=metadata, conditions=condition_splits)


def from_file(
    path,
    *,
    columns=None,
    condition_columns=None,
    key=None,
    split=DEFAULT_SPLIT,
    seed=0,
    drop_missing=False,
    sha256_expected=None,
):
    """A :class:`~tfotflow.datasets.Dataset` from a table file, split at random by ``seed``.

    Args:
        path: a ``.npy``, ``.npz``, ``.csv``, ``.tsv``, ``.txt`` (whitespace-separated) or
            ``.parquet`` file; a text file's header row is detected (a field that is not a
            number).
        columns: the points' columns, by name or 0-based index. Defaults to every column not
            in ``condition_columns``.
        condition_columns: the conditions' columns, making the data set conditional,
            p(x | y). Defaults to none.
        key: the array of an ``.npz`` holding several. Defaults to its only one.
        split: (train, val, test) fractions. Defaults to (0.8, 0.1, 0.1).
        seed: the split's seed. Defaults to 0.
        drop_missing: drop rows holding an empty cell, NaN or Inf (counted in
            ``Metadata.source["dropped"]``) instead of refusing them. Defaults to False.
        sha256_expected: the file's SHA-256 recorded by a run; a file that no longer has it
            is refused. Defaults to None (not checked).

    Returns:
        A Dataset whose ``metadata.source`` records the file, its SHA-256, the columns, the
        split, the seed and the rows dropped: what reproduces it.

    Raises:
        DatasetError: naming the file (and row and column) for every bad input.
    """
    path = pathlib.Path(path)
    frame, first_line = read_table(path, key=key)
    digest = sha256(path)
    if sha256_expected is not None and digest != sha256_expected:
        raise DatasetError(
            f"{path} changed since the run was trained (SHA-256 {sha256_expected[:12]}…, now "
            f"{digest[:12]}…): the split and the model belong to the old file"
        )
    condition_names = resolve_columns(path, frame, condition_columns or [], "condition_columns")
    if columns:
        names = resolve_columns(path, frame, columns, "columns")
    else:
        names = [name for name in frame.columns if name not in condition_names]
    overlap = sorted(set(names) & set(condition_names))
    if overlap:
        raise DatasetError(
            f"{path}: column(s) {', '.join(overlap)} are both points and conditions"
        )
    if not names:
        raise DatasetError(f"{path}: no columns are left for the points")
    values = numeric_columns(path, frame, names + condition_names, first_line)
    values, dropped = _drop_missing(
        path, values, names + condition_names, first_line, drop_missing
    )
    if len(values) == 0:
        raise DatasetError(
            f"{path}: no rows are left after dropping {dropped} with missing values"
        )
    d = len(names)
    source = {
        "path": str(path),
        "sha256": digest,
        "key": key,
        "drop_missing": drop_missing,
        "dropped": dropped,
        "rows": len(values),
    }
    return from_array(
        values[:, :d],
        values[:, d:] if condition_names else None,
        split=split,
        seed=seed,
        name=path.name,
        columns=names,
        condition_columns=condition_names,
        source=source,
    )
