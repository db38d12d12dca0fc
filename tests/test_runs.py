"""Run directories: corrupted or mismatched files are named, and a model is recovered from the
intact files beside a broken one."""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from tfotflow import checkpoint, cli, rundir, runs, settings
from tfotflow.model import OTFlowModel


def make_run(run_dir, width=5):
    """A finished run of a small untrained model: config.json, best.npz, last.npz and
    model.keras (the checkpoints and model.keras have different weights)."""
    config = settings.build_config(
        "moons",
        recommended={},
        overrides={"width": width, "num_steps": 2},
        seed=0,
        data_dir=None,
        options={"num_train": 100, "num_val": 100, "num_test": 100},
    )
    config = {**config, "dim": 2, "model": {**config["model"], "condition_dim": 0}}
    run_dir.mkdir()
    rundir.write_json(run_dir / "config.json", config)
    model = runs.new_model(config, 2)
    for name, shift in (("last.npz", 0.2), ("best.npz", 0.1), ("model.keras", 0.0)):
        model.potential.w.assign(model.potential.w + shift)
        if name == "model.keras":
            rundir.save_model(model, run_dir / name)
        else:
            checkpoint.save(run_dir / name, model, state={"epoch": 1})
    return model


def test_a_corrupted_model_falls_back_to_the_checkpoint(tmp_path):
    model = make_run(tmp_path / "run")
    (tmp_path / "run" / "model.keras").write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="model.keras: damaged: not a readable zip archive"):
        loaded, used = runs.load_model(tmp_path / "run")
    assert used == tmp_path / "run" / "best.npz"
    x = np.zeros((3, 2), "float32")
    np.testing.assert_allclose(loaded.log_prob(x), model.log_prob(x), rtol=1e-6)


def test_nothing_readable_names_every_file(tmp_path):
    make_run(tmp_path / "run")
    (tmp_path / "run" / "model.keras").write_bytes(b"not a zip")
    (tmp_path / "run" / "best.npz").write_bytes(b"truncated")
    (tmp_path / "run" / "last.npz").unlink()
    with pytest.raises(rundir.RunError) as caught:
        runs.load_model(tmp_path / "run")
    for name in ("model.keras", "best.npz", "last.npz"):
        assert name in str(caught.value)


def test_a_model_that_disagrees_with_its_config_is_refused(tmp_path):
    make_run(tmp_path / "run")
    rundir.save_model(OTFlowModel(2, width=9), tmp_path / "run" / "model.keras")
    with pytest.raises(rundir.RunError, match=r"does not match .*config.json: width=9"):
        runs.load_model(tmp_path / "run")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("config.json", "{not json", "config.json is corrupted"),
        ("config.json", "[1, 2]", "not a tfotflow run configuration"),
        ("metrics.csv", "step,nll\n1,abc\n", "metrics.csv is corrupted"),
    ],
)
def test_corrupted_run_files_are_named(tmp_path, name, content, message):
    make_run(tmp_path / "run")
    (tmp_path / "run" / name).write_text(content)
    with pytest.raises(rundir.RunError, match=message):
        if name == "config.json":
            rundir.read_config(tmp_path / "run")
        else:
            rundir.read_csv(tmp_path / "run" / name)


def test_config_records_the_data_dimension(tmp_path):
    make_run(tmp_path / "run")
    (tmp_path / "run" / "model.keras").unlink()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dim"] == 2
    with pytest.warns(UserWarning, match="model.keras: absent"):
        model, _ = runs.load_model(tmp_path / "run")
    assert model.dim == 2  # from the checkpoint and config.json


def test_a_data_sets_unknown_recommendations_warn_and_are_ignored():
    """A plugin recommending a setting under a name no run knows (``lr`` for
    ``learning_rate``) is told so instead of being silently ignored."""
    with pytest.warns(UserWarning, match=r"'mine' recommends unknown setting\(s\) lr, "):
        config = settings.build_config(
            "mine",
            recommended={"lr": 0.5, "width": 9},
            overrides={},
            seed=0,
            data_dir=None,
            options={},
        )
    assert config["model"]["width"] == 9
    assert config["train"]["learning_rate"] == settings.DEFAULTS["learning_rate"]


