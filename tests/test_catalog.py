"""Shipped configs: package data found by name from any directory, listed by --list."""

import json
import os

import pytest
from conftest import ROOT

from l2o import catalog, cli
from l2o.validation import ConfigError, shortened


def test_a_name_resolves_to_the_shipped_file_and_a_path_to_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = os.path.join(catalog.FOLDER, "quickstart.yaml")
    assert catalog.config_path("quickstart") == shipped
    assert catalog.config_path("quickstart.yaml") == shipped
    (tmp_path / "quickstart.yaml").write_text("constructor: DM\n")
    assert catalog.config_path("quickstart.yaml") == "quickstart.yaml"


def test_an_unknown_config_names_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        catalog.config_path("configs/quickstart.yaml")
    names = list(catalog.shipped())
    assert {"quickstart", "dm_mnist"} <= set(names) and names == sorted(names)
    assert str(error.value) == (f"config file not found: configs/quickstart.yaml (shipped "
                                f"configs: {', '.join(names)}; or give a path)")


def test_the_repository_configs_folder_is_the_package_one():
    assert os.path.realpath(os.path.join(ROOT, "configs")) == os.path.realpath(catalog.FOLDER)


def test_every_shipped_config_resolves_and_names_its_data_set_not_a_path():
    from l2o.config import load_file, resolve

    for name in catalog.shipped():
        resolved = resolve(load_file(catalog.config_path(name)))
        for problem in resolved["problems"]:
            dataset = problem["kwargs"].get("dataset", "")
            assert os.sep not in dataset and not dataset.startswith("."), (name, dataset)


def test_list_names_each_shipped_config_with_its_description(capsys):
    cli.train(["--list"])
    listed = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert list(listed) == list(catalog.shipped())
    assert listed["quickstart"] == ("Meta-train DM on an MLP over scikit-learn's embedded 8x8 "
                                    "digits (offline), in minutes.")
    assert listed["dm_mnist"].startswith("DM on the reference task of Andrychowicz et al.")


def test_list_shows_each_description_whole_or_cut_at_a_word_with_an_ellipsis(capsys):
    cli.train(["--list"])
    listed = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    for name, shown in listed.items():
        with open(catalog.config_path(name)) as handle:
            comment = " ".join(line.lstrip("#").strip() for line in handle
                               if line.startswith("#"))
        assert len(shown) <= catalog.DESCRIPTION_LENGTH, name
        if shown.endswith("..."):
            kept = shown[:-3]
            assert comment.startswith(kept) and comment[len(kept)] in " ,;:.", (name, shown)
        else:  # a whole sentence
            assert comment.startswith(shown) and shown.endswith((".", ")")), (name, shown)
    assert listed["pes_many_hyperparameters"] == (
        "The PES paper's many-hyperparameter experiment (Vicol et al. 2021): 15 per-layer ones, "
        "PES.")  # one sentence, its next line not run on


@pytest.mark.parametrize("text, expected", [
    ("short enough", "short enough"),
    ("a b c d e f g h i j k l m n o p q r s t", "a b c d e f g h..."),
    ("the quick fox (a long aside) jumps", "the quick fox..."),
    ("word " * 3 + "x" * 30, "word word word..."),
])
def test_shortened_cuts_at_a_word_and_never_leaves_a_bracket_open(text, expected):
    assert shortened(text, 20) == expected


def test_train_takes_a_shipped_name_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli.train(["quickstart", "--dry-run", "strategy/num_periods=1"])
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["directory"] == "runs/quickstart"
    assert resolved["strategy"]["num_periods"] == 1
    assert resolved["problems"][0]["kwargs"]["dataset"] == "digits"


@pytest.mark.parametrize("argv, expected", [
    (["nope"], "error: config file not found: nope (shipped configs: controlled_adam_dec"),
    ([], "error: give a config file or a shipped config's name (l2o-train --list)"),
])
def test_train_without_a_config_gives_one_line_and_exit_2(tmp_path, monkeypatch, capfd, argv,
                                                          expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_status:
        cli.train(argv)
    assert exit_status.value.code == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith(expected), err
    assert os.listdir(tmp_path) == []
