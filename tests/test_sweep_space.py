"""Sweep files: strict reading, conditional suggestions, config values, resource-driven concurrency."""

from pathlib import Path

import optuna
import pytest

from sslsep.config import ConfigError, load_config, replace
from sslsep.tuning.space import load_sweep, spec_from_dict, subsets, suggest, trial_overrides
from sslsep.tuning.sweep import check_trials, concurrency, trial_config, trial_cpus

REPO = Path(__file__).resolve().parents[1]
SPACE = """
name: s
metric: mAP
rungs: [2, 4]
space:
  views:
    choice:
      separated: {augment.kinds: [mixture, channel, sum]}
      mixture-only: {augment.kinds: [mixture]}
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
    # every key and value is checked against the config's keys, types and ranges at load
    ("  pretrain.lrr: {uniform: [0, 1]}", r"space.pretrain.lrr.uniform: unknown key 'pretrain.lrr'"),
    ("  pretrain.lr: {uniform: [-1, 1]}", r"space.pretrain.lr.uniform: key 'pretrain.lr' must be >= 0.0"),
    ("  pretrain.batch_clips: {uniform: [2, 8]}", "key 'pretrain.batch_clips' expects an integer"),
    ("  pretrain.pool: {choice: [mean, median]}", r"space.pretrain.pool.choice: key 'pretrain.pool' must be one of"),
    ("  bundle: {choice: {b: {pretrain.w_sim: fast}}}",
     r"space.bundle.choice.b: key 'pretrain.w_sim' expects a number"),
    ("  bundle: {choice: {b: {augment.registry: /r.json}}}", "key 'augment.registry' moved to 'separation.registry'"),
    ("  bundle: {choice: {b: 3}}", r"space.bundle.choice.b must map config keys to values"),
])
def test_bad_parameters_name_the_parameter(tmp_path, space, message):
    text = "name: s\nspace:\n  views: {choice: {a: {pretrain.w_sim: 1}}}\n" + space + "\n"
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
        cfg = trial_config(load_config(None, []), spec, p)
        assert cfg.pretrain.w_coinc == pytest.approx(p["pretrain.w_coinc"])
        assert cfg.pretrain.similarity == p["pretrain.similarity"]
        if p["views"] == "mixture-only":
            assert cfg.augment.kinds == ["mixture"] and cfg.augment.separators == []
        else:
            assert cfg.augment.separators == p["separators"].split("+")
            assert over["augment.separators"] == p["separators"].split("+")  # a value, not a string
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


SET = """
name: s
set:
  name: "sweep #1: quick"                       # '#' and ': ' inside a value stay in it
  data.labels_csv: "/data/run #1: a/labels.csv"
  evaluation.classifiers: [linear]
  pretrain.batch_clips: 16
space:
  views:
    choice:
      separated: {augment.kinds: [mixture, channel, sum], augment.anchor_mixture: false}
      mixture-only: {augment.kinds: [mixture]}
"""


def test_set_and_bundles_are_values(tmp_path):
    spec = load_sweep(write(tmp_path, SET))
    assert spec.set == {"name": "sweep #1: quick", "data.labels_csv": "/data/run #1: a/labels.csv",
                        "evaluation.classifiers": ["linear"], "pretrain.batch_clips": 16}
    assert trial_overrides({"views": "mixture-only"}, spec) == {"augment.kinds": ["mixture"]}
    cfg = trial_config(load_config(), spec, {"views": "mixture-only"})
    assert cfg.name == "sweep #1: quick" and cfg.data.labels_csv == "/data/run #1: a/labels.csv"
    assert cfg.augment.kinds == ["mixture"] and cfg.pretrain.batch_clips == 16
    assert spec_from_dict(spec.to_dict()) == spec  # how the spec travels to the trials


def test_the_older_list_form_is_read_at_the_boundary(tmp_path):
    """'dotted.key=value' strings are parsed once, where the file is read (as --set is)."""
    old = load_sweep(write(tmp_path, """
name: s
set: ["evaluation.classifiers=[linear]", pretrain.batch_clips=16]
space:
  views:
    choice:
      separated: ["augment.kinds=[mixture, channel, sum]", augment.anchor_mixture=false]
      mixture-only: ["augment.kinds=[mixture]"]
"""))
    new = load_sweep(write(tmp_path, SET))
    assert old.set == {"evaluation.classifiers": ["linear"], "pretrain.batch_clips": 16}
    assert old.params == new.params
    with pytest.raises(ConfigError, match=r"set: --set 'pretrain': expected dotted.key=value"):
        load_sweep(write(tmp_path, "name: s\nset: [pretrain]\nspace: {pretrain.lr: {uniform: [0, 1]}}\n"))
    with pytest.raises(ConfigError, match=r"sweep.yaml: set: unknown key 'pretrain.nope'"):
        load_sweep(write(tmp_path, "name: s\nset: {pretrain.nope: 1}\nspace: {pretrain.lr: {uniform: [0, 1]}}\n"))


def test_trials_are_checked_against_the_base_before_anything_trains(tmp_path):
    spec = load_sweep(write(tmp_path, SPACE + "  coinc: {choice: {off: {pretrain.w_coinc: 0}}}\n"))
    check_trials(load_config(), spec)
    base = replace(load_config(), {"pretrain.w_sim": 0.0, "pretrain.w_coinc": 1.0})
    with pytest.raises(ConfigError, match="^sweep s: keys 'pretrain.w_sim' and 'pretrain.w_coinc' are both 0"):
        check_trials(base, spec)  # the bundle 'off' leaves nothing to learn
    small = load_config(None, ["data.synth.num_clips=12", "pretrain.batch_clips=8"])
    with pytest.raises(ConfigError, match="^sweep s: key 'data.synth.num_clips' \\(12\\) is below one training batch"):
        check_trials(small, load_sweep(write(tmp_path, SET)))  # its set asks for batches of 16
