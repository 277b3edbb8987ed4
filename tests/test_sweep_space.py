"""Sweep files: strict reading, conditional suggestions, overrides, resource-driven concurrency."""

from pathlib import Path

import optuna
import pytest

from sslsep.config import ConfigError, load_config
from sslsep.tuning.space import load_sweep, spec_from_dict, subsets, suggest, trial_overrides
from sslsep.tuning.sweep import concurrency, trial_config, trial_cpus

REPO = Path(__file__).resolve().parents[1]
SPACE = """
name: s
metric: mAP
rungs: [2, 4]
space:
  views:
    choice:
      separated: ["augment.kinds=[mixture, channel, sum]"]
      mixture-only: ["augment.kinds=[mixture]"]
  separators: {subsets: registry, when: {views: [separated]}}
  pretrain.w_coinc: {uniform: [0.0, 1.0]}
  pretrain.temperature: {loguniform: [0.05, 0.5]}
  pretrain.similarity: {choice: [cosine, bilinear]}
"""


def write(tmp_path, text):
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


def test_the_shipped_sweep_file_loads():
    spec = load_sweep(REPO / "experiments" / "sweeps" / "quick.yaml")
    assert spec.config.endswith("experiments/configs/quick.yaml") and spec.rungs == sorted(spec.rungs)
    assert spec_from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("bad, message", [
    ("\nbogus: 1", "unknown key"),
    ("\nmode: up", "mode must be max or min"),
    ("\nmetric: loss", "metric must be one of"),
    ("\nstart: [{nope: 1}]", "start[0]"),
])
def test_bad_sweep_files_name_the_key(tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_sweep(write(tmp_path, SPACE + bad))


@pytest.mark.parametrize("space, message", [
    ("  lr: {uniform: [0, 1]}", "space.lr: a plain value needs a dotted config key"),
    ("  pretrain.lr: {loguniform: [0, 1]}", "low > 0"),
    ("  pretrain.lr: {uniform: [1, 0]}", "low < high"),
    ("  pretrain.lr: {uniform: [0, 1], when: {views: [x]}}", "views"),
    ("  pretrain.lr: {normal: [0, 1]}", "exactly one of"),
])
def test_bad_parameters_name_the_parameter(tmp_path, space, message):
    text = "name: s\nspace:\n  views: {choice: {a: [pretrain.w_sim=1]}}\n" + space + "\n"
    with pytest.raises(ConfigError, match=message):
        load_sweep(write(tmp_path, text))


def test_subsets_of_the_registry():
    assert subsets(["a", "b", "c"]) == ["a", "b", "c", "a+b", "a+c", "b+c", "a+b+c"]
    assert subsets(["a", "b", "c"], min_size=2) == ["a+b", "a+c", "b+c", "a+b+c"]


def test_conditional_parameters_and_overrides(tmp_path):
    spec = load_sweep(write(tmp_path, SPACE))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        suggest(trial, spec, ["step-000001", "step-000002"])
        p = trial.params
        seen.add(p["views"])
        assert ("separators" in p) == (p["views"] == "separated")  # conditional on the view choice
        over = trial_overrides(p, spec)
        cfg = trial_config(load_config(None, []), spec, p, "/r/registry.json")
        assert cfg.pretrain.w_coinc == pytest.approx(p["pretrain.w_coinc"])
        assert cfg.pretrain.similarity == p["pretrain.similarity"]
        if p["views"] == "mixture-only":
            assert cfg.augment.kinds == ["mixture"] and cfg.augment.separators == []
        else:
            assert cfg.augment.separators == p["separators"].split("+")
            assert f"augment.separators=[{', '.join(p['separators'].split('+'))}]" in over
        study.tell(trial, 0.5)
    assert seen == {"separated", "mixture-only"}


def test_concurrency_follows_the_resources(tmp_path):
    spec = load_sweep(write(tmp_path, SPACE))
    cfg = load_config(None, ["pretrain.cpus_per_worker=1", "augment.cpus_per_actor=0.5"])
    assert trial_cpus(cfg) == 2.0
    assert concurrency(cfg, spec, {"CPU": 2}) == 1
    assert concurrency(cfg, spec, {"CPU": 16}) == 8
    gpu = load_config(None, ["pretrain.use_gpu=true", "augment.gpus_per_actor=0.5", "pretrain.cpus_per_worker=1"])
    assert concurrency(gpu, spec, {"CPU": 64, "GPU": 3}) == 2  # 1.5 GPUs per trial
    spec.max_concurrent_trials = 3
    assert concurrency(cfg, spec, {"CPU": 2}) == 3
    with pytest.raises(ValueError, match="one trial needs 2 CPUs .* the cluster has 1"):
        concurrency(cfg, spec, {"CPU": 1})  # would hang forever instead
