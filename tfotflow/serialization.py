"""Keras serialization: ``import tfotflow`` is enough for ``keras.models.load_model``.

Keras finds a custom class of a saved model by its registered name (``"tfotflow>OTFlowModel"``)
in its table of custom objects, which ``keras.saving.register_keras_serializable`` fills when
the class's module runs. tfotflow's modules import TensorFlow, and ``import tfotflow`` must
not (the command line's ``--help`` and usage errors answer in a fraction of a second), so the
table gets a light stand-in for each class instead, as soon as Keras is imported:

- ``import tfotflow`` with Keras already imported: the stand-ins are added at once;
- Keras imported later (by the user, by ``tf.keras``, or by tfotflow itself): an import hook
  adds them right after Keras has finished importing.

A stand-in's ``from_config`` imports the class's module (whose decorator then replaces the
stand-in with the class) and builds the object with the real ``from_config``, so
``keras.models.load_model`` works whichever classes were imported before. Every class
registered under the ``tfotflow`` package must be named in :data:`CLASSES` (a test checks it);
modules register theirs with :func:`register`.
"""

import importlib
import importlib.abc
import importlib.util
import sys

PACKAGE = "tfotflow"

# Every serializable class, by name, with the module that defines it.
CLASSES = {
    "Potential": "tfotflow.potential",
    "OTFlowModel": "tfotflow.model",
    "FlowMatching": "tfotflow.flow_matching",
    "Autoencoder": "tfotflow.latent",
    "Cosine": "tfotflow.training",
}


class Deferred:
    """Stands in for a class of :data:`CLASSES` in Keras's table until its module is imported.

    Args:
        name: the class's name.
        module: the module defining it.
    """

    def __init__(self, name, module):
        self.name, self.module = name, module

    def resolve(self):
        """The class itself (importing its module, which registers it)."""
        return getattr(importlib.import_module(self.module), self.name)

    def from_config(self, config):
        """The object built from ``config`` by the class's own ``from_config``."""
        return self.resolve().from_config(config)

    def __repr__(self):
        return f"Deferred({self.module}.{self.name})"


def register(cls):
    """Registers ``cls`` with Keras as ``"tfotflow>NAME"`` (``register_keras_serializable``),
    replacing its stand-in; the class must be listed in :data:`CLASSES`.

    Raises:
        ValueError: for a class missing from :data:`CLASSES`.
    """
    if CLASSES.get(cls.__name__) != cls.__module__:
        raise ValueError(
            f"{cls.__module__}.{cls.__name__} must be listed in tfotflow.serialization.CLASSES "
            "so that `import tfotflow` makes it loadable"
        )
    import keras

    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


def add_stand_ins(keras_module):
    """Puts a :class:`Deferred` in Keras's custom-object table for each class of
    :data:`CLASSES` not yet registered."""
    table = keras_module.saving.get_custom_objects()
    for name, module in CLASSES.items():
        table.setdefault(f"{PACKAGE}>{name}", Deferred(name, module))


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """An import hook: when ``keras`` is imported, its loader is wrapped so that the stand-ins
    are added once the module has run; then the hook removes itself. (A mere look-up,
    ``importlib.util.find_spec("keras")``, gets the wrapped loader too and leaves the hook.)"""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" or "keras" in sys.modules:
            return None
        uninstall()
        try:
            spec = importlib.util.find_spec("keras")  # the real one, found by the other finders
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        uninstall()
        add_stand_ins(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, … of the real loader
        return getattr(self.loader, name)


_HOOK = _AfterKerasImport()


def install():
    """Adds the stand-ins now if Keras is imported, else when it is (idempotent)."""
    keras_module = sys.modules.get("keras")
    if keras_module is not None and hasattr(keras_module, "saving"):
        add_stand_ins(keras_module)
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def uninstall():
    """Removes the import hook (the stand-ins already added stay)."""
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)
