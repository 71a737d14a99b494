"""What the README states about the code's own lists (extras, resumable keys), against those
lists: each grows in one place, and the README sentence is easy to forget."""

import os
import re

import pytest
from conftest import ROOT

from l2o import runs


def readme():
    with open(os.path.join(ROOT, "README.md")) as handle:
        return handle.read()


def test_install_names_every_package_of_the_dev_extra():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        dev = tomllib.load(handle)["project"]["optional-dependencies"]["dev"]
    install = readme().split("## Install", 1)[1].split("\n## ", 1)[0]
    for requirement in dev:
        name = re.match(r"[\w.-]+(\[[\w,]+\])?", requirement).group(0)
        assert name in install, f"README, Install: the dev extra's {name} is not named"


def test_the_resume_sentence_names_every_resumable_key():
    sentence = re.search(r"`resume.py` accepts overrides of (.*?) only", readme(), re.DOTALL)
    named = set(re.findall(r"`([\w/]+?)(?:/\.\.\.)?`", sentence.group(1)))
    assert named == set(runs.RESUMABLE)
