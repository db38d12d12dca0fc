"""tfotflow: OT-Flow continuous normalizing flows for TensorFlow, Keras 3 and TFP.

The public names are imported on first use, so ``import tfotflow`` (and the command line's
``--help``) does not start TensorFlow. Saved models load all the same: ``import tfotflow``
makes ``keras.models.load_model`` find every tfotflow class (:mod:`tfotflow.serialization`).
"""

import importlib

from tfotflow import serialization

__version__ = "0.1.0"

_EXPORTS = {
    "Potential": "tfotflow.potential",
    "OTFlow": "tfotflow.bijector",
    "integrate": "tfotflow.ode",
    "OTFlowModel": "tfotflow.model",
    "FlowMatching": "tfotflow.flow_matching",
}

_SUBMODULES = {
    "bench",
    "callbacks",
    "checkpoint",
    "datasets",
    "flow_matching",
    "ode",
    "plotting",
    "registry",
    "regularizers",
    "runs",
    "serialization",
    "serving",
    "testing",
    "training",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

serialization.install()


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"tfotflow.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfotflow' has no attribute {name!r}")


def __dir__():
    return __all__
