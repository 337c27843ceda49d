"""Source-tree rules that no unit test would notice being broken.

1. No autograd: nothing in minippl/, kernels/ or examples/ imports torch, jax,
   autograd, tinygrad, tensorflow (or a close relative). Every gradient in minippl
   is written by hand, so such an import is always a mistake. Files are parsed with
   ``ast`` (not grepped), catching ``import x``, ``from x import y`` and string
   literals handed to ``importlib.import_module`` / ``__import__``.
2. Packaging: setup.cfg lists its packages by hand (it cannot search for ``minippl``
   and also map kernels/ to ``minippl.kernels``), so every package folder under
   minippl/ must appear there, or a non-editable install would silently lack it.
"""
import ast
import configparser
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
CHECKED_DIRS = ("minippl", "kernels", "examples")
FORBIDDEN = {"torch", "jax", "jaxlib", "autograd", "tinygrad", "tensorflow",
             "keras", "functorch", "mxnet", "paddle"}
DYNAMIC_IMPORTERS = {"import_module", "__import__"}  # importlib.import_module, builtin


def imported_modules(source, filename="<source>"):
    """Yield (line, module name) for every absolute import the source performs."""
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:  # relative imports stay inside the repo
                yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (name in DYNAMIC_IMPORTERS and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)):
                yield node.lineno, first.value


def forbidden_imports(source, filename="<source>"):
    return [(line, name) for line, name in imported_modules(source, filename)
            if name.split(".")[0] in FORBIDDEN]


def python_files():
    return sorted(path for folder in CHECKED_DIRS for path in (REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("snippet", [
    "import torch",
    "import numpy as np, jax.numpy as jnp",
    "from tensorflow import keras",
    "from autograd.numpy import exp",
    "import importlib\nimportlib.import_module('tinygrad.tensor')",
    "from importlib import import_module\nimport_module('torch')",
    "def f():\n    return __import__('jax')",
])
def test_detector_catches_every_import_form(snippet):
    assert forbidden_imports(snippet), f"not caught: {snippet!r}"


@pytest.mark.parametrize("snippet", [
    "import numpy as np",
    "from . import torch_like_helper",
    "import torchvision_free_module_name as torchy",
    "name = 'torch'  # a string that is not imported",
])
def test_detector_allows_innocent_code(snippet):
    assert forbidden_imports(snippet) == []


def test_no_autograd_library_is_imported():
    files = python_files()
    assert any(path.parts[-2] == "minippl" for path in files), "found no minippl/*.py files"
    offenders = [f"{path.relative_to(REPO)}:{line}: imports {name}"
                 for path in files
                 for line, name in forbidden_imports(path.read_text(encoding="utf-8"), str(path))]
    assert not offenders, ("minippl derives every gradient by hand; remove these imports:\n"
                           + "\n".join(offenders))


def test_setup_cfg_lists_every_package():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg", encoding="utf-8")
    listed = set(config["options"]["packages"].split())
    on_disk = {".".join(init.parent.relative_to(REPO).parts)
               for init in (REPO / "minippl").rglob("__init__.py")}
    missing = sorted(on_disk - listed)
    assert not missing, (f"package folders {missing} are not listed under [options] packages "
                         "in setup.cfg; add them, or `pip install .` will leave them out")
    assert "minippl.kernels" in listed
    assert "minippl.kernels = kernels" in config["options"]["package_dir"]