def damage(path, how):
    """Damages a run file: ``truncated`` (its first half), ``flipped`` (bytes inverted in
    the middle) or ``shape`` (one weight of another shape, the file otherwise intact)."""
    payload = path.read_bytes()
    if how == "truncated":
        path.write_bytes(payload[: len(payload) // 2])
    elif how == "flipped":
        middle = len(payload) // 2
        flipped = bytes(255 - byte for byte in payload[middle : middle + 16])
        path.write_bytes(payload[:middle] + flipped + payload[middle + 16 :])
    elif path.suffix == ".keras":  # the opening layer's bias b_0 [m] becomes [m + 2]
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        weights = io.BytesIO(members["model.weights.h5"])
        with h5py.File(weights, "r+") as file:
            bias = file["layers/potential/vars/4"]
            replacement = np.zeros(bias.shape[0] + 2, bias.dtype)
            del file["layers/potential/vars/4"]
            file["layers/potential/vars/4"] = replacement
        members["model.weights.h5"] = weights.getvalue()
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, content)
    else:  # a valid checkpoint, of a model of another width
        checkpoint.save(path, OTFlowModel(2, width=9), state={"epoch": 1})


def evaluate(run_dir):
    return CliRunner().invoke(cli.main, ["evaluate", str(run_dir), "--num-steps", "1", "--json"])


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("truncated", marks=pytest.mark.slow),
        pytest.param("flipped", marks=pytest.mark.slow),
        "shape",
    ],
)
def test_each_damaged_file_is_named_with_its_substitute(tmp_path, how):
    """model.keras damaged: best.npz is used; model.keras absent and best.npz damaged:
    last.npz; both checkpoints damaged too: nothing is left, exit 1 naming every file."""
    run_dir = tmp_path / "run"
    make_run(run_dir)
    expected = {}
    for name in ("model.keras", "best.npz", "last.npz"):
        model, _ = runs.load_model(run_dir, report=lambda message: None)
        x = np.zeros((1, 2), "float32")
        expected[name] = float(model.log_prob(x, num_steps=1)[0])
        (run_dir / name).rename(run_dir / f"kept-{name}")
    for name in ("model.keras", "best.npz", "last.npz"):
        (run_dir / f"kept-{name}").rename(run_dir / name)

    damage(run_dir / "model.keras", how)
    result = evaluate(run_dir)
    assert result.exit_code == 0, result.output
    assert f"{run_dir / 'model.keras'}: damaged" in result.stderr or (
        how == "shape" and f"{run_dir / 'model.keras'}: cannot be loaded" in result.stderr
    )
    assert f"using {run_dir / 'best.npz'} instead" in result.stderr
    assert json.loads(result.stdout)["weights"] == str(run_dir / "best.npz")
    used, _ = runs.load_model(run_dir, report=lambda message: None)
    x = np.zeros((1, 2), "float32")
    assert float(used.log_prob(x, num_steps=1)[0]) == pytest.approx(expected["best.npz"])

    damage(run_dir / "best.npz", how)
    result = evaluate(run_dir)
    assert result.exit_code == 0, result.output
    assert f"{run_dir / 'best.npz'}: checkpoint" in result.stderr
    assert f"{run_dir / 'model.keras'}: " in result.stderr
    assert result.stderr.count(f"using {run_dir / 'last.npz'} instead") == 2
    assert json.loads(result.stdout)["weights"] == str(run_dir / "last.npz")

    damage(run_dir / "last.npz", how)
    result = evaluate(run_dir)
    assert result.exit_code == 1
    assert "no model of" in result.output
    for name in ("model.keras", "best.npz", "last.npz"):
        assert str(run_dir / name) in result.output


def test_an_unfinished_run_says_which_checkpoint_it_scores(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir)
    (run_dir / "model.keras").unlink()
    result = evaluate(run_dir)
    assert result.exit_code == 0, result.output
    assert "model.keras: absent (training did not finish)" in result.stderr
    assert json.loads(result.stdout)["weights"] == str(run_dir / "best.npz")


def test_an_unfinished_run_takes_the_steps_its_training_had_doubled_to(tmp_path):
    # SolverErrorControl records the steps in each epoch's logs; a checkpoint keeps them.
    run_dir = tmp_path / "run"
    model = make_run(run_dir)  # 2 training steps, 2 in evaluation
    (run_dir / "model.keras").unlink()
    logs = {"val_nll": 1.0, "num_steps": 8, "eval_num_steps": 16, "solver_error": 0.02}
    checkpoint.save(run_dir / "best.npz", model, state={"epoch": 3, "logs": logs})
    loaded, used = runs.load_model(run_dir)
    assert used == run_dir / "best.npz"
    assert (loaded.num_steps, loaded.eval_num_steps) == (8, 16)


def test_a_data_set_recommending_no_steps_gets_the_recipes():
    """A plugin recommending only some settings (the README's example) gets the recipe's RK4
    steps, which the model's signature leaves to the recipe."""
    from tfotflow.datasets import Dataset, Metadata

    points = np.random.default_rng(0).normal(size=(30, 3))
    hyperparameters = {"width": 32, "alpha": (1.0, 100.0, 15.0), "batch_size": 256}
    data = Dataset(
        points[:20],
        points[20:25],
        points[25:],
        metadata=Metadata("mine", 3, "", "", hyperparameters=hyperparameters),
    )
    recommended = settings.recommended_settings(data)
    assert recommended["num_steps"] == 4 and recommended["eval_num_steps"] == 8
    config = settings.build_config(
        "mine",
        recommended=recommended,
        overrides={},
        seed=0,
        data_dir=None,
        options={},
    )
    settings.check_config(config, 3)
    assert config["model"]["alpha"] == [1.0, 100.0, 15.0] and config["model"]["width"] == 32


@pytest.mark.parametrize(
    "shape, dim, spread", [("modes", 2, 2.0), ("gaussian", 2, 1.0), ("modes", 3, 1.0)]
)
def test_the_recipe_spreads_multimodal_2d_points_to_2(shape, dim, spread):
    """With no recommended settings, 2-D points that a Gaussian does not describe (eight modes
    on a circle) are standardized to a deviation of 2; Gaussian ones, and any above d = 2, to
    1."""
    from tfotflow.datasets import Dataset, Metadata

    rng = np.random.default_rng(0)
    points = rng.normal(size=(2000, dim))
    if shape == "modes":
        angle = rng.integers(8, size=2000) * np.pi / 4
        points[:, :2] = 2 * np.column_stack([np.cos(angle), np.sin(angle)]) + 0.1 * points[:, :2]
    data = Dataset(
        points[:1600], points[1600:1800], points[1800:], metadata=Metadata("own", dim, "", "")
    )
    assert settings.recommended_settings(data)["spread"] == spread


def test_stale_temporaries_of_every_run_file_are_removed_and_nothing_else(tmp_path):
    stale = [".last.npz.x1y2", ".model.tmp.keras", ".autoencoder.tmp.keras"]
    kept = ["notes.txt", "model.keras", ".other.tmp.keras"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    removed = rundir.remove_stale_temporaries(tmp_path)
    assert sorted(path.name for path in removed) == sorted(stale)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)
