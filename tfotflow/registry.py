"""Plugins found through Python entry points: one registry class for every plugin group.

tfotflow's own data sets and regularizers are declared in its ``pyproject.toml`` under the same
entry-point groups a third-party package uses (``tfotflow.datasets``,
``tfotflow.regularizers``), so every plugin takes the same path:

- names come from package metadata, without importing anything;
- a plugin is imported on first use and cached (:meth:`Registry.refresh` forgets the cache);
- two packages declaring one name warn and name the winner (the first one found);
- a plugin that fails to import, or is not of the expected kind, warns with its package and
  name and never breaks the others;
- an unknown name lists what is installed and how to add more;
- a plugin declared with extras (``gas = "pkg.module:gas [tabular]"``) is reported with the
  packages those extras need and are missing.

This module imports no TensorFlow.
"""

import functools
import importlib.metadata
import re
import warnings


class PluginError(LookupError):
    """A plugin is unknown, or is installed but cannot be loaded."""


class PluginWarning(UserWarning):
    """A plugin is broken or declared twice; the registry goes on without it."""


class Registry:
    """The plugins of one entry-point group.

    Args:
        group: the entry-point group, e.g. ``"tfotflow.datasets"``.
        kind: what one plugin is, for messages, e.g. ``"dataset"``.
        check: ``callable(obj) -> str | None`` returning why a loaded object is unusable, or
            None. Defaults to requiring a callable.
        entry_points: ``callable() -> iterable of importlib.metadata.EntryPoint`` for this group.
            Defaults to the installed packages' metadata (tests pass fabricated ones).

    Example:

    >>> from importlib.metadata import EntryPoint
    >>> registry = Registry("demo", "demo", entry_points=lambda: [
    ...     EntryPoint("sqrt", "math:sqrt", "demo")])
    >>> registry.names()
    ['sqrt']
    >>> registry.load("sqrt")(9.0)
    3.0
    """

    def __init__(self, group, kind, *, check=None, entry_points=None):
        self.group = group
        self.kind = kind
        self._check = check or _require_callable
        self._entry_points = entry_points or (lambda: importlib.metadata.entry_points(group=group))
        self._load = functools.cache(self._load_uncached)
        self._declared = functools.cache(self._declared_uncached)

    def refresh(self):
        """Forgets what was listed and loaded (after installing or removing a plugin)."""
        self._load.cache_clear()
        self._declared.cache_clear()

    def names(self):
        """The sorted names of every declared plugin (from metadata only: nothing is imported)."""
        return sorted(self._declared())

    def package_of(self, name):
        """(distribution name, version) of the package declaring ``name``, or (None, None)."""
        return _distribution(self._declared()[name])

    def describe(self, name):
        """Where ``name`` comes from, for messages: ``package NAME VERSION (module:object)``."""
        return _describe(self._declared()[name])

    def load(self, name):
        """The plugin object named ``name``, imported on first use and cached.

        Raises:
            PluginError: if no package declares ``name`` (the message lists the installed names
                and how to add one), or if the plugin fails to load (the message names its
                package and the cause).
        """
        if name not in self._declared():
            available = ", ".join(self.names()) or "none"
            raise PluginError(
                f"Unknown {self.kind} {name!r}. Installed {self.kind}s: {available}. "
                f"A package adds one by declaring an entry point in the group {self.group!r} "
                f'(pyproject.toml: [project.entry-points."{self.group}"] {name} = '
                '"module:object").'
            )
        return self._load(name)

    def status(self):
        """One row per plugin: name, package, version, and "loads" or the load error.

        Loads every plugin (a broken one warns, and its row says why). "loads" means the
        plugin imports and is of the expected kind; a dataset's data contract is checked only
        by loading its data (:func:`tfotflow.testing.check_dataset_plugin`). A plugin that
        loads but whose declared extras need packages that are not installed reads
        "loads; needs pyarrow: pip install 'somepackage[parquet]'".
        """
        rows = []
        for name in self.names():
            package, version = self.package_of(name)
            try:
                self.load(name)
                state = "loads"
                entry_point = self._declared()[name]
                missing = missing_requirements(entry_point)
                if missing:
                    extras = ",".join(entry_point.extras)
                    state += f"; needs {', '.join(missing)}: pip install '{package}[{extras}]'"
            except PluginError as error:
                cause = error.__cause__ or error
                state = f"{type(cause).__name__}: {cause}"
            rows.append({"name": name, "package": package, "version": version, "status": state})
        return rows

    def _declared_uncached(self):
        declared = {}
        for entry_point in self._entry_points():
            name = entry_point.name
            if name in declared:
                winner = _describe(declared[name])
                warnings.warn(
                    f"{self.kind} {name!r} is declared by both {winner} and "
                    f"{_describe(entry_point)}; using the one from {winner}.",
                    PluginWarning,
                    stacklevel=3,
                )
                continue
            declared[name] = entry_point
        return declared

    def _load_uncached(self, name):
        entry_point = self._declared()[name]
        try:
            plugin = entry_point.load()
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # any import-time failure of third-party code, exit too
            raise self._broken(name, entry_point, "failed to load", error) from error
        problem = self._check(plugin)
        if problem:
            error = TypeError(problem)
            raise self._broken(name, entry_point, "is unusable", error) from error
        return plugin

    def _broken(self, name, entry_point, what, error):
        """Warns that a plugin is broken; returns the error to raise for it."""
        message = (
            f"{self.kind} {name!r} from {_describe(entry_point)} {what}: "
            f"{type(error).__name__}: {error}"
        )
        warnings.warn(message, PluginWarning, stacklevel=4)
        return PluginError(message)


def _require_callable(plugin):
    if not callable(plugin):
        return f"expected a callable, got {type(plugin).__name__}"
    return None


def missing_requirements(entry_point, installed=None):
    """The packages that ``entry_point``'s extras require and that are not installed.

    The requirements are read from the declaring package's metadata: ``name[op version];
    extra == "tabular"`` lines for each extra the entry point names.

    Args:
        entry_point: an ``importlib.metadata.EntryPoint``, e.g. ``gas = "m:gas [tabular]"``.
        installed: ``callable(package_name) -> bool``. Defaults to asking the installed
            package metadata.
    """
    dist = getattr(entry_point, "dist", None)
    if dist is None or not entry_point.extras:
        return []
    installed = installed or _installed
    missing = []
    for requirement in dist.requires or ():
        name, _, marker = requirement.partition(";")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra is None or extra.group(1) not in entry_point.extras:
            continue
        package = re.match(r"\s*([A-Za-z0-9._-]+)", name).group(1)
        if not installed(package) and package not in missing:
            missing.append(package)
    return missing


def _installed(package):
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _distribution(entry_point):
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _describe(entry_point):
    package, version = _distribution(entry_point)
    where = f"package {package} {version}" if package else "an unnamed package"
    return f"{where} ({entry_point.value})"


DATASETS = Registry("tfotflow.datasets", "dataset")
REGULARIZERS = Registry("tfotflow.regularizers", "regularizer")
