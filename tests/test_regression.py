"""The runs a user starts keep their settings and their result: ``tfotflow train`` (the quick
start's data set) and ``tfotflow train FILE`` on a fixed table, shortened, write the recorded
``config.json`` and reach the recorded test NLL (to 1e-6, same seed, same machine's kernels).

``tests/data/regression.json`` was written by :func:`record` before the trainer was made one
(its configs later gained the model's ``time_features``, 0, with that setting: a key, not a
change of what a run does); a change that alters what a run does must say so and record them
again (``python -m tests.test_regression``).
"""

import json
import pathlib

import numpy as np
import pytest
from click.testing import CliRunner

from tfotflow.cli import main

RECORD = pathlib.Path(__file__).parent / "data" / "regression.json"
# Shortened so the test is quick; every other setting is the run's own (the quick start's
# recommended settings, or the recipe's for the table).
SHORT = ["--iterations", "40", "--warm-start", "30", "--validate-every", "20", "--no-plot"]
RUNS = {
    "quick_start": ["8gaussians", "--num-train", "4096", *SHORT],
    "table": ["{table}", *SHORT],
}


def fixed_table(path):
    """A 3-column CSV of 2,000 rows of a correlated, skewed distribution, fixed by its seed."""
    rng = np.random.default_rng(20261206)
    z = rng.normal(size=(2000, 3))
    x = np.column_stack([z[:, 0], 0.5 * z[:, 0] + z[:, 1], np.exp(0.3 * z[:, 2]) + z[:, 0] ** 2])
    np.savetxt(path, x, delimiter=",", header="a,b,c", comments="", fmt="%.9f")
    return path


def run(name, tmp_path):
    """Runs ``RUNS[name]`` into ``tmp_path``; returns its config.json (paths left out) and
    its test NLL."""
    table = fixed_table(tmp_path / "table.csv")
    out = tmp_path / name
    arguments = [a.format(table=table) for a in RUNS[name]]
    result = CliRunner().invoke(main, ["train", *arguments, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    config.pop("data_dir", None)
    if "source" in config:  # the table's folder is the test's own
        config["source"].pop("path")
        config["dataset"] = pathlib.Path(config["dataset"]).name
    return config, json.loads(result.stdout[result.stdout.index("{") :])["test_nll"]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_run_keeps_its_config_and_nll(name, tmp_path):
    recorded = json.loads(RECORD.read_text())[name]
    config, test_nll = run(name, tmp_path)
    assert config == recorded["config"]
    assert test_nll == pytest.approx(recorded["test_nll"], abs=1e-6)


def record():
    """Writes ``tests/data/regression.json`` from the runs as the code makes them now."""
    import tempfile

    values = {}
    for name in sorted(RUNS):
        with tempfile.TemporaryDirectory() as folder:
            config, test_nll = run(name, pathlib.Path(folder))
        values[name] = {"config": config, "test_nll": test_nll}
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps(values, indent=2) + "\n")


if __name__ == "__main__":
    record()
