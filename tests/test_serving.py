"""Serving export: the SavedModel loads and serves in a fresh process without tfotflow, TFP or
Keras, and gives the model's own log-densities and samples."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from tfotflow import OTFlowModel, cli

# Runs in a fresh interpreter in which tfotflow, TFP, Keras and BayesFlow are absent: a None in
# sys.modules makes `import` fail and `importlib.util.find_spec` report "not installed".
SERVE = """
import json, sys

for name in ("tfotflow", "tensorflow_probability", "keras", "tf_keras", "bayesflow"):
    sys.modules[name] = None
import numpy as np
import tensorflow as tf

request = json.loads(sys.argv[2])
served = tf.saved_model.load(sys.argv[1])
x = tf.constant(request["x"], request["dtype"])
seed = tf.constant([3, 4])
if request["conditions"] is None:
    log_prob = served.signatures["log_prob"](x=x)["log_prob"]
    called = served.serve(x)
    samples = served.signatures["sample"](num_samples=tf.constant(6), seed=seed)["samples"]
    again = served.signatures["sample"](num_samples=tf.constant(6), seed=seed)["samples"]
else:
    y = tf.constant(request["conditions"], request["dtype"])
    log_prob = served.signatures["log_prob"](x=x, condition=y)["log_prob"]
    called = served.serve(x, y)
    samples = served.signatures["sample"](condition=y, seed=seed)["samples"]
    again = served.signatures["sample"](condition=y, seed=seed)["samples"]
blocked = [m for m in ("tfotflow", "tensorflow_probability", "keras") if sys.modules[m]]
print(json.dumps({"log_prob": log_prob.numpy().tolist(), "samples": samples.numpy().tolist(),
                  "serve": called.numpy().tolist(), "serve_is_a_tensor": tf.is_tensor(called),
                  "same_seed_same_samples": bool(np.array_equal(samples, again)),
                  "imported": blocked}))
"""


def serve(path, x, conditions, dtype):
    request = json.dumps(
        {
            "x": x.tolist(),
            "conditions": None if conditions is None else conditions.tolist(),
            "dtype": dtype,
        }
    )
    completed = subprocess.run(
        [sys.executable, "-c", SERVE, str(path), request],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


# Keras's conventions, in a fresh interpreter: `import tfotflow` then `load_model`, and
# `export` with Keras's signature; another format is refused, by name.
EXPORT = """
import sys
import tfotflow
import keras

model = keras.models.load_model(sys.argv[1])
try:
    model.export(sys.argv[2] + "-onnx", format="onnx")
except ValueError as error:
    print("refused:", error)
print(model.export(sys.argv[2], format="tf_saved_model", verbose=False))
"""


def export_in_a_fresh_interpreter(saved, path):
    completed = subprocess.run(
        [sys.executable, "-c", EXPORT, str(saved), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    refused, written = completed.stdout.strip().splitlines()[-2:]
    assert refused.startswith("refused:") and "format='onnx'" in refused
    assert written == str(path)  # verbose=False: the path alone, no message
    assert not pathlib.Path(str(path) + "-onnx").exists()
    return path


def test_export_keeps_keras_signature_and_serve_endpoint(tmp_path, rng):
    model = OTFlowModel(2, width=4, num_steps=2, dtype="float64")
    x = rng.normal(size=(4, 2))
    spec = tf.TensorSpec([4, 2], tf.float64)
    path = model.export(tmp_path / "fixed", input_signature=[spec], verbose=True)
    served = tf.saved_model.load(str(path))
    served_call = served.serve(x)
    assert tf.is_tensor(served_call)  # what model(x) returns: the log-density, not a dict
    np.testing.assert_allclose(served_call, model(x), rtol=1e-12)
    np.testing.assert_allclose(
        served.signatures["serving_default"](x=tf.constant(x))["log_prob"],
        model.log_prob(x),
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match="input_signature"):
        model.export(tmp_path / "bad", input_signature=[tf.TensorSpec([None, 3], tf.float64)])
    with pytest.raises(TypeError, match="is_static"):
        model.export(tmp_path / "bad", is_static=True)
    with pytest.raises(ValueError, match="format='litert'"):
        model.export(tmp_path / "bad", format="litert")


@pytest.mark.parametrize("condition_dim", [pytest.param(0, marks=pytest.mark.slow), 2])
def test_saved_model_serves_without_tfotflow(tmp_path, rng, condition_dim):
    model = OTFlowModel(3, width=6, num_steps=3, dtype="float64", condition_dim=condition_dim)
    for variable in model.potential.trainable_variables:  # a non-trivial flow
        variable.assign(rng.normal(scale=0.3, size=variable.shape))
    points, conditions = rng.normal(size=(200, 3)) * [2.0, 0.5, 3.0] + 1.0, None
    if condition_dim:  # points whose mean moves with the conditions: B ≠ 0 in the chain
        conditions = rng.normal(size=(200, condition_dim))
        points += conditions @ rng.normal(size=(condition_dim, 3))
    model.adapt(points, conditions)
    if condition_dim:
        assert np.all(np.abs(np.asarray(model.condition_shift)) > 0)
    x, conditions = points[:5], None if conditions is None else conditions[:5]
    model.save(tmp_path / "model.keras")
    path = export_in_a_fresh_interpreter(tmp_path / "model.keras", tmp_path / "served")
    result = serve(path, x, conditions, "float64")
    assert result["imported"] == []
    np.testing.assert_allclose(result["log_prob"], model.log_prob(x, conditions), rtol=1e-12)
    called = model(x if conditions is None else (x, conditions))
    assert result["serve_is_a_tensor"]  # serve(x) returns what model(x) returns
    np.testing.assert_allclose(result["serve"], called, rtol=1e-12)
    samples = np.array(result["samples"])
    assert samples.shape == ((5 if condition_dim else 6), 3) and np.all(np.isfinite(samples))
    assert result["same_seed_same_samples"]
    # The samples are the model's flow applied to the seed's normal draws.
    z = tf.random.stateless_normal([len(samples), 3], seed=[3, 4], dtype=tf.float64)
    kwargs = model.bijector_kwargs(conditions)
    np.testing.assert_allclose(samples, model.bijector.forward(z, **kwargs), rtol=1e-12)


def test_export_command_writes_a_saved_model_and_refuses_a_used_folder(tmp_path):
    from tfotflow import rundir

    run_dir = tmp_path / "run"
    model = OTFlowModel(2, width=4, num_steps=2)
    run_dir.mkdir()
    rundir.write_json(run_dir / "config.json", {"dataset": "moons", "model": {"width": 4}})
    rundir.save_model(model, run_dir / "model.keras")
    out = tmp_path / "served"
    result = CliRunner().invoke(cli.main, ["export", str(run_dir), str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "saved_model.pb").exists()
    again = CliRunner().invoke(cli.main, ["export", str(run_dir), str(out)])
    assert again.exit_code == 2 and "not empty" in again.output
