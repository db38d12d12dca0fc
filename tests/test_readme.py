"""The README's Python examples run as written."""

import pathlib
import re

import pytest

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_block(after_heading):
    return re.search(rf"{after_heading}\n.*?```python\n(.*?)```", README, re.S).group(1)


def test_readme_usage_example_runs(capsys):
    exec(compile(python_block("## Use"), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "shape=(5,)" in printed and "shape=(3, 2)" in printed


@pytest.mark.slow
def test_readme_training_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(python_block("### Training in Python"), "README.md", "exec"), namespace)
    assert (tmp_path / "ckpt" / "last.npz").exists()
    assert namespace["model"].log_prob(namespace["x"]).shape == (10,)


def test_readme_conditional_example_runs():
    namespace = {}
    exec(compile(python_block("### Conditional densities"), "README.md", "exec"), namespace)
    assert namespace["samples"].shape == (500, 2)
    assert 1.5 < namespace["nll"] < 6.0  # trained a little: near the entropy 2.14, finite
