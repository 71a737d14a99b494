"""The documentation site (``docs/``, ``mkdocs.yml``) against the code and itself: every page in
the nav, every public class in the API reference, the config defaults as ``l2o/config.py`` holds
them, and a README short enough to read. ``mkdocs build --strict`` (CI) checks the links."""

import glob
import importlib
import inspect
import os
import re
import types

import yaml
from conftest import ROOT

DOCS = os.path.join(ROOT, "docs")
# The packages whose ``__all__`` is the public API; l2o.blackbox has none: its classes are.
PACKAGES = ("l2o", "l2o.optimizers", "l2o.optimizers.pio", "l2o.estimators", "l2o.problems",
            "l2o.strategies", "l2o.differentiable")


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as handle:
        return handle.read()


def nav_pages(node):
    if isinstance(node, str):
        return [node] if node.endswith(".md") else []
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_pages(value)]
    return [page for item in node for page in nav_pages(item)]


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    nav = nav_pages(yaml.safe_load(read("mkdocs.yml"))["nav"])
    pages = {os.path.relpath(path, DOCS).replace(os.sep, "/")
             for path in glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)}
    assert len(nav) == len(set(nav)), "a page is in the nav twice"
    assert set(nav) == pages


def resolve(path):
    """The object a ``::: dotted.path`` of mkdocstrings names."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise ImportError(path)


def test_the_api_reference_lists_every_public_class():
    reference = "".join(read(path) for path in glob.glob(os.path.join(DOCS, "api", "*.md")))
    documented = {id(resolve(path))
                  for path in re.findall(r"^::: ([\w.]+)$", reference, re.MULTILINE)}
    public = {f"{package}.{name}": getattr(importlib.import_module(package), name)
              for package in PACKAGES for name in importlib.import_module(package).__all__}
    public.update({f"l2o.blackbox.{name}": value
                   for name, value in vars(importlib.import_module("l2o.blackbox")).items()
                   if not name.startswith("_") and getattr(value, "__module__", "") == "l2o.blackbox"})
    missing = [path for path, value in public.items()
               if inspect.isclass(value) and id(value) not in documented]
    assert not missing, f"not in docs/api/: {missing}"


def test_the_configs_page_gives_the_defaults_of_l2o_config():
    from l2o.config import DEFAULTS

    page = read("docs", "configs.md")
    block = re.search(r"## Defaults\n.*?```yaml\n(.*?)```", page, re.DOTALL).group(1)
    assert yaml.safe_load(block) == DEFAULTS
    # Every key of a section with defaults has its row (or its name in its section's row).
    for section, value in DEFAULTS.items():
        assert f"`{section}" in page.split("## Defaults")[0], section
        for key in value if isinstance(value, dict) else ():
            rows = [line for line in page.splitlines() if line.startswith(f"| `{section}/")]
            assert any(re.search(rf"\b{key}\b", row) for row in rows), \
                f"{section}/{key}"


def test_the_configs_page_names_every_registered_constructor_and_problem():
    from l2o.registry import ESTIMATORS, OPTIMIZERS, PROBLEMS, STRATEGIES

    page = read("docs", "configs.md")
    for registry in (OPTIMIZERS, PROBLEMS, STRATEGIES, ESTIMATORS):
        for name in registry:
            assert f"`{name}`" in page, name


def test_the_readme_is_a_front_page():
    readme = read("README.md")
    assert len(readme.splitlines()) <= 250
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert os.path.isfile(os.path.join(ROOT, link)), link


def test_no_issue_numbers_in_the_readme_or_the_docs():
    for path in ["README.md", "mkdocs.yml",
                 *glob.glob(os.path.join(DOCS, "**", "*.*"), recursive=True)]:
        found = re.findall(r"issues? #?\d+", read(path), re.IGNORECASE)
        assert not found, f"{path}: {found}"


def test_the_pretrained_page_includes_the_readme_section():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hooks", os.path.join(DOCS, "hooks.py"))
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    where = types.SimpleNamespace(file=types.SimpleNamespace(src_uri="pretrained.md"))
    page = hooks.on_page_markdown(read("docs", "pretrained.md"), where, None, None)
    section = read("README.md").split("## Pretrained optimisers", 1)[1].split("\n## ", 1)[0]
    # The README's links into docs/ point from the page's own folder.
    assert "](docs/" in section
    assert section.split("\n", 1)[1].replace("](docs/", "](") in page and "<!--" not in page
