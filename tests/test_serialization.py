"""``import tfotflow`` is enough for ``keras.models.load_model``, in a fresh interpreter, with
Keras imported before or after tfotflow, and without importing TensorFlow by itself."""

import importlib
import subprocess
import sys

import numpy as np
import pytest

from tfotflow import serialization
from tfotflow._keras import keras
from tfotflow.flow_matching import FlowMatching
from tfotflow.model import OTFlowModel


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An unconditional and a conditional OTFlowModel and a FlowMatching, saved."""
    folder = tmp_path_factory.mktemp("saved")
    x = np.random.default_rng(0).normal(size=(3, 2)).astype("float32")
    y = np.ones((3, 1), "float32")
    OTFlowModel(2, width=4).save(folder / "plain.keras")
    OTFlowModel(2, width=4, condition_dim=1).save(folder / "conditional.keras")
    FlowMatching(OTFlowModel(2, width=4)).save(folder / "matching.keras")
    expected = {
        "plain": keras.models.load_model(folder / "plain.keras").log_prob(x).numpy(),
        "conditional": keras.models.load_model(folder / "conditional.keras")
        .log_prob(x, y)
        .numpy(),
    }
    return folder, x, y, expected


LOAD = """
import sys
import numpy as np
folder, x, y = sys.argv[1], np.array({x}, "float32"), np.array({y}, "float32")
plain = keras.models.load_model(f"{{folder}}/plain.keras")
conditional = keras.models.load_model(f"{{folder}}/conditional.keras")
matching = keras.models.load_model(f"{{folder}}/matching.keras")
print(type(plain).__name__, type(conditional).__name__, type(matching).__name__)
print(plain.log_prob(x).numpy().tolist())
print(conditional.log_prob(x, y).numpy().tolist())
"""


@pytest.mark.parametrize(
    "imports",
    [
        # `import tfotflow` then `import keras`: test_serving's fresh interpreter (fast set).
        pytest.param("import keras\nimport tfotflow", marks=pytest.mark.slow),
        pytest.param(
            "import tfotflow\nimport tensorflow as tf\nkeras = tf.keras", marks=pytest.mark.slow
        ),
    ],
    ids=["keras-first", "tf.keras"],
)
def test_load_model_after_import_tfotflow_in_a_fresh_interpreter(saved, imports):
    folder, x, y, expected = saved
    code = imports + LOAD.format(x=x.tolist(), y=y.tolist())
    completed = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    names, plain, conditional = completed.stdout.strip().splitlines()[-3:]
    assert names == "OTFlowModel OTFlowModel FlowMatching"
    np.testing.assert_allclose(eval(plain), expected["plain"], rtol=1e-6)
    np.testing.assert_allclose(eval(conditional), expected["conditional"], rtol=1e-6)


def test_import_tfotflow_alone_imports_neither_keras_nor_tensorflow():
    code = "import sys, tfotflow\nprint(sorted({'keras', 'tensorflow'} & set(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


def test_every_registered_class_is_listed():
    """A class registered under the package is in CLASSES, so `import tfotflow` covers it."""
    for module in set(serialization.CLASSES.values()):
        importlib.import_module(module)
    registered = {
        key.split(">", 1)[1]: getattr(value, "__module__", None)
        for key, value in keras.saving.get_custom_objects().items()
        if key.startswith("tfotflow>")
    }
    assert registered == serialization.CLASSES


def test_an_unlisted_class_is_refused():
    class Unlisted(keras.layers.Layer):
        pass

    with pytest.raises(ValueError, match="must be listed in tfotflow.serialization.CLASSES"):
        serialization.register(Unlisted)


def test_a_stand_in_builds_the_real_class():
    stand_in = serialization.Deferred("OTFlowModel", "tfotflow.model")
    model = stand_in.from_config(OTFlowModel(2, width=3).get_config())
    assert isinstance(model, OTFlowModel) and model.potential.width == 3
