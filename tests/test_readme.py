"""The README's Python examples run as written."""

import pathlib
import re

import numpy as np
import pytest

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_block(after_heading, index=0):
    """The ``index``-th Python block of the section under ``after_heading``."""
    section = re.split(r"\n#{2,} ", README.split(after_heading + "\n", 1)[1], maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)[index]


def test_readme_usage_example_runs(capsys):
    exec(compile(python_block("## Use"), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "shape=(5,)" in printed and "shape=(3, 2)" in printed


@pytest.mark.slow
def test_readme_training_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(python_block("### Training in Python", 1), "README.md", "exec"), namespace)
    assert (tmp_path / "ckpt" / "last.npz").exists()
    assert namespace["model"].log_prob(namespace["x"]).shape == (10,)


def test_readme_conditional_example_runs():
    namespace = {}
    exec(compile(python_block("### Conditional densities"), "README.md", "exec"), namespace)
    assert namespace["samples"].shape == (500, 2)
    # Trained: below N(0, I)'s 2.89 and an untrained model's 7–10 on these points, and not
    # below the exact conditional entropy 2.14 by more than the estimate's spread.
    entropy = namespace["data"].metadata.entropy
    assert entropy - 0.05 < namespace["nll"] < 2.7


@pytest.mark.slow  # XLA compiles of the warm start and the training step
def test_readme_keras_recipe_example_runs():
    """As written, with the fit shortened to one epoch and 20 warm-start steps (the recipe's
    own quality is measured by `tfotflow bench --suite recipe`)."""
    block = python_block("### Training in Python")
    assert "model.fit(data.train, verbose=0)" in block
    block = block.replace(
        "model.fit(data.train, verbose=0)",
        "model.fit(data.train, epochs=1, warm_start=20, verbose=0)",
    )
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    model = namespace["model"]
    # one epoch of the 18,000 rows left after a tenth is held out for validation, at 1,024
    assert model.optimizer._learning_rate.decay_steps == 18
    assert np.all(np.isfinite(model.log_prob(namespace["data"].test[:5])))
