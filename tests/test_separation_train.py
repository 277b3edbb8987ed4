"""MixIT training: convergence states, registry, resume, real-data split, Ray Train path."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from sslsep.config import load_config
from sslsep.run import RunDir
from sslsep.separation import load_separator
from sslsep.separation.registry import read_registry, select
from sslsep.separation.train import remix, train_loop, train_separators
from sslsep.config import to_dict

TINY = ["audio.clip_seconds=0.5", "data.synth.num_clips=16", "separation.batch_clips=4", "pretrain.batch_clips=4",
        "separation.val_clips=6", "separation.val_every=2", "separation.checkpoint_steps=[2,4]",
        "separation.steps=5", "separation.use_ray=false"]


def test_local_training_keeps_every_convergence_state(tmp_path):
    cfg = load_config(None, TINY)
    reg = train_separators(cfg, RunDir(str(tmp_path)))
    assert [e["step"] for e in reg["separators"]] == [2, 4, 5]
    assert reg["separators"][-1]["metrics"]["final"] is True
    x = torch.randn(2, 8000)
    outs = []
    for e in reg["separators"]:
        model = load_separator(e["uri"])
        y = model(x)  # (B, M, T)
        assert y.shape == (2, 4, 8000)
        torch.testing.assert_close(y.sum(1), x, atol=1e-4, rtol=0)  # mixture consistency
        m = e["metrics"]
        for key in ("val_mixit_loss", "val_mom_si_snri", "val_si_snri", "val_ss_best_si_snr"):
            assert np.isfinite(m[key]), key
        outs.append(y)
    assert not torch.allclose(outs[0], outs[-1])  # distinct states, not copies
    ckpt = torch.load(reg["separators"][0]["uri"], weights_only=True)
    assert ckpt["step"] == 2 and ckpt["config"]["separation"]["steps"] == 5
    assert [e["name"] for e in select(reg, [4, "step-000005"])] == ["step-000004", "step-000005"]
    with pytest.raises(KeyError, match="no separator 'step-000003'"):
        select(reg, ["step-000003"])
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == [2, 4, 5]
    # TensorBoard's Audio tab: each state's separation of two validation clips, every channel
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path), size_guidance={"audio": 0})
    acc.Reload()
    tags = set(acc.Tags()["audio"])
    names = ["mixture"] + [f"channel{c}" for c in range(4)]
    assert tags == {f"separation/clip{i}/{x}" for i in range(2) for x in names}
    assert [e.step for e in acc.Audio("separation/clip1/channel3")] == [2, 4, 5]
    assert acc.Audio("separation/clip0/mixture")[0].length_frames == 8000
    # a finished run is reused, not retrained
    again = train_separators(cfg, RunDir(str(tmp_path)))
    assert again["separators"] == reg["separators"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def test_interrupted_training_resumes_from_its_state(tmp_path):
    cfg = load_config(None, TINY + ["separation.steps=4"])
    config = {"cfg": to_dict(cfg), "run_dir": str(tmp_path), "local": True}
    train_loop(config)
    cfg.separation.steps = 6  # the same run, continued: as after a crash at step 4
    train_loop({**config, "cfg": to_dict(cfg)})
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]  # 5 and 6 follow 4; nothing restarts at 1


def test_missing_checkpoint_in_registry_is_a_clear_error(tmp_path):
    cfg = load_config(None, TINY + ["separation.steps=2", "separation.checkpoint_steps=[2]"])
    train_separators(cfg, RunDir(str(tmp_path)))
    (tmp_path / "separators" / "step-000002.pt").unlink()
    with pytest.raises(FileNotFoundError, match="'step-000002' points at missing checkpoint"):
        read_registry(str(tmp_path / "registry.json"))


def test_real_folder_with_silent_and_short_clips_trains_without_nan(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        n = 3000 if i % 4 == 0 else 8000  # some clips shorter than the segment: padded
        x = (0.1 * rng.standard_normal(n)).astype(np.float32) if i % 5 else np.zeros(n, np.float32)
        sf.write(root / f"clip{i:02d}.wav", x, 16000)
    (root / "labels.csv").write_text("path,labels,group\n" + "".join(
        f"clip{i:02d}.wav,noise,rec{i // 2}\n" for i in range(16)))
    cfg = load_config(None, TINY + ["separation.val_fraction=0.5", "separation.steps=3"], str(root))
    reg = train_separators(cfg, RunDir(str(tmp_path / "run")))
    m = reg["separators"][-1]["metrics"]
    assert np.isfinite(m["train_mixit_loss"]) and np.isfinite(m["val_mixit_loss"])
    assert "val_si_snri" not in m  # no stems in real data: only mixture-of-mixtures metrics


def test_remix_sums_outputs_by_assignment():
    est = torch.arange(12.0).view(1, 3, 4)  # (B, M, T)
    out = remix(est, torch.tensor([[1, 0, 1]]))
    torch.testing.assert_close(out[0, 0], est[0, 1])
    torch.testing.assert_close(out[0, 1], est[0, 0] + est[0, 2])


@pytest.mark.ray
def test_ray_train_path_on_two_ddp_workers_writes_states_and_resumes(ray_session, tmp_path):
    """Separation on Ray Train with two DDP workers, without a restart (no failures.json); a
    longer schedule on the same run directory resumes from the latest checkpoint."""
    cfg = load_config(None, [*TINY[:-1], "data.synth.num_clips=24", "separation.steps=4",
                             "separation.checkpoint_steps=[2]", "separation.num_workers=2",
                             "separation.cpus_per_worker=0.5"])
    run = RunDir(str(tmp_path))
    reg = train_separators(cfg, run)
    assert [e["step"] for e in reg["separators"]] == [2, 4]
    assert (tmp_path / "ray_train" / "separator" / "checkpoint_manager_snapshot.json").exists()
    assert not (tmp_path / "failures.json").exists()  # no worker group was restarted
    # a longer schedule on the same run directory restarts from Ray Train's latest checkpoint
    cfg.separation.steps = 6
    reg = train_separators(cfg, run)
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6] and [e["step"] for e in reg["separators"]] == [2, 4, 6]


@pytest.mark.ray
def test_run_directory_on_s3(ray_session, s3_server):
    """Ray Train storage, convergence states and the registry on a real S3 API server;
    separators load straight from s3://."""
    run_dir = f"{s3_server}/runs/sep-s3"
    cfg = load_config(None, [*TINY[:-1], "separation.steps=2", "separation.checkpoint_steps=[1]"])
    reg = train_separators(cfg, RunDir(run_dir))
    assert [e["step"] for e in reg["separators"]] == [1, 2]
    again = read_registry(f"{run_dir}/registry.json")
    model = load_separator(again["separators"][-1]["uri"])
    assert model(torch.randn(1, 8000)).shape == (1, 4, 8000)
    from sslsep import storage

    fs, path = storage.get_fs(f"{run_dir}/ray_train/separator")
    assert any("checkpoint_" in p for p in fs.ls(path))
