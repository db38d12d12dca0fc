"""Plugin registry behaviour with fabricated entry points (no packages installed)."""

import importlib.metadata
import sys
import types

import pytest

from tfotflow.registry import DATASETS, REGULARIZERS, PluginError, PluginWarning, Registry


@pytest.fixture
def plugin_module(monkeypatch):
    module = types.ModuleType("fake_plugins")
    module.good = lambda: "good"
    module.other = lambda: "other"
    module.not_callable = 42
    monkeypatch.setitem(sys.modules, "fake_plugins", module)
    return module


def entry(name, value):
    return importlib.metadata.EntryPoint(name, value, "demo.group")


def test_names_do_not_import(plugin_module, monkeypatch):
    registry = Registry(
        "demo.group",
        "widget",
        entry_points=lambda: [entry("b", "not_a_module:x"), entry("a", "fake_plugins:good")],
    )
    assert registry.names() == ["a", "b"]
    assert "not_a_module" not in sys.modules


def test_load_is_lazy_and_cached(plugin_module):
    calls = []

    def entry_points():
        calls.append(1)
        return [entry("a", "fake_plugins:good")]

    registry = Registry("demo.group", "widget", entry_points=entry_points)
    first = registry.load("a")
    assert first() == "good" and registry.load("a") is first
    assert len(calls) == 1
    registry.refresh()
    registry.load("a")
    assert len(calls) == 2


def test_broken_plugin_warns_and_spares_the_others(plugin_module):
    registry = Registry(
        "demo.group",
        "widget",
        entry_points=lambda: [
            entry("broken", "missing_module_xyz:thing"),
            entry("fine", "fake_plugins:good"),
            entry("inert", "fake_plugins:not_callable"),
        ],
    )
    broken_warning = "'broken'.*failed to load.*ModuleNotFoundError"
    with pytest.warns(PluginWarning, match=broken_warning), pytest.raises(PluginError):
        registry.load("broken")
    inert_warning = "'inert'.*unusable.*expected a callable, got int"
    with pytest.warns(PluginWarning, match=inert_warning), pytest.raises(PluginError):
        registry.load("inert")
    assert registry.load("fine")() == "good"
    with pytest.warns(PluginWarning):
        rows = {row["name"]: row["status"] for row in registry.status()}
    assert rows["fine"] == "loads"
    assert "ModuleNotFoundError" in rows["broken"] and "expected a callable" in rows["inert"]


def test_duplicates_warn_and_name_the_winner(plugin_module):
    registry = Registry(
        "demo.group",
        "widget",
        entry_points=lambda: [entry("a", "fake_plugins:good"), entry("a", "fake_plugins:other")],
    )
    with pytest.warns(PluginWarning, match=r"declared by both .*fake_plugins:good.*using the one"):
        names = registry.names()
    assert names == ["a"]
    assert registry.load("a")() == "good"


def test_unknown_name_lists_installed_and_how_to_add(plugin_module):
    registry = Registry(
        "demo.group", "widget", entry_points=lambda: [entry("a", "fake_plugins:good")]
    )
    with pytest.raises(
        PluginError, match=r"Unknown widget 'zzz'. Installed widgets: a\. .*entry-points"
    ):
        registry.load("zzz")


def test_builtins_come_through_our_own_entry_points():
    assert {"8gaussians", "checkerboard", "power", "miniboone", "bsds300"} <= set(DATASETS.names())
    assert {"transport", "hjb", "kinetic_jacobian"} <= set(REGULARIZERS.names())
    package, version = DATASETS.package_of("8gaussians")
    assert package == "tfotflow" and version


def test_a_plugin_that_exits_on_import_is_isolated(plugin_module, tmp_path, monkeypatch):
    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(
        "demo.group",
        "widget",
        entry_points=lambda: [
            entry("exits", "exiting_plugin:thing"),
            entry("fine", "fake_plugins:good"),
        ],
    )
    with pytest.warns(PluginWarning, match="'exits'.*failed to load.*SystemExit"):
        rows = {row["name"]: row["status"] for row in registry.status()}
    assert rows == {"exits": "SystemExit: 3", "fine": "loads"}


def test_a_plugin_whose_extras_are_missing_says_what_to_install():
    """A plugin declared with an extra (``name = "module:object [extra]"``) reports the
    packages of that extra that are not installed, read from its package's metadata."""
    from importlib.metadata import EntryPoint

    from tfotflow import registry

    class Distribution:
        metadata = {"Name": "someplugin"}
        version = "1.0"
        requires = ['pyarrow>=14; extra == "parquet"', "numpy>=1.26"]

    declared = EntryPoint("parq", "math:sqrt [parquet]", "demo")._for(Distribution())
    plain = EntryPoint("plain", "math:sqrt", "demo")._for(Distribution())
    assert declared.extras == ["parquet"]
    assert registry.missing_requirements(declared, installed=lambda package: False) == ["pyarrow"]
    assert registry.missing_requirements(declared, installed=lambda package: True) == []
    assert registry.missing_requirements(plain, installed=lambda package: False) == []
    demo = Registry("demo", "demo", entry_points=lambda: [declared, plain])
    rows = {row["name"]: row["status"] for row in demo.status()}
    if not registry._installed("pyarrow"):
        assert rows["parq"] == "loads; needs pyarrow: pip install 'someplugin[parquet]'"
    assert rows["plain"] == "loads"
