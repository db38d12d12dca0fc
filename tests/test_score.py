"""``tfotflow train FILE`` and ``tfotflow score``: a user's own table trained and scored in its
own units; every bad input exits 2 naming the file, line and column, and writes nothing."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tfotflow import cli, rundir, runs, scoring

TINY = ["--iterations", "4", "--validate-every", "2", "--warm-start", "0", "--width", "4"]
TINY += ["--num-steps", "2", "--eval-num-steps", "2", "--batch-size", "64", "--no-plot"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained on a 2-column CSV (with an id column left out), in its own units."""
    folder = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    values = rng.normal(size=(600, 2)) * [1e3, 2.0] + [1e4, -3.0]
    frame = pd.DataFrame(values, columns=["a", "b"])
    frame.insert(0, "id", [f"row{i}" for i in range(len(frame))])
    frame.to_csv(folder / "own.csv", index=False)
    run_dir = folder / "run"
    result = CliRunner().invoke(
        cli.main,
        ["train", str(folder / "own.csv"), "--columns", "a,b", "--out", str(run_dir), *TINY],
    )
    assert result.exit_code == 0, result.output
    return folder, run_dir, frame


def test_a_file_run_records_its_source_and_scores_in_data_units(trained):
    folder, run_dir, frame = trained
    config = json.loads((run_dir / "config.json").read_text())
    assert config["source"]["columns"] == ["a", "b"] and config["source"]["seed"] == 0
    assert config["model"]["normalization"] == "diagonal"
    assert config["train"]["spread"] == 1.0
    assert (run_dir / "val_log_prob.npy").exists()
    model, _ = runs.load_model(run_dir)
    data = runs.load_data(config)  # the same rows and split, from the record
    np.testing.assert_allclose(model.loc, data.train.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(model.scale, data.train.std(axis=0), rtol=1e-6)
    out = folder / "scores.csv"
    arguments = ["score", str(run_dir), str(folder / "own.csv"), "-o", str(out)]
    result = CliRunner().invoke(
        cli.main, [*arguments, "--id-column", "id", "--chunk-rows", "250", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 600 and summary["discretization_error"]["rows"] == 250
    written = pd.read_csv(out)
    assert list(written.columns) == ["id", "log_prob"] and written["id"][599] == "row599"
    whole = model.log_prob(frame[["a", "b"]].to_numpy("float32"))
    np.testing.assert_allclose(written["log_prob"], whole, rtol=1e-5)
    # In the data's units: near the exact entropy of N(μ, diag(1e6, 4)) after four steps,
    # where the standardized units would be log(1e3 · 2) = 7.6 nats off.
    entropy = 1 + np.log(2 * np.pi) + np.log(1e3) + np.log(2.0)
    assert abs(-written["log_prob"].mean() - entropy) < 2


def test_score_outliers_and_output_formats(trained):
    folder, run_dir, frame = trained
    result = CliRunner().invoke(
        cli.main,
        ["score", str(run_dir), str(folder / "own.csv"), "-o", str(folder / "s.npy"), "--json"],
    )
    assert result.exit_code == 0, result.output
    scores = np.load(folder / "s.npy")
    assert scores.shape == (600,) and scores.dtype == np.float64
    result = CliRunner().invoke(
        cli.main,
        ["score", str(run_dir), str(folder / "own.csv"), "-o", str(folder / "s.parquet")]
        + ["--outliers", "0.1", "--json"],
    )
    assert result.exit_code == 0, result.output
    written = pd.read_parquet(folder / "s.parquet")
    threshold = np.quantile(np.load(run_dir / "val_log_prob.npy"), 0.1)
    np.testing.assert_array_equal(written["outlier"], written["log_prob"] < threshold)
    assert json.loads(result.stdout)["outliers"] == int(written["outlier"].sum())


@pytest.mark.parametrize(
    "content, arguments, message",
    [
        ("a,b\n1,2\n3,4\n", [], "t.csv is empty"),
        ("a,b\n", [], "holds no rows"),
        ("a,b\n1,2\n3,4\n", [], "too few for the split"),
        ("a,b\n1,2\n3,x\n" + "4,5\n" * 20, [], "line 3, column 'b': 'x' is not a number"),
        ("a,b\n1,2\n3,\n" + "4,5\n5,6\n" * 10, [], "line 3, column 'b': a missing"),
        ("a,b\n" + "".join(f"{i},7\n" for i in range(30)), [], "column 'b' is constant"),
        ("a,b\n1,2\n" * 30, ["--columns", "a,zz"], "no column 'zz'"),
        ("a,b\n1,2\n" * 30, ["--split", "0.5,0.5"], "--split"),
    ],
)
def test_bad_files_exit_2_naming_what_and_write_nothing(tmp_path, content, arguments, message):
    path = tmp_path / "t.csv"
    path.write_text("" if message == "t.csv is empty" else content)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        cli.main, ["train", str(path), "--out", str(run_dir), *arguments, *TINY]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not run_dir.exists()


def test_dropped_rows_are_counted(tmp_path, monkeypatch):
    from tests.test_cli import stop_before_training

    seen = stop_before_training(monkeypatch)
    path = tmp_path / "t.csv"
    rows = [f"{i},{(i * 7) % 11}" for i in range(40)]
    rows[3] = "3,"
    path.write_text("a,b\n" + "\n".join(rows) + "\n")
    result = CliRunner().invoke(
        cli.main, ["train", str(path), "--drop-missing", "--out", str(tmp_path / "r"), *TINY]
    )
    assert result.exit_code == 130, result.output
    assert "39 rows (1 with missing values dropped)" in result.output
    assert seen["config"]["source"]["dropped"] == 1
    assert "settings chosen from the data's size" in result.output


def correlated_table(path, rng, *, rows=4000, collinear=False):
    """A 17-column CSV of ``rows`` rows of correlated Gaussian columns (the last the sum of the
    first two when ``collinear``). The recipe whitens 17 columns from 3,060 training rows
    (20 per covariance entry) up."""
    values = rng.normal(size=(rows, 17)) @ rng.normal(size=(17, 17))
    if collinear:
        values[:, -1] = values[:, 0] + values[:, 1]
    pd.DataFrame(values, columns=[f"c{i}" for i in range(17)]).to_csv(path, index=False)
    return values


@pytest.mark.parametrize(
    "rows, collinear, flags, expected",
    [
        (4000, False, [], "whiten"),
        (4000, False, ["--diagonal"], "diagonal"),
        (4000, True, [], "diagonal"),
        (400, False, [], "diagonal"),
    ],
)
def test_the_recipe_whitens_above_d_16_when_the_rows_and_covariance_allow(
    tmp_path, monkeypatch, rng, rows, collinear, flags, expected
):
    from tests.test_cli import stop_before_training

    seen = stop_before_training(monkeypatch)
    path = tmp_path / "t.csv"
    correlated_table(path, rng, rows=rows, collinear=collinear)
    result = CliRunner().invoke(
        cli.main, ["train", str(path), "--out", str(tmp_path / "r"), *flags, *TINY]
    )
    assert result.exit_code == 130, result.output
    assert seen["config"]["model"]["normalization"] == expected


def test_a_whitened_file_run_keeps_the_cholesky_factor_of_its_training_rows(tmp_path, rng):
    path = tmp_path / "t.csv"
    correlated_table(path, rng)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli.main, ["train", str(path), "--out", str(run_dir), *TINY])
    assert result.exit_code == 0, result.output
    model, _ = runs.load_model(run_dir)
    assert model.normalization == "whiten"
    train = runs.load_data(json.loads((run_dir / "config.json").read_text())).train
    covariance = np.cov(train.astype(np.float64), rowvar=False, bias=True)
    np.testing.assert_allclose(model.scale_tril, np.linalg.cholesky(covariance), atol=1e-4)


def test_file_options_are_refused_for_a_registered_set():
    result = CliRunner().invoke(cli.main, ["train", "moons", "--columns", "a"])
    assert result.exit_code == 2 and "--columns read a table file" in result.output
    result = CliRunner().invoke(cli.main, ["train", "missing.csv"])
    assert result.exit_code == 2 and "no such file: missing.csv" in result.output


def test_score_refuses_other_columns_and_bad_output(trained, tmp_path):
    folder, run_dir, _ = trained
    other = tmp_path / "other.csv"
    pd.DataFrame({"a": [1.0, 2.0], "c": [3.0, 4.0]}).to_csv(other, index=False)
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(cli.main, ["score", str(run_dir), str(other), "-o", str(out)])
    assert result.exit_code == 2 and "has no column 'b' (in the run's columns)" in result.output
    assert not out.exists() and not list(tmp_path.glob(".s.csv*"))
    bad = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["1", "x", "2"]})
    bad.to_csv(other, index=False)
    result = CliRunner().invoke(
        cli.main, ["score", str(run_dir), str(other), "-o", str(out), "--chunk-rows", "1"]
    )
    assert result.exit_code == 2 and "line 3, column 'b': 'x' is not a number" in result.output
    assert not out.exists() and not list(tmp_path.glob(".s.csv*"))
    result = CliRunner().invoke(
        cli.main, ["score", str(run_dir), str(other), "-o", str(tmp_path / "s.txt")]
    )
    assert result.exit_code == 2 and "`output` must end in" in result.output
    result = CliRunner().invoke(
        cli.main,
        ["score", str(run_dir), str(other), "-o", str(tmp_path / "s.npy"), "--id-column", "a"],
    )
    assert result.exit_code == 2 and "to carry the id column" in result.output


