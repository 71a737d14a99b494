"""The "Coming from ..." pages of the docs (``docs/migrating/``): one per upstream repository,
each with its mapping table, and every example in them runs.

Python blocks run as written (``exec``, in a scratch directory). Shell blocks' commands run
in this process (``runpy``, as ``python SCRIPT ARGS`` or ``python -m MODULE ARGS`` would,
without a fresh interpreter's TensorFlow import for each) from a scratch copy of the
repository's scripts and its benchmarks and examples packages, so that what they write (runs,
figures, benchmark outputs) lands there; each gets the small sizes of
``TINY`` appended, which later flags and overrides win over.
"""

import os
import re
import runpy
import shlex
import shutil
import sys

import numpy as np
import pytest
from conftest import MNIST, ROOT

TITLES = ("the l2o toolkit", "Persistent Evolution Strategies", "the Path Integral Optimiser",
          "Meta-Optim", "pytorch-optimize")

# Appended to each command, found by its script and first argument, else its script alone.
TINY = {
    "train.py configs/pes_schedule_mnist.yaml": [
        "strategy/num_periods=1", "strategy/epochs_per_period=1", "training/depth=1",
        "estimator/n_particles=2", "strategy/validation_unroll=20"],
    "train.py configs/pio_carrillo.yaml": [
        "strategy/num_periods=1", "strategy/epochs_per_period=1", "training/depth=2",
        "strategy/validation_repeat=1"],
    "evaluate.py": ["evaluation/steps=3", "evaluation/repeats=1"],
    "baseline.py": ["evaluation/steps=3", "evaluation/repeats=1"],
    "-m benchmarks.pes_paper.influence_balancing": ["--iterations", "3", "--particles", "10"],
    "-m benchmarks.pes_paper.toy_regression": ["--iterations", "3", "--particles", "10"],
    "-m benchmarks.pio_paper.min_loss_sweep": ["--quick"],
}


MIGRATING = os.path.join(ROOT, "docs", "migrating")


def readme_sections():
    """``{title: text}`` of every "# Coming from ..." page of ``docs/migrating/``: its text
    after the title."""
    sections = {}
    for name in sorted(os.listdir(MIGRATING)):
        with open(os.path.join(MIGRATING, name)) as handle:
            text = handle.read()
        match = re.match(r"# Coming from (.+)\n", text)
        assert match, f"docs/migrating/{name}: no '# Coming from ...' title"
        sections[match.group(1)] = text[match.end():]
    return sections


def code_blocks(section, language):
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def commands(block):
    """The argument lists of a shell block's commands (lines joined, comments dropped)."""
    lines = block.replace("\\\n", " ").splitlines()
    found = []
    for tokens in (shlex.split(line, comments=True) for line in lines):
        while tokens:
            end = tokens.index("&&") if "&&" in tokens else len(tokens)
            found.append(tokens[:end])
            tokens = tokens[end + 1:]
    return found


