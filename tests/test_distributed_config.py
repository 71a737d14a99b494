"""The `distributed` config section: bad settings fail before any work, naming the key, and
without Ray installed (these checks must not need it)."""

import pytest
from conftest import tiny_config

from l2o import distributed
from l2o.config import resolve
from l2o.validation import ConfigError


@pytest.mark.parametrize("overrides, message", [
    (["distributed/worker=2"], "distributed/worker: unknown key; did you mean 'workers'"),
    (["distributed/workers=two"], "distributed/workers: expected int"),
    (["distributed/workers=-1"], "distributed/workers: must be at least 0"),
    (["distributed/address=''"], "distributed/address: null"),
    (["distributed/cpus_per_worker=0"], "distributed/cpus_per_worker: must be above 0"),
    (["distributed/gpus_per_worker=-1"], "distributed/gpus_per_worker: must be finite"),
    (["distributed/workers=2"], "set training/meta_batch to averaged, or workers to 0"),
    (["distributed/workers=3", "training/meta_batch=averaged", "training/epochs=2"],
     "1 problems x training/epochs 2 make 2; use at most 2 workers"),
    (["distributed/workers=3", "estimator_constructor=pes", "estimator/n_particles=4"],
     "estimator/n_particles 4 makes 2; use at most 2 workers"),
])
def test_bad_distributed_settings_fail_before_any_work(tmp_path, monkeypatch, overrides, message):
    monkeypatch.setattr(distributed, "available", lambda: True)  # as if Ray were installed
    with pytest.raises(ConfigError, match=message):
        resolve(tiny_config(tmp_path), overrides)


def test_workers_without_ray_name_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "available", lambda: False)
    with pytest.raises(ConfigError, match=r"distributed/workers: 2 workers need Ray, which is "
                                          r"not installed: pip install -e \"\.\[distributed\]\""):
        resolve(tiny_config(tmp_path), ["distributed/workers=2", "estimator_constructor=pes"])
    defaults = resolve(tiny_config(tmp_path))["distributed"]
    assert defaults == {"workers": 0, "address": None, "cpus_per_worker": 1.0,
                        "gpus_per_worker": 0.0}
