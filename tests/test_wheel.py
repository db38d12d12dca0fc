"""The built distributions: a wheel and an sdist that ``twine check`` accepts, and the wheel
installed into a fresh virtual environment outside the checkout trains, lists its plugins
and loads its saved model with ``import tfotflow`` alone."""

import os
import pathlib
import subprocess
import sys
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(arguments, cwd, timeout=900):
    completed = subprocess.run(
        [str(argument) for argument in arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""},
    )
    assert completed.returncode == 0, (completed.stdout[-3000:], completed.stderr[-3000:])
    return completed.stdout


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--outdir", dist, ROOT], cwd=tmp_path)
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    assert "PASSED" in run([sys.executable, "-m", "twine", "check", *wheels, *sdists], tmp_path)

    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", wheels[0]], cwd=tmp_path)
    where = run([python, "-c", "import tfotflow; print(tfotflow.__file__)"], cwd=tmp_path)
    assert pathlib.Path(where.strip()).is_relative_to(environment)

    tfotflow = environment / "bin" / "tfotflow"
    run(
        [tfotflow, "train", "moons", "--iterations", "5", "--validate-every", "5"]
        + ["--num-train", "200", "--batch-size", "50", "--width", "4", "--num-steps", "1"]
        + ["--warm-start", "0", "--no-plot", "--out", "run"],
        cwd=tmp_path,
    )
    listing = run([tfotflow, "plugins", "--json"], cwd=tmp_path)
    for name in ("8gaussians", "miniboone", "linear_gaussian", "transport", "hjb"):
        assert f'"name": "{name}"' in listing
    loaded = run(
        [
            python,
            "-c",
            "import tfotflow, keras\n"
            "model = keras.models.load_model('run/model.keras')\n"
            "print(type(model).__name__, model.dim)",
        ],
        cwd=tmp_path,
    )
    assert loaded.strip().splitlines()[-1] == "OTFlowModel 2"
