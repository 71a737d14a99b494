"""Every shipped config trains: one short period each, from outside the repository, through
the train command (test_catalog.py checks that each resolves and how they are found)."""

import glob
import json
import math
import os

import pytest

from l2o import catalog, cli
from l2o.config import load_file, resolve

SHIPPED = sorted(glob.glob(os.path.join(catalog.FOLDER, "*")))
# One period of one truncation per trajectory; set only where the config has the key
# (Simple has num_periods, Curriculum its stage limits).
ONE_SHORT_PERIOD = {
    "strategy": {"num_periods": 1, "max_stages": 1, "min_periods": 1, "max_periods": 1,
                 "epochs_per_period": 1, "validation_repeat": 1},
    "training": {"epochs": 1, "depth": 1},
}


def one_short_period(path):
    config = load_file(path)
    resolved = resolve(config)
    overrides = [f"{section}/{key}={value}" for section, values in ONE_SHORT_PERIOD.items()
                 for key, value in values.items() if key in resolved[section]]
    if len(config["problems"]) > 1:  # each problem is traced apart: seconds each
        overrides.append(f"problems={json.dumps(config['problems'][:1])}")
    return overrides


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_config_trains_one_short_period(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a user runs it: no repository around
    run = tmp_path / "run"
    cli.train([path, f"directory={run}", *one_short_period(path)])
    records = [json.loads(line) for line in (run / "summary.jsonl").read_text().splitlines()]
    assert [record["period"] for record in records] == [0]
    assert math.isfinite(records[0]["validation_meta_loss"] or math.nan), records[0]
    for name in ("last.npz", "best.npz", "period_0000.npz"):
        assert (run / "checkpoints" / name).exists(), name
