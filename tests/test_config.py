import pytest

from sslsep.config import ConfigError, config_hash, dump_yaml, from_dict, load_config, run_name, to_dict


def test_defaults_and_overrides():
    cfg = load_config(None, ["audio.sample_rate=22050", "data.synth.gain_db=[-6, 0]", "name=exp"])
    assert cfg.audio.sample_rate == 22050
    assert cfg.data.synth.gain_db == [-6.0, 0.0]
    assert cfg.audio.num_samples == 4 * 22050
    assert run_name(cfg, "joint").startswith("exp-joint-")


def test_yaml_file_and_roundtrip(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("audio:\n  clip_seconds: 2\ndata:\n  synth:\n    num_clips: 10\n")
    cfg = load_config(p)
    assert cfg.audio.clip_seconds == 2.0 and isinstance(cfg.audio.clip_seconds, float)
    assert cfg.data.synth.num_clips == 10
    again = from_dict(to_dict(cfg))
    assert again == cfg and config_hash(again) == config_hash(cfg)
    assert "num_clips: 10" in dump_yaml(cfg)


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
