"""benchmarks/systems/gpu.py, the JAX benchmark meant for the GPU machine, run here on the CPU
under KERAS_BACKEND=jax: its quick run prints every table with positive finite numbers and never
imports TensorFlow, and its hand-written JAX reference computes the toolkit's meta-gradient."""

import math
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

# The benchmark run as a script, then asked whether anything it used imported TensorFlow.
RUN_WITHOUT_TENSORFLOW = """
import runpy, sys
sys.argv = ["benchmarks/systems/gpu.py"] + sys.argv[1:]
runpy.run_module("benchmarks.systems.gpu", run_name="__main__", alter_sys=True)
print("tensorflow imported:", "tensorflow" in sys.modules)
"""
# Each table's columns that hold measurements.
NUMBERS = {"a": ["inner steps / s", "ratio to hand-written"],
           "b": ["particles N", "s per truncation", "particles x inner steps / s"],
           "c": ["ms / step", "ratio to Adam"]}


def run_on_jax(args, timeout):
    result = subprocess.run([sys.executable, *args], check=False, cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def table(text, part):
    """The rows (header first) of the markdown table under the heading of ``part``."""
    section = text.split(f"## ({part})", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|") and "---" not in line]


@pytest.mark.slow
def test_quick_run_prints_every_table_with_positive_finite_numbers(tmp_path):
    out = tmp_path / "gpu.md"
    text = run_on_jax(["-c", RUN_WITHOUT_TENSORFLOW, "--quick", "--out", str(out)], 600)
    assert "tensorflow imported: False" in text
    for part, columns in NUMBERS.items():
        header, *rows = table(text, part)
        assert rows, f"({part}): no rows"
        for row in rows:
            assert len(row) == len(header), row
            for column in columns:
                value = float(row[header.index(column)])
                assert math.isfinite(value) and value > 0, (part, row)
    assert len(table(text, "a")) == 3  # header, hand-written, toolkit
    assert {row[1] for row in table(text, "b")[1:]} == {"8", "64"}
    assert len(table(text, "c")) == 1 + 2 * 4  # two models, Adam and three learned optimisers
    difference = float(re.search(r"largest relative difference (\S+)\.\n", text).group(1))
    assert difference <= 1e-4
    assert out.read_text().strip() in text


@pytest.mark.slow
def test_handwritten_meta_gradient_equals_the_toolkits():
    """On the digits MLP 64-4-10, DM 3-3, unroll 4."""
    code = ("from benchmarks.systems.gpu import gradient_difference\n"
            "from l2o.config import resolve\n"
            "print(gradient_difference(resolve({}, [\n"
            "    'problems/0/kwargs/dataset=digits', 'problems/0/kwargs/layers=[4]',\n"
            "    'problems/0/kwargs/activation=sigmoid', 'problems/0/kwargs/batch_size=16',\n"
            "    'network/layers=[3, 3]', 'strategy/unroll_distribution=4'])))")
    assert float(run_on_jax(["-c", code], 300).split()[-1]) <= 1e-4
