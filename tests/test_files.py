"""A user's own files as data sets: every format gives the same rows, the split is seeded and
recorded, and every bad input is named by file, line and column."""

import numpy as np
import pandas as pd
import pytest

from tfotflow import datasets
from tfotflow.datasets import DatasetError


@pytest.fixture
def table(rng):
    """A 200-row, 3-column table with a header, and the same numbers as an array."""
    values = rng.normal(size=(200, 3)) * [1.0, 10.0, 100.0]
    return pd.DataFrame(values, columns=["a", "b", "c"]), values


def write_all(folder, frame, values):
    """The table as .csv (header), .tsv, .txt (no header), .npy, .npz and .parquet."""
    paths = {
        "csv": folder / "t.csv",
        "tsv": folder / "t.tsv",
        "txt": folder / "t.txt",
        "npy": folder / "t.npy",
        "npz": folder / "t.npz",
        "parquet": folder / "t.parquet",
    }
    frame.to_csv(paths["csv"], index=False, float_format="%.17g")
    frame.to_csv(paths["tsv"], index=False, sep="\t", float_format="%.17g")
    np.savetxt(paths["txt"], values, fmt="%.17g")
    np.save(paths["npy"], values)
    np.savez(paths["npz"], points=values)
    frame.to_parquet(paths["parquet"])
    return paths


def test_every_format_gives_the_same_rows_and_split(tmp_path, table):
    frame, values = table
    loaded = {
        kind: datasets.from_file(path, seed=3)
        for kind, path in write_all(tmp_path, frame, values).items()
    }
    reference = loaded["npy"]
    assert reference.train.shape == (160, 3) and reference.val.shape == (20, 3)
    for kind, data in loaded.items():
        for split in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(data, split), getattr(reference, split), kind)
    assert loaded["csv"].metadata.source["columns"] == ["a", "b", "c"]
    assert loaded["txt"].metadata.source["columns"] == ["0", "1", "2"]
    other = datasets.from_file(tmp_path / "t.npy", seed=4)
    assert not np.array_equal(other.train, reference.train)  # the seed moves the split


def test_columns_by_name_or_index_and_conditions(tmp_path, table):
    frame, values = table
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = datasets.from_file(tmp_path / "t.csv", columns=["c", "0"], condition_columns=["b"])
    assert data.metadata.dim == 2 and data.metadata.condition_dim == 1
    assert data.metadata.source["columns"] == ["c", "a"]
    rows = np.concatenate([data.train, data.val, data.test])
    conditions = np.concatenate([data.conditions[s] for s in ("train", "val", "test")])
    order = np.argsort(rows[:, 1])
    np.testing.assert_allclose(rows[order], values[np.argsort(values[:, 0])][:, [2, 0]])
    np.testing.assert_allclose(conditions[order, 0], values[np.argsort(values[:, 0]), 1])


def test_the_record_reproduces_the_data_and_refuses_a_changed_file(tmp_path, table):
    frame, _ = table
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    source = datasets.from_file(path, seed=1, split=(0.5, 0.25, 0.25)).metadata.source
    again = datasets.from_file(
        path,
        columns=source["columns"],
        split=source["split"],
        seed=source["seed"],
        sha256_expected=source["sha256"],
    )
    assert len(again.train) == 100 and source["split"] == [0.5, 0.25, 0.25]
    frame.iloc[:10].to_csv(path, index=False)
    with pytest.raises(DatasetError, match=r"t.csv changed since the run was trained"):
        datasets.from_file(path, sha256_expected=source["sha256"])


