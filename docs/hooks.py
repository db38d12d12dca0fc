"""MkDocs hook: the API reference covers every module, and every public name has a docstring.

Run by ``mkdocs build --strict``: each problem is a warning, which strict mode turns into a
failed build. Public means not starting with ``_``; a method that overrides one of a base
class (Keras's ``train_step``, a callback's ``on_epoch_end``) keeps the base's documentation.
It also points the README's pictures (``docs/images/``) at the docs folder on the guide page.
"""

import importlib
import inspect
import logging
import os
import pathlib
import pkgutil
import re
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=DeprecationWarning)

log = logging.getLogger("mkdocs.hooks.tfotflow")
PACKAGE = "tfotflow"


def modules():
    """Every public module of the package, by dotted name."""
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{PACKAGE}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def undocumented(module_name):
    """The public functions, classes and methods defined in ``module_name`` without a
    docstring (methods overriding a base class's are documented there)."""
    module = importlib.import_module(module_name)
    missing = [] if inspect.getdoc(module) else [module_name]
    for name, value in vars(module).items():
        if name.startswith("_") or getattr(value, "__module__", None) != module_name:
            continue
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not (value.__doc__ or "").strip():
            missing.append(f"{module_name}.{name}")
        if inspect.isclass(value):
            for attribute, member in vars(value).items():
                function = getattr(member, "__func__", member)
                if attribute.startswith("_") or not inspect.isfunction(function):
                    continue
                inherited = any(attribute in vars(base) for base in value.__mro__[1:])
                if not inherited and not (function.__doc__ or "").strip():
                    missing.append(f"{module_name}.{name}.{attribute}")
    return missing


def on_pre_build(config):
    """Warns (a failure under ``--strict``) for each module missing from the API pages and
    each public name without a docstring."""
    pages = pathlib.Path(config["docs_dir"]) / "api"
    rendered = set()
    for page in pages.glob("*.md"):
        rendered |= set(re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.MULTILINE))
    for name in modules():
        if name not in rendered:
            log.warning("module %s is in no page of the API reference (docs/api/)", name)
        for missing in undocumented(name):
            log.warning("%s has no docstring", missing)


def on_page_markdown(markdown, page, config, files):
    """The guide page is the README, whose links into ``docs/`` (pictures) are written from
    the repository's root: there they are made relative to the docs folder."""
    if page.file.src_uri == "index.md" and markdown.strip() == '--8<-- "README.md"':
        return pathlib.Path("README.md").read_text().replace("](docs/", "](")
    return markdown
