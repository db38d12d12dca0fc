"""The README's usage example runs as written."""

import pathlib
import re


def test_readme_usage_example_runs(capsys):
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.search(r"## Use\n.*?```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "shape=(5,)" in printed and "shape=(3, 2)" in printed