@pytest.mark.parametrize(
    "content, options, message",
    [
        ("", {}, "t.csv is empty"),
        ("a,b\n", {}, "t.csv holds no rows"),
        ("a,b\n1,2\n3,4\n", {}, r"2 rows are too few for the split"),
        ("a,b\n1,2\n3,x\n4,5\n", {}, r"t.csv, line 3, column 'b': 'x' is not a number"),
        ("a,b\n1,2\n3,nan\n4,5\n", {}, r"line 3, column 'b': a missing, NaN or Inf value"),
        ("a,b\n1,2\n3,\n4,5\n", {}, r"line 3, column 'b': a missing.*--drop-missing"),
        ("a,b\n1,2\n3,inf\n4,5\n", {}, r"line 3, column 'b'"),
        ("a,b\n1,7\n2,7\n3,7\n4,7\n5,7\n", {}, r"column 'b' is constant \(7 in every row\)"),
        ("a,b\n1,2\n", {"columns": ["z"]}, r"t.csv has no column 'z' \(in columns\)"),
        ("a,b\n1,2\n", {"condition_columns": ["5"]}, r"no column '5'"),
    ],
)
def test_bad_files_are_named(tmp_path, content, options, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        datasets.from_file(path, **options)


def test_missing_rows_are_dropped_and_counted_when_asked(tmp_path):
    path = tmp_path / "t.csv"
    rows = [f"{i},{i * i % 7}" for i in range(20)]
    rows[4], rows[9] = "4,", "9,nan"
    path.write_text("a,b\n" + "\n".join(rows) + "\n")
    data = datasets.from_file(path, drop_missing=True)
    assert data.metadata.source["dropped"] == 2 and data.metadata.source["rows"] == 18


def test_npz_needs_a_key_when_it_holds_several(tmp_path, rng):
    np.savez(tmp_path / "t.npz", x=rng.normal(size=(50, 2)), y=rng.normal(size=(50, 2)))
    with pytest.raises(DatasetError, match="holds the arrays x, y: choose one with `key`"):
        datasets.from_file(tmp_path / "t.npz")
    assert datasets.from_file(tmp_path / "t.npz", key="y").metadata.dim == 2
    with pytest.raises(DatasetError, match="holds no array 'z'"):
        datasets.from_file(tmp_path / "t.npz", key="z")


def test_from_array_checks_and_splits(rng):
    data = datasets.from_array(rng.normal(size=(100, 2)), rng.normal(size=(100, 1)), seed=2)
    assert data.conditional and data.conditions["train"].shape == (80, 1)
    with pytest.raises(DatasetError, match="NaN or Inf, at row 1, column 0"):
        datasets.from_array(np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, 1.5]]))
    with pytest.raises(DatasetError, match="`split` must be three fractions"):
        datasets.from_array(rng.normal(size=(100, 2)), split=(0.5, 0.5))


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, table, monkeypatch):
    frame, _ = table
    frame.to_parquet(tmp_path / "t.parquet")
    for name in ("pyarrow", "pyarrow.parquet", "fastparquet"):
        monkeypatch.setitem(__import__("sys").modules, name, None)
    with pytest.raises(DatasetError, match=r"needs pyarrow: pip install 'tfotflow\[tabular\]'"):
        datasets.from_file(tmp_path / "t.parquet")


@pytest.mark.slow  # three short training runs
def test_the_same_table_in_three_formats_trains_the_same_model(tmp_path, table):
    """.csv (with a header), .npy and .parquet: the same rows, split, normalization and
    weights for the same seed."""
    from tfotflow import runs, settings

    frame, values = table
    paths = write_all(tmp_path, frame, values)
    weights = {}
    for kind in ("csv", "npy", "parquet"):
        data = datasets.from_file(paths[kind], seed=5)
        config = settings.build_config(
            str(paths[kind]),
            recommended=settings.recommended_settings(data),
            overrides={"iterations": 2, "validate_every": 2, "warm_start": 4, "width": 4},
            seed=5,
            data_dir=None,
            options={},
            source=data.metadata.source,
        )
        model, _ = runs.train_run(tmp_path / f"run-{kind}", config, data=data)
        weights[kind] = [np.asarray(w) for w in model.weights]
    for kind in ("npy", "parquet"):
        for mine, reference in zip(weights[kind], weights["csv"]):
            np.testing.assert_array_equal(mine, reference)
