"""Scoring new rows of a table file with a trained run, in the data's own units, streamed.

```none
tfotflow score RUN FILE -o OUT      log p(x) (or log p(x | y)) of every row of FILE, in nats
```

FILE is read in chunks of rows (``.csv`` / ``.tsv`` / ``.txt`` by pandas, ``.parquet`` by
pyarrow's record batches, ``.npy`` memory-mapped; an ``.npz`` array is read whole), so memory
stays constant in the number of rows. The columns are the run's, found by name (by position
in headerless files and arrays); each chunk is checked as training data is (a cell that is
not a number or missing is named by file, line and column) and scored by
:meth:`tfotflow.OTFlowModel.iter_scores`. OUT is ``.npy``, ``.csv`` or ``.parquet``, written to
a temporary name and renamed at the end, so a failure never leaves a partial file under OUT.

Each file also gets an estimate of the solver's error on it: |log p with n RK4 steps − log p
with 2n| on a sample of its rows, mean and max (fourth-order RK4 makes the n-step error about
16/15 of it). It says how far a score can be trusted before anyone compares scores.
"""

import contextlib
import os
import pathlib
import tempfile

import numpy as np

from tfotflow.checkpoint import new_file_mode
from tfotflow.datasets.core import DatasetError
from tfotflow.datasets.files import (
    INSTALL_TABULAR,
    SEPARATORS,
    check_table_file,
    has_header,
    numeric_columns,
    read_table,
    read_text,
    resolve_columns,
)

OUTPUT_SUFFIXES = (".npy", ".csv", ".parquet")


def check_output(path, id_column=None):
    """``path`` as a ``pathlib.Path`` ending in .npy, .csv or .parquet (a .csv or .parquet
    for an ``id_column``).

    Raises:
        ValueError: naming ``output`` and what was received.
    """
    path = pathlib.Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"`output` must end in {', '.join(OUTPUT_SUFFIXES)}. Received: {str(path)!r}"
        )
    if id_column is not None and path.suffix.lower() == ".npy":
        raise ValueError(
            "`output` must be a .csv or .parquet file to carry the id column "
            f"{id_column!r}. Received: {str(path)!r}"
        )
    return path


