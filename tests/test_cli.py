"""The ``tfotflow`` command line: every command's exit codes, output and files."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tfotflow import cli, rundir, runs

FAST = [
    "--iterations",
    "4",
    "--validate-every",
    "2",
    "--num-train",
    "400",
    "--batch-size",
    "100",
    "--width",
    "6",
    "--num-steps",
    "2",
    "--warm-start",
    "60",
    "--warm-start-batch-size",
    "64",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "moons"
    result = CliRunner().invoke(
        cli.main,
        [
            "train",
            "moons",
            *FAST,
            *("--trace", "hutchinson", "--warm-start-sinkhorn-iterations", "5"),
            *("--out", str(run_dir), "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    return run_dir, json.loads(result.stdout)


def assert_runs_without_tensorflow(code):
    """Runs ``code`` in a fresh interpreter and checks it never imported TensorFlow."""
    code += "\nimport sys\nprint('TF_IMPORTED' if 'tensorflow' in sys.modules else 'NO_TF')"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip().endswith("NO_TF")


def test_help_does_not_import_tensorflow():
    assert_runs_without_tensorflow(
        "from tfotflow.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "for name in ['train', 'datasets', 'plugins']:\n"
        "    try:\n        main([name, '--help'])\n    except SystemExit:\n        pass\n"
    )


def test_version_names_the_stack():
    result = CliRunner().invoke(cli.main, ["--version"])
    assert result.exit_code == 0
    for name in ["tfotflow", "TensorFlow", "Keras", "TensorFlow Probability"]:
        assert name in result.output


def test_train_writes_a_complete_run_directory(trained):
    run_dir, summary = trained
    for name in [
        "config.json",
        "metrics.csv",
        "last.npz",
        "best.npz",
        "model.keras",
        "density.png",
        "samples.png",
        "trajectories.png",
    ]:
        assert (run_dir / name).exists(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["width"] == 6 and config["train"]["iterations"] == 4
    assert config["model"]["alpha"] == [1.0, 30.0, 1.0]  # the toy preset, not overridden
    rows = rundir.read_csv(run_dir / "metrics.csv")
    assert [row["step"] for row in rows] == [2.0, 4.0]
    assert {"nll", "transport", "hjb", "val_nll", "learning_rate"} <= set(rows[0])
    # The solver's control: its last check and the steps training went on with.
    assert {"num_steps", "eval_num_steps", "solver_error"} <= set(rows[0])
    assert config["train"]["solver_tolerance"] == 0.01
    assert config["train"]["weight_clip"] is None  # the toy recipe's weights are not clipped
    assert runs.load_model(run_dir)[0].num_steps == rows[-1]["num_steps"]
    assert config["train"]["warm_start"] == 60 and config["train"]["schedule"] == "cosine"
    assert config["model"]["trace"] == "hutchinson"
    assert config["train"]["warm_start_sinkhorn_iterations"] == 5
    assert runs.load_model(run_dir)[0].trace == "hutchinson"
    warm = rundir.read_csv(run_dir / "warm_start.csv")
    assert [row["step"] for row in warm] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert all(np.isfinite(row["flow_matching"]) for row in warm)
    assert np.isfinite(summary["test_nll"]) and summary["num_parameters"] > 0


def test_evaluate_sample_plot_round_trip(trained, tmp_path, monkeypatch):
    from tfotflow import plotting

    run_dir, summary = trained
    titles = {}
    save = plotting._save

    def keep_title(figure, path):
        titles[pathlib.Path(path).name] = figure.get_suptitle()
        return save(figure, path)

    monkeypatch.setattr(plotting, "_save", keep_title)
    runner = CliRunner()
    result = runner.invoke(cli.main, ["evaluate", str(run_dir), "--json", "--num-steps", "4"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["num_steps"] == 4 and evaluation["round_trip_error"] < 1e-2
    assert set(evaluation) >= {"test_nll", "round_trip_error", "num_parameters", "seconds"}
    # The solver's error on 1,000 test rows: |log p with 4 RK4 steps − with 8|, recomputed.
    model, _ = runs.load_model(run_dir)
    test = runs.load_data(rundir.read_config(run_dir)).test.astype(model.precision)
    rows = np.sort(np.random.default_rng(0).choice(len(test), size=1000, replace=False))
    gap = np.abs(
        np.asarray(model.log_prob(test[rows], num_steps=4))
        - np.asarray(model.log_prob(test[rows], num_steps=8))
    )
    error = evaluation["discretization_error"]
    assert error["rows"] == 1000 and error["num_steps"] == 4
    np.testing.assert_allclose([error["mean"], error["max"]], [gap.mean(), gap.max()], rtol=1e-4)
    monkeypatch.setattr("tfotflow.settings.TRUST_NATS", 0.0)  # every error is now too large
    result = runner.invoke(cli.main, ["evaluate", str(run_dir), "--json", "--num-steps", "4"])
    assert result.exit_code == 0 and "not converged in the RK4 steps" in result.stderr
    assert json.loads(result.stdout)["discretization_error"] == error

    out = tmp_path / "samples.npy"
    result = runner.invoke(cli.main, ["sample", str(run_dir), "-n", "25", "-o", str(out)])
    assert result.exit_code == 0 and np.load(out).shape == (25, 2)

    (run_dir / "density.png").unlink()
    result = runner.invoke(cli.main, ["plot", str(run_dir)])
    assert result.exit_code == 0 and (run_dir / "density.png").exists()
    best = min(row["val_nll"] for row in rundir.read_csv(run_dir / "metrics.csv"))
    expected = f"moons, best validation NLL {best:.3f}"
    assert titles == dict.fromkeys(["density.png", "samples.png", "trajectories.png"], expected)


def test_plot_titles_name_the_data_set_and_its_scores(tmp_path):
    from tfotflow import datasets

    data = datasets.load("checkerboard", num_train=10, num_val=10, num_test=10)
    title = runs.plot_title(data, tmp_path, test_nll=3.5)
    assert title == f"checkerboard, test NLL 3.500, exact entropy {np.log(32):.3f}"
    conditional = datasets.load("banana", num_train=10, num_val=10, num_test=10)
    assert runs.plot_title(conditional, tmp_path).startswith("banana (conditional), exact")


@pytest.mark.slow
def test_resume_after_an_interrupted_run(tmp_path, monkeypatch):
    """Killed after the second epoch's metrics row but before its checkpoint: the resume
    truncates the log to the checkpoint and redoes the epoch, so no row is lost or doubled."""
    from tfotflow import checkpoint

    run_dir = tmp_path / "run"
    original = runs.MetricsWriter.on_epoch_end

    def interrupt_after_second(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1 and self.path.name == "metrics.csv":  # not the warm start's log
            raise KeyboardInterrupt

    monkeypatch.setattr(runs.MetricsWriter, "on_epoch_end", interrupt_after_second)
    runner = CliRunner()
    result = runner.invoke(cli.main, ["train", "moons", *FAST, "--out", str(run_dir), "--no-plot"])
    assert result.exit_code == 130
    assert f"tfotflow train --resume {run_dir}" in result.output
    assert not (run_dir / "model.keras").exists()
    assert checkpoint.read(run_dir / "last.npz")[1]["state"]["epoch"] == 1
    assert [row["step"] for row in rundir.read_csv(run_dir / "metrics.csv")] == [2.0, 4.0]
    (run_dir / ".last.npz.stale1").write_bytes(b"half")  # a write killed midway

    monkeypatch.setattr(runs.MetricsWriter, "on_epoch_end", original)
    result = runner.invoke(cli.main, ["train", "--resume", str(run_dir), "--no-plot", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["step"] for row in rundir.read_csv(run_dir / "metrics.csv")] == [2.0, 4.0]
    assert (run_dir / "model.keras").exists()
    assert not (run_dir / ".last.npz.stale1").exists()


def stop_before_training(monkeypatch):
    """Makes ``tfotflow train`` stop (as if interrupted) where training would begin; returns
    the keyword arguments the training was called with."""
    seen = {}

    def interrupted(run_dir, config, **kwargs):
        seen.update(run_dir=run_dir, config=config, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "train_run", interrupted)
    return seen


def test_config_file_then_flags(tmp_path, monkeypatch):
    seen = stop_before_training(monkeypatch)
    config = tmp_path / "run.toml"
    config.write_text('dataset = "circles"\nwidth = 5\nalpha = [1, 20, 2]\nlearning_rate = 0.02\n')
    arguments = ["train", "--config", str(config), "--width", "7", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(cli.main, arguments)
    assert result.exit_code == 130 and "interrupted" in result.output
    written = seen["config"]
    assert written["dataset"] == "circles" and written["model"]["width"] == 7  # flag wins
    assert written["model"]["alpha"] == [1.0, 20.0, 2.0]  # the file beats the recipe
    assert written["train"]["learning_rate"] == 0.02
    assert written["train"]["iterations"] == 2000  # the toy recipe where neither sets it
    config.write_text("widht = 5\n")
    result = CliRunner().invoke(cli.main, ["train", "--config", str(config)])
    assert result.exit_code == 2 and "unknown setting(s) widht" in result.output


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (["train", "--alpha", "1,2"], "--alpha"),
        (["train", "--width", "0"], "--width"),
        (["train", "nonexistent"], "unknown dataset 'nonexistent'"),
        (["train", "--dtype", "float16"], "--dtype"),
        (["sample", ".", "-o", "out.txt"], "expected a .npy or .png path"),
        (["train", "--alpha", "nan,1,1"], "three finite numbers"),
        (["train", "--alpha", "1,inf,1"], "three finite numbers"),
        (["train", "--learning-rate", "inf"], "--learning-rate"),
        (["train", "--learning-rate", "nan"], "--learning-rate"),
        (["train", "--lr", "-0.1"], "--learning-rate"),
        (["train", "--warm-start-learning-rate", "0"], "--warm-start-learning-rate"),
        (["train", "--warm-start-sinkhorn-iterations", "0"], "--warm-start-sinkhorn-iterations"),
        (["train", "--trace", "both"], "--trace"),
        (["train", "--warm-start-coupling", "exact"], "--warm-start-coupling"),
        (["train", "--iterations", "-1"], "--iterations"),
        (["train", "--solver-tolerance", "-0.01"], "--solver-tolerance"),
        (["train", "--solver-tolerance", "nan"], "solver_tolerance"),
        (["train", "--weight-clip", "-1"], "--weight-clip"),
        (["train", "--weight-clip", "nan"], "weight_clip"),
        (["train", "--spread", "0"], "--spread"),
        (["train", "--spread", "nan"], "spread"),
        (["train", "8gaussians", "--spread", "2"], "--standardize"),
        (["train", "--time-features", "-1"], "--time-features"),
        (["train", "--time-features", "two"], "--time-features"),
        (["train", "--seed", "-1"], "--seed"),
        (["train", "--seed", str(2**40)], "--seed"),
        (["train", "--train-split", "test"], "--train-split"),
        (["sample", ".", "-o", "x.npy", "--condition", "1,x"], "comma-separated numbers"),
        (["datasets", "info", "nope"], "unknown dataset 'nope'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(arguments, fragment):
    result = CliRunner().invoke(cli.main, arguments)
    assert result.exit_code == 2, result.output
    assert fragment in result.output


def test_nothing_to_train_exits_2_and_creates_nothing(tmp_path):
    arguments = ["train", "--iterations", "0", "--warm-start", "0", "--out", tmp_path / "run"]
    result = CliRunner().invoke(cli.main, [str(a) for a in arguments])
    assert result.exit_code == 2 and "`iterations`=0" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_runtime_failures_exit_1_with_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli.main, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1
    assert "RunError" in result.output and "not a run directory" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(
        cli.main, ["datasets", "info", "power", "--data-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 1, result.output  # absent: a script can tell
    info = json.loads(result.stdout)  # what it is needs no data files
    assert info["dim"] == 6 and info["data"] == "absent" and "splits" not in info
    assert "tfotflow datasets download power" in info["error"]
    result = runner.invoke(cli.main, ["--debug", "evaluate", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, rundir.RunError)


def test_datasets_and_plugins_listings():
    runner = CliRunner()
    listed = json.loads(runner.invoke(cli.main, ["datasets", "list", "--json"]).stdout)
    assert {"name": "8gaussians", "package": "tfotflow"}.items() <= listed[1].items() or any(
        row["name"] == "8gaussians" and row["package"] == "tfotflow" for row in listed
    )
    info = json.loads(
        runner.invoke(cli.main, ["datasets", "info", "checkerboard", "--json"]).stdout
    )
    assert info["dim"] == 2 and abs(info["entropy"] - np.log(32)) < 1e-12
    rows = json.loads(runner.invoke(cli.main, ["plugins", "--json"]).stdout)
    kinds = {(row["kind"], row["name"]): row["status"] for row in rows}
    assert kinds[("regularizer", "hjb")] == "loads" and kinds[("dataset", "moons")] == "loads"
    table = runner.invoke(cli.main, ["plugins"]).stdout
    assert "kinetic_jacobian" in table and "tfotflow" in table


def test_datasets_download_through_the_cli(tmp_path, monkeypatch, rng):
    import io
    import tarfile

    from tests.test_datasets import FakeServer

    buffer = io.BytesIO()
    np.save(buffer, rng.normal(size=(36_488, 43)))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("data/miniboone/data.npy")
        info.size = len(buffer.getvalue())
        tar.addfile(info, io.BytesIO(buffer.getvalue()))
    monkeypatch.setattr("urllib.request.urlopen", FakeServer(archive.getvalue()))
    result = CliRunner().invoke(
        cli.main, ["datasets", "download", "miniboone", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "29556 / 3284 / 3648" in result.stdout


def test_strategy_option_reaches_training(monkeypatch, tmp_path):
    seen = stop_before_training(monkeypatch)
    arguments = ["train", "moons", *FAST, "--out", str(tmp_path / "r"), "--strategy", "mirrored"]
    result = CliRunner().invoke(cli.main, arguments)
    assert result.exit_code == 130, result.output
    assert seen["strategy"] == "mirrored" and seen["data"] is not None
    assert "strategy" not in seen["config"]["model"] and "strategy" not in seen["config"]["train"]


@pytest.mark.slow
def test_conditional_dataset_trains_evaluates_and_samples_given_y(tmp_path):
    """A dataset with conditions trains p(x | y); sample needs --condition, of width k."""
    run_dir = tmp_path / "banana"
    runner = CliRunner()
    result = runner.invoke(cli.main, ["train", "banana", *FAST, "--out", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert np.isfinite(summary["test_nll"]) and summary["true_entropy"] > 2.0
    for name in ["model.keras", "density.png", "samples.png", "trajectories.png"]:
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "config.json").read_text())["model"]["condition_dim"] == 1
    evaluated = runner.invoke(cli.main, ["evaluate", str(run_dir), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["test_nll"] == pytest.approx(summary["test_nll"])

    out = tmp_path / "s.npy"
    result = runner.invoke(cli.main, ["sample", str(run_dir), "-n", "7", "-o", str(out)])
    assert result.exit_code == 2 and "--condition" in result.output
    result = runner.invoke(
        cli.main, ["sample", str(run_dir), "-n", "7", "-o", str(out), "--condition", "0.5,1"]
    )
    assert result.exit_code == 2 and "condition_dim=1" in result.output
    result = runner.invoke(
        cli.main, ["sample", str(run_dir), "-n", "7", "-o", str(out), "--condition", "0.5"]
    )
    assert result.exit_code == 0, result.output
    assert np.load(out).shape == (7, 2)
    conditions = tmp_path / "y.npy"
    np.save(conditions, np.array([[-1.0], [0.0], [1.0]]))
    result = runner.invoke(
        cli.main,
        ["sample", str(run_dir), "-n", "4", "-o", str(out), "--condition", str(conditions)],
    )
    assert result.exit_code == 0, result.output
    assert np.load(out).shape == (4, 3, 2)
    result = runner.invoke(
        cli.main, ["sample", str(run_dir), "-n", "4", "-o", str(out), "--condition", "a,b"]
    )
    assert result.exit_code == 2 and "comma-separated numbers" in result.output


def test_usage_errors_needing_no_tensorflow_do_not_start_it():
    """An unknown dataset, a bad suffix or condition is refused before TensorFlow is imported."""
    assert_runs_without_tensorflow(
        "from click.testing import CliRunner\n"
        "from tfotflow.cli import main\n"
        "for arguments in (['train', 'gaussians'], ['sample', '.', '-o', 'x.txt'],\n"
        "                  ['sample', '.', '-o', 'x.npy', '--condition', 'a'],\n"
        "                  ['export', '.', '.']):\n"
        "    assert CliRunner().invoke(main, arguments).exit_code == 2, arguments\n"
    )


def test_an_existing_run_is_not_replaced_without_overwrite(tmp_path, monkeypatch):
    seen = stop_before_training(monkeypatch)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (run_dir / "notes.txt").write_text("mine")
    runner = CliRunner()
    result = runner.invoke(cli.main, ["train", "moons", *FAST, "--out", str(run_dir)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (run_dir / "config.json").read_text() == "{}" and not seen
    result = runner.invoke(
        cli.main, ["train", "moons", *FAST, "--out", str(run_dir), "--overwrite"]
    )
    assert result.exit_code == 130 and seen["config"]["dataset"] == "moons"
    assert not (run_dir / "config.json").exists()  # the old run's files are gone
    assert (run_dir / "notes.txt").read_text() == "mine"  # not a run file: kept


@pytest.mark.parametrize("command", ["evaluate", pytest.param("plugins", marks=pytest.mark.slow)])
def test_commands_print_no_tensorflow_start_up_noise(tmp_path, command):
    """A command that imports TensorFlow (to score a run, or through the regularizer
    plugins) holds no absl/CUDA start-up lines on stderr unless --debug."""
    arguments = ["evaluate", str(tmp_path)] if command == "evaluate" else ["plugins"]
    completed = subprocess.run(
        [sys.executable, "-m", "tfotflow.cli", *arguments],
        capture_output=True,
        text=True,
        env={key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"},
    )
    if command == "evaluate":
        assert completed.returncode == 1 and "not a run directory" in completed.stderr
    else:
        assert completed.returncode == 0 and "kinetic_jacobian" in completed.stdout
    for noise in ("cuInit", "absl::InitializeLog", "cuda"):
        assert noise not in completed.stderr, completed.stderr


def test_train_split_reaches_the_tabular_loader(tmp_path, rng):
    """MINIBOONE's published folder (val.npy, test.npy only) trains with --train-split val."""
    folder = tmp_path / "miniboone"
    folder.mkdir()
    for split in ("val", "test"):
        np.save(folder / f"{split}.npy", rng.normal(size=(120, 43)))
    arguments = ["train", "miniboone", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(cli.main, arguments + ["--iterations", "1"])
    assert result.exit_code == 1 and "train_split" in result.output
    result = CliRunner().invoke(
        cli.main,
        arguments
        + [
            "--train-split",
            "val",
            "--iterations",
            "2",
            "--validate-every",
            "1",
            "--width",
            "4",
            "--num-steps",
            "1",
            "--eval-num-steps",
            "1",
            "--batch-size",
            "60",
            "--warm-start",
            "0",
            "--no-plot",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["options"] == {"train_split": "val"}


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("width = 0", "`width` must be at least 1"),
        ('batch_size = "many"', "`batch_size` must be an integer"),
        ("iterations = -3", "`iterations` must be at least 0"),
        ("num_steps = 1.5", "`num_steps` must be an integer"),
        ('dtype = "float16"', "float32 or float64"),
        ("learning_rate = -0.1", "`learning_rate` must be finite and positive"),
        ("width = 100000000", "more than half of this machine"),
        ('precision = "float64"', "unknown setting(s) precision"),
        ('trace = "both"', "`trace` must be one of"),
        (
            "warm_start_sinkhorn_iterations = 0",
            "`warm_start_sinkhorn_iterations` must be at least 1",
        ),
    ],
)
def test_bad_config_values_exit_2_and_create_nothing(tmp_path, line, fragment):
    config = tmp_path / "bad.toml"
    config.write_text(line + "\n")
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        cli.main, ["train", "moons", "--config", str(config), "--out", str(run_dir)]
    )
    assert result.exit_code == 2, result.output
    assert fragment in result.output and (
        "bad.toml" in result.output or "--config" in result.output
    )
    assert not run_dir.exists()


