"""Versions of tfotflow and the stack it runs on (read from package metadata, no imports)."""

import importlib.metadata

from tfotflow import __version__

STACK = {
    "tensorflow": "TensorFlow",
    "keras": "Keras",
    "tensorflow-probability": "TensorFlow Probability",
}


def stack_versions():
    """``{"tfotflow": …, "tensorflow": …, "keras": …, "tensorflow-probability": …}``."""
    versions = {"tfotflow": __version__}
    for package in STACK:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def describe():
    """One line: ``tfotflow 0.1.0 (TensorFlow 2.x, Keras 3.x, TensorFlow Probability 0.x)``."""
    versions = stack_versions()
    stack = ", ".join(f"{label} {versions[package]}" for package, label in STACK.items())
    return f"tfotflow {versions['tfotflow']} ({stack})"
