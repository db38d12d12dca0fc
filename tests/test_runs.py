"""Run directories: corrupted or mismatched files are named, and a model is recovered from the
intact files beside a broken one."""

import json

import numpy as np
import pytest

from tfotflow import checkpoint, runs
from tfotflow.model import OTFlowModel


def make_run(run_dir, width=5):
    """A finished run of a small untrained model: config.json, best.npz, model.keras."""
    config = runs.build_config(
        "moons",
        metadata_hyperparameters={},
        overrides={"width": width, "num_steps": 2},
        seed=0,
        data_dir=None,
        options={},
    )
    config = {**config, "dim": 2, "model": {**config["model"], "condition_dim": 0}}
    run_dir.mkdir()
    runs.write_json(run_dir / "config.json", config)
    model = runs.new_model(config, 2)
    checkpoint.save(run_dir / "best.npz", model, state={"epoch": 1})
    runs.save_model(model, run_dir / "model.keras")
    return model


def test_a_corrupted_model_falls_back_to_the_checkpoint(tmp_path):
    model = make_run(tmp_path / "run")
    (tmp_path / "run" / "model.keras").write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="model.keras cannot be read"):
        loaded = runs.load_model(tmp_path / "run")
    x = np.zeros((3, 2), "float32")
    np.testing.assert_allclose(loaded.log_prob(x), model.log_prob(x), rtol=1e-6)


def test_nothing_readable_names_every_file(tmp_path):
    make_run(tmp_path / "run")
    (tmp_path / "run" / "model.keras").write_bytes(b"not a zip")
    (tmp_path / "run" / "best.npz").write_bytes(b"truncated")
    with pytest.warns(UserWarning), pytest.raises(runs.RunError) as caught:
        runs.load_model(tmp_path / "run")
    assert "model.keras" in str(caught.value) and "best.npz" in str(caught.value)


def test_a_model_that_disagrees_with_its_config_is_refused(tmp_path):
    make_run(tmp_path / "run")
    runs.save_model(OTFlowModel(2, width=9), tmp_path / "run" / "model.keras")
    with pytest.raises(runs.RunError, match=r"does not match .*config.json: width=9"):
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
    with pytest.raises(runs.RunError, match=message):
        if name == "config.json":
            runs.read_config(tmp_path / "run")
        else:
            runs.read_csv(tmp_path / "run" / name)


def test_config_records_the_data_dimension(tmp_path):
    make_run(tmp_path / "run")
    (tmp_path / "run" / "model.keras").unlink()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dim"] == 2
    assert runs.load_model(tmp_path / "run").dim == 2  # from the checkpoint and config.json


def test_a_data_sets_unknown_recommendations_warn_and_are_ignored():
    """A plugin recommending a setting under a name no run knows (``lr`` for
    ``learning_rate``) is told so instead of being silently ignored."""
    with pytest.warns(UserWarning, match=r"'mine' recommends unknown setting\(s\) lr, "):
        config = runs.build_config(
            "mine",
            metadata_hyperparameters={"lr": 0.5, "width": 9},
            overrides={},
            seed=0,
            data_dir=None,
            options={},
        )
    assert config["model"]["width"] == 9
    assert config["train"]["learning_rate"] == runs.DEFAULTS["learning_rate"]
