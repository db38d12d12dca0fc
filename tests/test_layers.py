"""The package's layering: imports run one way, from a higher layer to a lower one; no cycle;
the settings and the run-directory files import no TensorFlow; each run setting's default is
written once (in tfotflow.settings.DEFAULTS)."""

import ast
import pathlib
import re
import subprocess
import sys

import pytest

from tfotflow.settings import DEFAULTS

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tfotflow"
# Lowest first. A module may import modules of its own layer or of lower ones.
LAYERS = [
    # plain Python and NumPy: checks, settings, data, files
    {
        "tfotflow",
        "tfotflow.about",
        "tfotflow.checks",
        "tfotflow.settings",
        "tfotflow.registry",
        "tfotflow.hardware",
        "tfotflow.checkpoint",
        "tfotflow.rundir",
        "tfotflow.scoring",
        "tfotflow.datasets",
        "tfotflow.datasets.*",
        "tfotflow.serialization",
    },
    # the math: the potential, the solve, the bijector
    {
        "tfotflow._keras",
        "tfotflow.validation",
        "tfotflow.potential",
        "tfotflow.ode",
        "tfotflow.regularizers",
        "tfotflow.bijector",
        "tfotflow.distribute",
        "tfotflow.serving",
    },
    # the trainer's parts, then the trainer
    {"tfotflow.callbacks", "tfotflow.flow_matching", "tfotflow.progress"},
    {"tfotflow.training"},
    # the model, whose compile() / fit() run the trainer
    {"tfotflow.model"},
    # what uses models: latent flows, plots, runs, the plugin battery
    {"tfotflow.latent", "tfotflow.plotting"},
    {"tfotflow.runs", "tfotflow.testing"},
    # benchmarks and the command
    {"tfotflow.bench", "tfotflow.bench.*", "tfotflow.cli"},
]
# Imports inside functions, each for a reason of its own: the command starts TensorFlow only
# for the commands that need it; the scaling benchmark sets up logical devices first.
LAZY = {"tfotflow.cli", "tfotflow.bench.scaling_out"}


def layer_of(module):
    for index, layer in enumerate(LAYERS):
        if module in layer or any(
            name.endswith(".*") and module.startswith(name[:-1]) for name in layer
        ):
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py")


def modules():
    """``{module: path}`` of every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path, known):
    """``(top-level imports, imports inside functions)`` of tfotflow modules in ``path``."""
    tree = ast.parse(path.read_text())
    top, inner = set(), set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfotflow"):
            targets = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                for a in node.names
            ]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith("tfotflow")]
        (top if node in tree.body else inner).update(targets)
    return top, inner


def test_imports_run_down_the_layers_without_a_cycle():
    known = modules()
    graph, upward, lazy = {}, [], []
    for name, path in known.items():
        top, inner = imports(path, known)
        graph[name] = (top | inner) - {name}
        for target in top - {name}:
            if layer_of(target) > layer_of(name):
                upward.append(f"{name} → {target}")
        if inner and name not in LAZY:
            lazy.append(f"{name} → {sorted(inner)}")
    assert not upward, upward
    assert not lazy, lazy

    def visit(node, stack, seen):
        if node in stack:
            raise AssertionError(f"import cycle: {' → '.join(stack[stack.index(node) :])}")
        if node in seen:
            return
        seen.add(node)
        for target in graph.get(node, ()):
            visit(target, [*stack, node], seen)

    seen = set()
    for name in graph:
        visit(name, [], seen)


def test_settings_and_run_files_import_no_tensorflow():
    code = (
        "import sys, tfotflow.settings, tfotflow.rundir, tfotflow.checks; "
        "print('tensorflow' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.strip() == "False", found.stderr


# The run settings' names, and the names their functions give them.
SETTING_NAMES = {key for key, value in DEFAULTS.items() if value is not None} | {
    "sinkhorn_iterations",
    "clip",
}
# Functions whose arguments of those names are not the run settings: the data loaders' dtype
# (the data's, not the model's), the benchmarks' own, and the bijector's steps (the flow
# alone, outside a run).
NOT_SETTINGS = ("tfotflow/bench/", "tfotflow/datasets/", "tfotflow/bijector.py")
# Arguments that share a setting's name and mean something else: rows per scoring call, rows
# per encoding call, and the dtype of the reference code's weights.
OTHER_MEANING = {
    ("score_samples", "batch_size"),
    ("iter_scores", "batch_size"),
    ("encode", "batch_size"),
    ("decode", "batch_size"),
    ("from_state_dict", "dtype"),
}


def test_no_signature_spells_a_run_settings_default():
    """No function signature of the package spells a run setting's default as a literal: it
    reads it from tfotflow.settings.DEFAULTS."""
    literal = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if relative.startswith(NOT_SETTINGS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            arguments = node.args
            positional = arguments.args[len(arguments.args) - len(arguments.defaults) :]
            pairs = [
                *zip(positional, arguments.defaults),
                *zip(arguments.kwonlyargs, arguments.kw_defaults),
            ]
            for argument, default in pairs:
                if (
                    argument.arg in SETTING_NAMES
                    and (node.name, argument.arg) not in OTHER_MEANING
                    and isinstance(default, ast.Constant)
                    and default.value is not None
                    and not isinstance(default.value, bool)
                ):
                    literal.append(f"{relative}:{node.lineno} {argument.arg}={default.value!r}")
    assert not literal, literal


@pytest.mark.parametrize("key", ["warm_start_learning_rate", "autoencoder_learning_rate"])
def test_a_default_is_written_once(key):
    """Outside the benchmarks' stated overrides, the setting is given a number in one place
    only: tfotflow.settings.DEFAULTS (a data set's preset may state its own, as an override,
    and the rule computes some from the data)."""
    pattern = re.compile(rf"""\b{key}["']?\s*[:=]\s*[0-9.]+""")
    places = [
        f"{path.relative_to(PACKAGE.parent)}: {match.group(0)}"
        for path in PACKAGE.rglob("*.py")
        if not path.relative_to(PACKAGE.parent).as_posix().startswith("tfotflow/bench/")
        for match in pattern.finditer(path.read_text())
    ]
    assert len(places) == 1 and places[0].startswith("tfotflow/settings.py"), places


def test_the_train_command_is_thin():
    """``tfotflow train`` parses, shows progress and calls the library: its body is short."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    (train,) = [node for node in tree.body if getattr(node, "name", None) == "train"]
    body = train.end_lineno - train.body[0].lineno + 1
    assert body < 80, body