def test_resume_refuses_settings_it_would_ignore(tmp_path):
    result = CliRunner().invoke(
        cli.main, ["train", "--resume", str(tmp_path), "--width", "9", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "it takes no --width, --out" in result.output
    assert "--iterations, to train longer" in result.output


def test_datasets_info_names_a_damaged_file(tmp_path):
    (tmp_path / "power").mkdir()
    (tmp_path / "power" / "data.npy").write_bytes(b"\x93NUMPY garbage")
    result = CliRunner().invoke(
        cli.main, ["datasets", "info", "power", "--data-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 1, result.output
    info = json.loads(result.stdout)
    assert info["data"] == "damaged" and str(tmp_path / "power" / "data.npy") in info["error"]
    result = CliRunner().invoke(cli.main, ["datasets", "info", "moons", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["data"] == "readable" and info["splits"]["test"] > 0
    # As a script sees it: exit 1, the file named on stderr, no TensorFlow start-up lines.
    completed = subprocess.run(
        [sys.executable, "-m", "tfotflow.cli", "datasets", "info", "power"]
        + ["--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert completed.returncode == 1
    assert "error:" in completed.stderr and "data.npy" in completed.stderr
    for noise in ("absl::InitializeLog", "oneDNN", "cuda"):
        assert noise not in completed.stderr, completed.stderr


def test_config_files_encoding_and_value_types_are_named(tmp_path):
    run_dir = tmp_path / "run"
    config = tmp_path / "latin.toml"
    config.write_bytes("width = 5 # größe\n".encode("latin-1"))
    arguments = ["train", "moons", "--out", str(run_dir), "--config", str(config)]
    result = CliRunner().invoke(cli.main, arguments)
    assert result.exit_code == 2, result.output
    assert "latin.toml is not UTF-8 text" in result.output
    config.write_text('alpha = "1,30,1"\n')
    result = CliRunner().invoke(cli.main, arguments)
    assert result.exit_code == 2, result.output
    assert "`alpha` must be three finite numbers" in result.output
    assert "alpha='1,30,1'" in result.output and "latin.toml" in result.output
    assert not run_dir.exists()


def raising_loader(**options):
    """A dataset plugin whose loader fails."""
    return 1 / 0


def test_a_plugin_loader_that_raises_is_named(monkeypatch):
    from importlib.metadata import EntryPoint

    from tfotflow.datasets import REGISTRY

    installed = REGISTRY._entry_points
    broken = EntryPoint("broken_set", "tests.test_cli:raising_loader", "tfotflow.datasets")
    monkeypatch.setattr(REGISTRY, "_entry_points", lambda: [*installed(), broken])
    REGISTRY.refresh()
    try:
        result = CliRunner().invoke(cli.main, ["train", "broken_set", "--iterations", "1"])
        assert result.exit_code == 1
        assert "dataset plugin 'broken_set' from" in result.output
        assert "tests.test_cli:raising_loader" in result.output
        assert "ZeroDivisionError: division by zero" in result.output
    finally:
        monkeypatch.undo()
        REGISTRY.refresh()


@pytest.mark.slow  # two training runs; the refusals of --resume are in the fast set
def test_resume_extends_a_finished_run_and_stretches_its_cosine_schedule(tmp_path):
    run_dir = tmp_path / "run"
    settings = ["--validate-every", "5", "--num-train", "400", "--batch-size", "50"]
    settings += ["--width", "4", "--num-steps", "1", "--eval-num-steps", "1", "--no-plot"]
    settings += ["--warm-start", "0", "--schedule", "cosine", "--learning-rate", "0.01"]
    runner = CliRunner()
    result = runner.invoke(
        cli.main, ["train", "moons", "--iterations", "10", "--out", str(run_dir), *settings]
    )
    assert result.exit_code == 0, result.output
    before = rundir.read_csv(run_dir / "metrics.csv")
    result = runner.invoke(cli.main, ["train", "--resume", str(run_dir), "--iterations", "10"])
    assert result.exit_code == 2 and "must be above the run's 10" in result.output
    result = runner.invoke(
        cli.main, ["train", "--resume", str(run_dir), "--iterations", "30", "--no-plot"]
    )
    assert result.exit_code == 0, result.output
    assert "cosine schedule is stretched" in result.output
    rows = rundir.read_csv(run_dir / "metrics.csv")
    assert [row["step"] for row in rows] == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert rows[:2] == before  # the first run's rows are kept as they were
    assert json.loads((run_dir / "config.json").read_text())["train"]["iterations"] == 30
    # Stretched: at step k the rate of a 30-step cosine, 0.01 · ½(1 + cos(πk/30)).
    for row in rows[2:]:
        expected = 0.01 * 0.5 * (1 + np.cos(np.pi * row["step"] / 30))
        assert row["learning_rate"] == pytest.approx(expected, rel=1e-5, abs=1e-9)
