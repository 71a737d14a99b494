"""Benchmarks and examples still fit the library: each imports, and every l2o name it uses
exists (benchmarks have no quick mode worth a test run; the examples' quick runs are tested in
test_blackbox.py and test_differentiable.py)."""

import ast
import glob
import importlib
import importlib.util
import os
import sys
import types

import pytest
from conftest import ROOT


def is_script(path):
    """A module run as ``python -m`` (it has a ``__main__`` block), not one the scripts
    share, such as benchmarks/common.py."""
    with open(path) as handle:
        return '__name__ == "__main__"' in handle.read()


SCRIPTS = sorted(path for folder in ("benchmarks", "examples")
                 for path in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True)
                 if is_script(path))


def l2o_names_missing(tree, module):
    """``module.name`` and ``from l2o... import name`` anywhere in ``tree`` that l2o lacks."""
    # A name assigned anywhere may not be the imported module: only unshadowed ones are checked.
    shadowed = {node.id for node in ast.walk(tree)
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    shadowed |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "l2o":
            imported = importlib.import_module(node.module)
            missing += [f"line {node.lineno}: from {node.module} import {alias.name}"
                        for alias in node.names if not hasattr(imported, alias.name)
                        and importlib.util.find_spec(f"{node.module}.{alias.name}") is None]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id not in shadowed):
            used = getattr(module, node.value.id, None)
            if (isinstance(used, types.ModuleType) and used.__name__.split(".")[0] == "l2o"
                    and not hasattr(used, node.attr)):
                missing.append(f"line {node.lineno}: {used.__name__}.{node.attr}")
    return missing


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: os.path.relpath(path, ROOT))
def test_script_imports_and_uses_only_existing_l2o_names(path, monkeypatch):
    name = "smoke_" + os.path.splitext(os.path.relpath(path, ROOT))[0].replace(os.sep, "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)  # the top level only: main() runs under __main__
    assert callable(getattr(module, "main", None)), f"{path}: no main()"
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    missing = l2o_names_missing(tree, module)
    assert not missing, f"{path} uses names l2o no longer has:\n" + "\n".join(missing)


# Scripts that import TensorFlow itself, and why; the others reach it only through l2o.backend
# (compile_fn, ...) and keras.ops, so that what is TensorFlow's stays in one module.
TENSORFLOW_USERS = {
    "benchmarks/systems/meta_training_throughput.py":
        "measures a hand-written tf.function against l2o's unroll",
    "benchmarks/pio_paper/min_loss_sweep.py": "quiets TensorFlow's logger (its retracing warnings)",
}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: os.path.relpath(path, ROOT))
def test_script_reaches_tensorflow_through_l2o_backend(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    if "tensorflow" in imported:
        assert os.path.relpath(path, ROOT) in TENSORFLOW_USERS, \
            f"{path} imports tensorflow; use l2o.backend and keras.ops"
