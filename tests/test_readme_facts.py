"""What the README and the docs state about the code's own lists (extras, resumable keys), against
those lists: each grows in one place, and the sentence is easy to forget."""

import os
import re

import pytest
from conftest import ROOT

from l2o import runs


def readme():
    with open(os.path.join(ROOT, "README.md")) as handle:
        return handle.read()


def docs_page(name):
    with open(os.path.join(ROOT, "docs", name)) as handle:
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
    sentence = re.search(r"`resume.py` accepts overrides of (.*?) only", docs_page("configs.md"),
                         re.DOTALL)
    named = set(re.findall(r"`([\w/]+?)(?:/\.\.\.)?`", sentence.group(1)))
    assert named == set(runs.RESUMABLE)


@pytest.mark.slow
def test_the_pretrained_example_runs_as_written_and_scores_as_the_readme_says():
    """The README's pretrained snippet, run as a user would paste it, then again with Adam(1e-3)
    in place of the optimiser: the validation losses the README quotes for it are those."""
    section = readme().split("## Pretrained optimisers", 1)[1].split("\n## ", 1)[0]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    assert 'l2o.load_optimizer("pretrained")' in snippet
    quoted = re.search(r"this snippet's validation loss after 20 epochs is ([\d.]+) against "
                       r"([\d.]+) for Adam\(1e-3\)", " ".join(section.split()))
    results = {}
    for label, replacement in (("pretrained", 'l2o.load_optimizer("pretrained")'),
                               ("adam", "keras.optimizers.Adam(1e-3)")):
        scope = {}
        exec(snippet.replace(  # noqa: S102  (the README snippet, run as written)
            'l2o.load_optimizer("pretrained")', replacement), scope)
        results[label] = scope["history"].history["val_loss"][-1]
    assert results["pretrained"] < 1.0, results  # it learns: chance is log(10) = 2.3
    # Seeded, so the same here; a few percent apart on other machines' kernels.
    assert results["pretrained"] == pytest.approx(float(quoted.group(1)), rel=0.05), results
    assert results["adam"] == pytest.approx(float(quoted.group(2)), rel=0.05), results
