"""The `sslsep` command line and the experiment scripts' run contract, as users run them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sslsep(*args):
    return subprocess.run([sys.executable, "-m", "sslsep.cli", *args], capture_output=True, text=True)


def test_synth_same_seed_gives_identical_files(tmp_path):
    for out in ("a", "b"):
        res = sslsep("data", "synth", str(tmp_path / out), "--num-clips", "4", "--seed", "7",
                     "--set", "audio.clip_seconds=1.0")
        assert res.returncode == 0, res.stderr
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len([f for f in files_a if f.parts[0] == "audio"]) == 4
    for f in files_a:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    other = sslsep("data", "synth", str(tmp_path / "c"), "--num-clips", "4", "--seed", "8",
                   "--set", "audio.clip_seconds=1.0")
    assert other.returncode == 0
    assert (tmp_path / "c" / "labels.csv").read_bytes() != (tmp_path / "a" / "labels.csv").read_bytes()


def test_synth_folder_reads_back_as_a_labelled_source(tmp_path):
    from sslsep.config import load_config
    from sslsep.data.sources import iter_clips
    from sslsep.data.synthetic import generate_scene

    assert sslsep("data", "synth", str(tmp_path), "--num-clips", "3", "--set", "audio.clip_seconds=1.0").returncode == 0
    cfg = load_config(None, ["audio.clip_seconds=1.0"], str(tmp_path / "audio"))
    cfg.data.labels_csv = str(tmp_path / "labels.csv")
    rows = {r["clip_id"]: r for r in iter_clips(cfg.data, cfg.audio)}
    scene = generate_scene(1, seed=0, num_samples=16000)
    row = rows[f"{scene.clip_id}.wav"]
    assert row["labels"] == list(scene.labels) and row["status"] == "ok"
    assert (row["audio"] == scene.audio).all()


def test_check_reports_json(bad_folder):
    root, expected = bad_folder
    res = sslsep("data", "check", str(root), "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["total"] == len(expected) and report["kept"] == 5
    assert report["counts"]["truncated"] == 2 and report["silent"] == ["silent.wav"]


@pytest.mark.parametrize("args, needle", [
    (["config", "show", "--set", "audio.nope=1"], "unknown key 'audio.nope'"),
    (["config", "show", "--set", "audio.n_mels=2"], "key 'audio.n_mels' must be >= 8"),
    (["data", "check", "/no/such/folder"], "/no/such/folder"),
])
def test_errors_are_one_clear_line(args, needle):
    res = sslsep(*args)
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr


def test_config_show_prints_every_default():
    res = sslsep("config", "show", "--set", "audio.sample_rate=22050")
    assert res.returncode == 0 and "sample_rate: 22050" in res.stdout and "n_mels: 64" in res.stdout


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    cmd = "pip install -e '.[test]' && python -m pytest -q tests"
    assert cmd in readme and cmd in ci


@pytest.mark.parametrize("path", ["/tmp/run #1/registry.json", "/data/a: b/registry.json",
                                  "s3://bucket/run #2: x/registry.json"])
def test_registry_flag_sets_the_key_exactly(path):
    """--registry is a value: a '#' is not a YAML comment, ': ' not a mapping; it is
    separation.registry, applied after --config and --set."""
    import argparse

    from sslsep.run import add_registry_arg, add_run_args, config_from_args

    parser = add_registry_arg(add_run_args(argparse.ArgumentParser()))
    args = parser.parse_args(["--registry", path, "--set", "separation.registry=/elsewhere.json"])
    assert config_from_args(args).separation.registry == path
    assert config_from_args(parser.parse_args([])).separation.registry == ""
