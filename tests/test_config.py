import re
from pathlib import Path

import pytest

from sslsep.config import (PATH_KEYS, ConfigError, config_hash, dump_yaml, from_dict, load_config, replace,
                           run_name, to_dict)


def test_defaults_and_overrides():
    cfg = load_config(None, ["audio.sample_rate=22050", "data.synth.gain_db=[-6, 0]", "name=exp"])
    assert cfg.audio.sample_rate == 22050
    assert cfg.data.synth.gain_db == [-6.0, 0.0]
    assert cfg.audio.num_samples == 4 * 22050
    assert run_name(cfg, "joint").startswith("exp-joint-")


def test_yaml_file_and_roundtrip(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("audio:\n  clip_seconds: 2\ndata:\n  synth:\n    num_clips: 40\n")
    cfg = load_config(p)
    assert cfg.audio.clip_seconds == 2.0 and isinstance(cfg.audio.clip_seconds, float)
    assert cfg.data.synth.num_clips == 40
    again = from_dict(to_dict(cfg))
    assert again == cfg and config_hash(again) == config_hash(cfg)
    assert "num_clips: 40" in dump_yaml(cfg)


def test_hash_changes_with_config():
    assert config_hash(load_config()) == config_hash(load_config())
    assert config_hash(load_config()) != config_hash(load_config(None, ["seed=1"]))


@pytest.mark.parametrize("text, needle", [
    ("audio:\n  sample_rat: 16000\n", "unknown key 'audio.sample_rat'"),
    ("audio:\n  sample_rate: fast\n", "key 'audio.sample_rate' expects an integer"),
    ("audio:\n  sample_rate: 100\n", "key 'audio.sample_rate' must be >= 4000"),
    ("audio:\n  crop: middle\n", "key 'audio.crop' must be one of"),
    ("audio: 3\n", "key 'audio' expects a mapping"),
    ("data:\n  synth:\n    min_events: 3\n    max_events: 2\n", "'data.synth.min_events'"),
    ("seed: true\n", "key 'seed' expects an integer"),
    ("audio: [1\n", "not valid YAML"),
    ("audio:\n  clip_seconds: .nan\n", "key 'audio.clip_seconds' expects a finite number, got nan"),
    ("pretrain:\n  lr: .inf\n", "key 'pretrain.lr' expects a finite number, got inf"),
    ("data:\n  synth:\n    gain_db: [.nan, 0]\n", "key 'data.synth.gain_db[0]' expects a finite number"),
    ("pretrain:\n  lr: 1" + "0" * 400 + "\n", "key 'pretrain.lr' expects a finite number"),  # past float range
    # a key that moved
    ("augment:\n  registry: /r/registry.json\n", "key 'augment.registry' moved to 'separation.registry'"),
    # rules that relate keys: refused at load, not after a stage has run
    ("data:\n  synth:\n    num_clips: 10\n",
     "key 'data.synth.num_clips' (10) is below one training batch, 'pretrain.batch_clips' (32)"),
    ("data:\n  synth:\n    num_clips: 40\nseparation:\n  num_workers: 8\npretrain:\n  batch_clips: 4\n",
     "'separation.batch_clips' (8) x 'separation.num_workers' (8): no training batch"),
    ("data:\n  source: parquet\n", "key 'data.source' is 'parquet' but 'data.path' is empty"),
    ("audio:\n  hop_ms: 60\n  win_ms: 100\n", "key 'audio.hop_ms' (60.0) makes a 60 ms mel hop"),
    ("audio:\n  f_min: 7900\n", "key 'audio.f_min' (7900.0) must be below 'audio.f_max' (7800.0)"),
    ("audio:\n  sample_rate: 8000\n  f_min: 4000\n", "and half 'audio.sample_rate' (4000)"),
    ("evaluation:\n  classifiers: [linear, svm]\n", "key 'evaluation.classifiers' must be one of ['linear', 'mlp']"),
    ("evaluation:\n  classifiers: []\n", "key 'evaluation.classifiers' is empty"),
    ("evaluation:\n  min_actors: 3\n  max_actors: 2\n",
     "key 'evaluation.min_actors' (3) exceeds 'evaluation.max_actors' (2)"),
    ("evaluation:\n  train_csv: t.csv\n", "key 'evaluation.train_csv' is set but 'evaluation.eval_csv' is not"),
    ("evaluation:\n  protocol: audioset\n",
     "key 'evaluation.protocol' is 'audioset', which needs 'evaluation.train_csv' and 'evaluation.eval_csv'"),
    ("evaluation:\n  train_csv: t.csv\n  eval_csv: e.csv\n  train_path: /a\n",
     "the audioset protocol needs 'evaluation.eval_path' or 'data.path'"),
    ("evaluation:\n  synth_seed: 5\ndata:\n  synth:\n    seed: 6\n",
     "key 'evaluation.synth_seed' (5) makes evaluation scenes from seed 6"),
    ("evaluation:\n  synth_seed: 1000003\n", "from seed 1000003, which pretraining uses"),  # separation validation
    ("evaluation:\n  synth_train_clips: 1\n", "key 'evaluation.synth_train_clips' must be >= 2"),
])
def test_bad_file_names_key_and_file(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_bad_override_names_it():
    with pytest.raises(ConfigError, match=r"--set data.nope=1: unknown key 'data.nope'"):
        load_config(None, ["data.nope=1"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(None, ["audio.sample_rate"])
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config("/nonexistent/config.yaml")


def test_data_flag_sets_path():
    cfg = load_config(None, ["data.source=synthetic"], data="/some/folder")
    assert cfg.data.path == "/some/folder" and cfg.data.source == "auto"


def test_scientific_notation_is_a_number(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("pretrain:\n  lr: 3e-4\n")
    assert load_config(p).pretrain.lr == 3e-4
    assert load_config(None, ["pretrain.lr=1e-3", "seed=7"]).pretrain.lr == 1e-3


def test_cross_key_rules_see_the_whole_config(tmp_path):
    """A file may rely on --set to complete it: the rules run once, on the resolved config,
    and their errors name the file and the --set."""
    p = tmp_path / "small.yaml"
    p.write_text("data:\n  synth:\n    num_clips: 10\n")
    cfg = load_config(p, ["pretrain.batch_clips=4", "separation.batch_clips=4"])
    assert cfg.data.synth.num_clips == 10
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))} \+ --set: key 'data.synth.num_clips' \(10\)"):
        load_config(p, ["separation.batch_clips=4"])
    # a folder source holds no known clip count: no batch rule
    assert load_config(p, data=str(tmp_path)).data.path == str(tmp_path)


ODD_PATHS = ["/tmp/run #1/registry.json", "/data/a: b/registry.json", "s3://bucket/run #2: x/registry.json"]


@pytest.mark.parametrize("path", ODD_PATHS)
def test_replace_sets_values_exactly(path):
    """No YAML on the way: a '#' is not a comment, ': ' is not a mapping."""
    cfg = load_config()
    out = replace(cfg, {"separation.registry": path}, origin="test")
    assert out.separation.registry == path
    assert cfg.separation.registry == ""  # the original is left as it was
    assert replace(out, {"name": "run #1: a"}).name == "run #1: a"


def test_replace_is_as_strict_as_a_file(tmp_path, monkeypatch):
    cfg = load_config()
    out = replace(cfg, {"augment.kinds": ["channel"], "augment.anchor_mixture": True, "pretrain.lr": 3})
    assert out.augment.kinds == ["channel"] and out.pretrain.lr == 3.0 and isinstance(out.pretrain.lr, float)
    with pytest.raises(ConfigError, match="^control x: key 'audio.sample_rate' expects an integer, got '16000'"):
        replace(cfg, {"audio.sample_rate": "16000"}, origin="control x")  # a string is never parsed
    with pytest.raises(ConfigError, match="^t: unknown key 'audio.nope'"):
        replace(cfg, {"audio.nope": 1}, origin="t")
    with pytest.raises(ConfigError, match="^t: key 'augment.registry' moved to 'separation.registry'"):
        replace(cfg, {"augment.registry": "/r.json"}, origin="t")
    with pytest.raises(ConfigError, match="^t: keys 'pretrain.w_sim' and 'pretrain.w_coinc' are both 0"):
        replace(cfg, {"pretrain.w_sim": 0, "pretrain.w_coinc": 0}, origin="t")
    with pytest.raises(ConfigError, match="is not a dotted config key"):
        replace(cfg, {"audio..rate": 1}, origin="t")
    # values apply in order and the rules see the result: each alone would be refused
    small = replace(cfg, {"data.synth.num_clips": 8, "pretrain.batch_clips": 8})
    assert small.data.synth.num_clips == 8
    monkeypatch.chdir(tmp_path)  # a local path becomes absolute, as load_config makes it
    assert replace(cfg, {"separation.registry": "run #1/registry.json"}).separation.registry == \
        str(tmp_path.resolve() / "run #1" / "registry.json")


def test_path_keys_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["evaluation.train_path=a", "evaluation.train_csv=a.csv", "evaluation.eval_path=b",
                             "evaluation.eval_csv=b.csv", "separation.registry=r/registry.json"])
    for key in PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        assert not value or Path(value).is_absolute(), key
    assert cfg.evaluation.eval_csv == str(tmp_path.resolve() / "b.csv")


def test_a_local_cluster_keeps_idle_workers_for_a_minute_unless_told_not_to():
    from sslsep.cluster import local_options

    cfg = load_config(None, ["ray.num_cpus=2"])
    assert local_options(cfg.ray) == {"num_cpus": 2,
                                      "_system_config": {"idle_worker_killing_time_threshold_ms": 60000}}
    assert "_system_config" not in local_options(load_config(None, ["ray.idle_worker_keep_s=0"]).ray)