def test_resume_refuses_a_changed_file(trained, tmp_path):
    import shutil

    folder, run_dir, frame = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    changed = tmp_path / "own.csv"
    frame.iloc[:500].to_csv(changed, index=False)
    config["source"]["path"] = str(changed)
    rundir.write_json(copy / "config.json", config)
    result = CliRunner().invoke(cli.main, ["train", "--resume", str(copy), "--iterations", "8"])
    assert result.exit_code == 2 and "changed since the run was trained" in result.output


@pytest.mark.slow
def test_score_samples_streams_batches_like_one_call(trained):
    """The Python twin: an array, a generator and a tf.data pipeline give the same scores."""
    import tensorflow as tf

    folder, run_dir, frame = trained
    model, _ = runs.load_model(run_dir)
    x = frame[["a", "b"]].to_numpy("float32")
    whole = np.asarray(model.log_prob(x))
    np.testing.assert_allclose(model.score_samples(x, batch_size=128), whole, rtol=1e-6)
    generator = (x[i : i + 100] for i in range(0, 600, 100))
    np.testing.assert_allclose(model.score_samples(generator), whole, rtol=1e-6)
    pipeline = tf.data.Dataset.from_tensor_slices(x).batch(77)
    np.testing.assert_allclose(model.score_samples(pipeline), whole, rtol=1e-6)
    error = scoring.discretization_error(model, x, sample=50)
    assert error["rows"] == 50 and 0 <= error["mean"] <= error["max"]