def count_rows(path):
    """The table's rows: from the array's or Parquet file's metadata, or by counting lines
    (less a header) of a text file; for a progress bar."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return int(np.load(path, mmap_mode="r").shape[0])
    if suffix == ".parquet":
        return _parquet(path).ParquetFile(path).metadata.num_rows
    if suffix == ".npz":
        return None
    with open(path, "rb") as file:
        lines = sum(block.count(b"\n") for block in iter(lambda: file.read(1 << 20), b""))
    return max(0, lines - (1 if has_header(path, SEPARATORS[suffix]) else 0))


def _parquet(path):
    try:
        import pyarrow.parquet
    except ModuleNotFoundError as error:
        raise DatasetError(f"reading {path} needs pyarrow: {INSTALL_TABULAR}") from error
    return pyarrow.parquet


def read_chunks(path, *, columns, condition_columns=(), id_column=None, key=None, rows=50_000):
    """The rows of a table file, ``rows`` at a time, as ``(points, conditions, ids, start)``:
    float64 [m, d], [m, k] or None, the id column's values or None, and the first row's
    index.

    Args:
        path: a table file of the formats of :func:`tfotflow.datasets.read_table`.
        columns: the points' column names (as a run recorded them).
        condition_columns: the conditions' column names. Defaults to none.
        id_column: a column carried through, by name or index. Defaults to none.
        key: the array of an ``.npz`` holding several.
        rows: rows per chunk. Defaults to 50,000.

    Raises:
        DatasetError: naming the file, for a missing column (the run's columns are listed),
            a cell that is not a number, or a missing, NaN or Inf value (file, line, column).
    """
    path = check_table_file(path)
    suffix = path.suffix.lower()
    wanted = list(columns) + list(condition_columns)
    if suffix in (".npy", ".npz"):
        array = np.load(path, mmap_mode="r") if suffix == ".npy" else read_table(path, key=key)[0]
        chunks = _array_chunks(path, array, rows)
        first_line = None
    elif suffix == ".parquet":
        chunks = _parquet_chunks(path, rows)
        first_line = None
    else:
        chunks, first_line = _text_chunks(path, rows)
    start = 0
    for frame in chunks:
        names = resolve_columns(path, frame, wanted, "the run's columns")
        values = numeric_columns(
            path, frame, names, None if first_line is None else first_line + start
        )
        bad = ~np.isfinite(values)
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            where = f"line {first_line + start + row}" if first_line else f"row {start + row}"
            raise DatasetError(
                f"{path}, {where}, column {names[column]!r}: a missing, NaN or Inf value "
                "cannot be scored"
            )
        ids = None
        if id_column is not None:
            ids = frame[resolve_columns(path, frame, [id_column], "--id-column")[0]].to_numpy()
        d = len(columns)
        yield values[:, :d], (values[:, d:] if condition_columns else None), ids, start
        start += len(frame)


def _array_chunks(path, array, rows):
    import pandas

    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DatasetError(f"{path} holds an array of shape {array.shape}; expected 2-D")
    for begin in range(0, len(array), rows):
        frame = pandas.DataFrame(np.asarray(array[begin : begin + rows]))
        frame.columns = [str(column) for column in frame.columns]
        yield frame


def _parquet_chunks(path, rows):
    for batch in _parquet(path).ParquetFile(path).iter_batches(batch_size=rows):
        frame = batch.to_pandas()
        frame.columns = [str(column) for column in frame.columns]
        yield frame


def _text_chunks(path, rows):
    reader, first_line = read_text(path, rows=rows)

    def frames():
        with reader:
            for frame in reader:
                frame.columns = [str(column) for column in frame.columns]
                yield frame

    return frames(), first_line


def discretization_error(
    model, points, conditions=None, *, num_steps=None, sample=1000, seed=0, log_prob=None
):
    """|log p with n RK4 steps − log p with 2n| on up to ``sample`` rows of ``points``.

    ``log_prob``, the n-step log-densities of every row of ``points`` when the caller has
    already computed them, saves the n-step solve.

    Returns:
        ``{"rows": m, "num_steps": n, "mean": …, "max": …}`` in nats.
    """
    num_steps = num_steps or model.eval_num_steps
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(points), size=min(sample, len(points)), replace=False))
    y = None if conditions is None else conditions[chosen]
    if log_prob is None:
        coarse = model.score_samples(points[chosen], y, num_steps=num_steps)
    else:
        coarse = np.asarray(log_prob, np.float64)[chosen]
    fine = model.score_samples(points[chosen], y, num_steps=2 * num_steps)
    error = np.abs(coarse - fine)
    return {
        "rows": len(chosen),
        "num_steps": num_steps,
        "mean": float(error.mean()),
        "max": float(error.max()),
    }


class _Writer:
    """Writes the scores (and ids, and outlier flags) chunk by chunk to a temporary file
    beside ``path``; :meth:`commit` renames it to ``path``."""

    def __init__(self, path, id_column):
        self.path, self.id_column = pathlib.Path(path), id_column
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        os.close(handle)
        self.temporary = pathlib.Path(name)
        self.rows = 0
        self._file = self._parquet = None
        if self.path.suffix.lower() != ".parquet":
            self._file = open(self.temporary, "wb")  # noqa: SIM115  (closed by commit/abort)

    def write(self, scores, ids=None, outliers=None):
        import pandas

        suffix = self.path.suffix.lower()
        self.rows += len(scores)
        if suffix == ".npy":
            self._file.write(np.asarray(scores, "<f8").tobytes())
            return
        frame = pandas.DataFrame({"log_prob": scores})
        if ids is not None:
            frame.insert(0, self.id_column, ids)
        if outliers is not None:
            frame["outlier"] = outliers
        if suffix == ".csv":
            frame.to_csv(self._file, header=self.rows == len(scores), index=False)
            return
        import pyarrow

        table = pyarrow.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            self._parquet = _parquet(self.path).ParquetWriter(self.temporary, table.schema)
        self._parquet.write_table(table)

    def commit(self):
        """Closes the file and renames it to ``path`` (an .npy gets its header here)."""
        if self._parquet is not None:
            self._parquet.close()
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        if self.path.suffix.lower() == ".npy":
            raw = self.temporary
            handle, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            os.close(handle)
            final = np.lib.format.open_memmap(name, mode="w+", dtype="<f8", shape=(self.rows,))
            with open(raw, "rb") as file:
                for begin in range(0, self.rows, 1 << 17):
                    block = np.frombuffer(file.read(8 << 17), "<f8")
                    final[begin : begin + len(block)] = block
            final.flush()
            del final
            raw.unlink()
            self.temporary = pathlib.Path(name)
        os.chmod(self.temporary, new_file_mode())
        os.replace(self.temporary, self.path)

    def abort(self):
        """Closes and deletes the temporary file."""
        with contextlib.suppress(Exception):
            if self._parquet is not None:
                self._parquet.close()
            if self._file is not None:
                self._file.close()
        self.temporary.unlink(missing_ok=True)


def score_file(
    model,
    path,
    output,
    *,
    columns,
    condition_columns=(),
    id_column=None,
    key=None,
    num_steps=None,
    outlier_threshold=None,
    rows=50_000,
    progress=None,
):
    """Writes log p(x) (or log p(x | y)) of every row of the table ``path`` to ``output``.

    Args:
        model: a trained :class:`tfotflow.OTFlowModel` (densities in the data's units).
        path: the table to score.
        output: a ``.npy`` (the scores), ``.csv`` or ``.parquet`` file (columns: the id
            column if any, ``log_prob``, and ``outlier`` with a threshold).
        columns: the points' columns, as the run trained on them.
        condition_columns: the conditions' columns, for a conditional run.
        id_column: a column of ``path`` carried into ``output``. Defaults to none.
        key: the array of an ``.npz`` holding several.
        num_steps: RK4 steps. Defaults to the model's ``eval_num_steps``.
        outlier_threshold: rows whose log-density is below it are flagged ``outlier``.
        rows: rows per chunk. Defaults to 50,000.
        progress: ``callable(rows_done)`` after each chunk, or None.

    Returns:
        ``{"rows": n, "mean_log_prob": …, "outliers": count or None, "discretization_error":
        {…}}`` (see :func:`discretization_error`, on up to 1,000 rows of the first chunk).

    Raises:
        DatasetError: naming the file, row and column (nothing is written under ``output``).
    """
    output = check_output(output, id_column)
    writer = _Writer(output, id_column)
    total, count, flagged, error = 0.0, 0, 0, None
    try:
        for points, conditions, ids, _ in read_chunks(
            path,
            columns=columns,
            condition_columns=condition_columns,
            id_column=id_column,
            key=key,
            rows=rows,
        ):
            scores = model.score_samples(points, conditions, num_steps=num_steps)
            if error is None:  # on the first chunk
                error = discretization_error(
                    model, points, conditions, num_steps=num_steps, log_prob=scores
                )
            outliers = None if outlier_threshold is None else scores < outlier_threshold
            writer.write(scores, ids, outliers)
            total, count = total + float(scores.sum()), count + len(scores)
            flagged += 0 if outliers is None else int(outliers.sum())
            if progress is not None:
                progress(count)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return {
        "rows": count,
        "output": str(output),
        "mean_log_prob": total / count if count else None,
        "outliers": flagged if outlier_threshold is not None else None,
        "discretization_error": error,
    }