def tiny(argv):
    for key in (" ".join(argv[1:3]), argv[1]):
        if key in TINY:
            return TINY[key]
    raise AssertionError(f"no small sizes in TINY for the docs' command {shlex.join(argv)}")


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A directory with copies of the repository's scripts, its benchmarks and examples
    packages and its configs, made current and first on ``sys.path`` (as ``python -m`` from
    it would have it), so that the packages' copies write there."""
    for name in os.listdir(ROOT):
        if name.endswith(".py"):
            shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    for package in ("benchmarks", "examples"):
        shutil.copytree(os.path.join(ROOT, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("out", "figures", "__pycache__"))
    os.symlink(os.path.join(ROOT, "configs"), tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in list(sys.modules):  # imported from the repository by earlier tests
        if module.split(".")[0] in ("benchmarks", "examples"):
            monkeypatch.delitem(sys.modules, module)
    yield tmp_path
    for module in list(sys.modules):  # the copies: later tests import the repository's again
        if module.split(".")[0] in ("benchmarks", "examples"):
            del sys.modules[module]


def run_command(argv, monkeypatch):
    module = argv[2] if argv[1:2] == ["-m"] else None
    assert argv[0] == "python" and (module or argv[1].endswith(".py")), shlex.join(argv)
    if any("mnist" in arg for arg in argv[3 if module else 2:]) and not os.path.isdir(MNIST):
        pytest.skip(f"shared MNIST data not found at {MNIST}")
    monkeypatch.setattr(sys, "argv", (argv[2:] if module else argv[1:]) + tiny(argv))
    try:
        if module:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(argv[1], run_name="__main__")
    except SystemExit as exit_:
        assert exit_.code in (None, 0), f"{shlex.join(argv)} exited with {exit_.code}"


def run_section(title, monkeypatch):
    """Runs a section's shell commands, then its Python blocks; returns their namespaces."""
    section = readme_sections()[title]
    for block in code_blocks(section, "bash"):
        for argv in commands(block):
            run_command(argv, monkeypatch)
    namespaces = []
    for index, block in enumerate(code_blocks(section, "python")):
        namespace = {"__name__": "__main__"}
        exec(compile(block, f"docs/migrating, Coming from {title}, example {index}", "exec"),  # noqa: S102
             namespace)
        namespaces.append(namespace)
    return namespaces


def test_one_section_per_upstream_repository_each_with_its_mapping():
    sections = readme_sections()
    assert sorted(sections) == sorted(TITLES)
    for title, text in sections.items():
        assert re.search(r"^\| [^|]+ \| here\b", text, re.MULTILINE), title


@pytest.mark.slow
def test_the_l2o_toolkit(scratch, monkeypatch):
    run_section("the l2o toolkit", monkeypatch)
    periods = (scratch / "runs" / "toolkit_api" / "summary.jsonl").read_text().splitlines()
    assert len(periods) == 3  # two trained, one resumed


@pytest.mark.slow
def test_persistent_evolution_strategies(scratch, monkeypatch, capsys):
    run_section("Persistent Evolution Strategies", monkeypatch)
    output = capsys.readouterr().out
    assert output.count("| pes K=1 |") == 1 and "| uoro |" in output
    assert (scratch / "benchmarks" / "figures" / "toy_regression.png").is_file()
    for run in ("pes_schedule_mnist", "es_schedule_mnist"):
        assert (scratch / "runs" / run / "checkpoints" / "best.npz").is_file()
    # Both estimators move theta from (-4, -4), down the meta-objective.
    moved = dict(re.findall(r"^(RTRL|PES) \[(.*)\]$", output, re.MULTILINE))
    assert sorted(moved) == ["PES", "RTRL"]
    for theta in moved.values():
        assert np.all(np.array(theta.split(), float) > -3.95), moved


@pytest.mark.slow
def test_the_path_integral_optimiser(scratch, monkeypatch, capsys):
    run_section("the Path Integral Optimiser", monkeypatch)
    output = capsys.readouterr().out
    assert (scratch / "runs" / "pio_carrillo" / "evaluation" / "problem0.png").is_file()
    assert "Adagrad_lr" in output and "| carrillo | PIS-MC |" in output
    log_z, exact = map(float, re.search(r"log Z (\S+) \(exact (\S+),", output).groups())
    assert abs(log_z - exact) < 0.1


def test_meta_optim_has_no_examples_to_run():
    """Its table only (tests/test_differentiable_model.py runs the examples it points to)."""
    assert not re.search(r"```\w", readme_sections()["Meta-Optim"])


def test_pytorch_optimize(scratch, monkeypatch):
    (namespace,) = run_section("pytorch-optimize", monkeypatch)
    assert namespace["es_optimizer"].iterations == 30
    assert namespace["accuracy"][0] > 0.3  # 10 classes: chance is 0.1