PEAK = """
import resource, sys
import tfotflow, keras
from tfotflow import scoring
model = keras.models.load_model(sys.argv[1])
columns = [str(i) for i in range(model.dim)]
summary = scoring.score_file(model, sys.argv[2], sys.argv[3], columns=columns, rows=50_000)
print(summary["rows"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow  # writes and scores a million-row CSV
def test_score_memory_does_not_grow_with_the_rows(tmp_path):
    """Scoring 1M rows peaks at the memory of scoring 100k: the file is streamed in chunks.
    (The 1M-row table alone is 32 MB as float64, 45 MB as text; read whole, it grew the
    peak by 150 MB at 8 columns.)"""
    import subprocess
    import sys

    from tfotflow.model import OTFlowModel

    OTFlowModel(4, width=8, num_steps=2).save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    peaks = {}
    for rows in (100_000, 1_000_000):
        path = tmp_path / f"t{rows}.csv"
        np.savetxt(path, rng.normal(size=(rows, 4)), fmt="%.6g", delimiter=",")
        completed = subprocess.run(
            [
                sys.executable,
                "-c",
                PEAK,
                str(tmp_path / "m.keras"),
                str(path),
                str(tmp_path / "s.npy"),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        scored, peak_kib = map(int, completed.stdout.split()[-2:])
        assert scored == rows
        peaks[rows] = peak_kib / 1024
    assert peaks[1_000_000] - peaks[100_000] < 40, peaks  # MiB
