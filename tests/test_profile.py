"""A profiled training stage: torch.profiler over a few steps, the parts of a step named."""

import json

import pytest

from sslsep.config import load_config
from sslsep.run import RunDir
from test_pretrain import BASE, with_registry
from sslsep.contrastive.train import pretrain
from sslsep.training.profile import PARTS


def test_pretraining_profile_names_the_parts_of_a_step(tmp_path, registry):
    cfg = with_registry(load_config(None, BASE + ["pretrain.use_ray=false", "pretrain.steps=8",
                                                  "pretrain.log_every=2", "pretrain.profile_steps=3"]), registry)
    pretrain(cfg, RunDir(str(tmp_path)))
    prof = json.loads((tmp_path / "profile_pretrain.json").read_text())
    assert prof["steps"] == [3, 5]  # after the first report step (2)
    parts = prof["parts"]
    for name in PARTS:
        assert parts[name]["ms_per_step"] >= 0, name
    for name in ("forward", "backward", "optimizer", "logmel", "cnn"):
        assert parts[name]["ms_per_step"] > 0, name
    assert parts["logmel"]["ms_per_step"] + parts["cnn"]["ms_per_step"] <= parts["forward"]["ms_per_step"] * 1.05
    listed = sum(parts[n]["ms_per_step"] for n in PARTS) + parts["other"]["ms_per_step"]
    assert listed == pytest.approx(prof["ms_per_step"], rel=0.01)
    assert prof["top_ops"] and all(op["self_cpu_ms_per_step"] >= 0 for op in prof["top_ops"])
    trace = json.loads((tmp_path / "profile_pretrain.trace.json").read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"sslsep/forward", "sslsep/backward", "sslsep/data_wait"} <= names


def test_profiling_is_off_by_default(tmp_path, registry):
    cfg = with_registry(load_config(None, BASE + ["pretrain.use_ray=false"]), registry)
    pretrain(cfg, RunDir(str(tmp_path)))
    assert not (tmp_path / "profile_pretrain.json").exists()
