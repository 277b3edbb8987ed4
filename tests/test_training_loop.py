"""The step loop both stages share: schedule, precision, throughput window, resume."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from sslsep.config import load_config, replace, to_dict
from sslsep.run import RunDir
from sslsep.session import LocalSession
from sslsep.training import LoopSettings, lr_factor, run_loop
from sslsep.training.loop import Window
from sslsep.training.schedule import resolve_precision, autocast, grad_scaler


def test_warmup_rises_linearly_then_cosine_reaches_zero():
    f = [lr_factor(s, total=100, warmup=10, schedule="cosine") for s in range(100)]
    np.testing.assert_allclose(f[:10], np.arange(1, 11) / 10)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # decays monotonically after warm-up
    assert f[10] == pytest.approx(1.0) and f[55] == pytest.approx(0.5) and f[-1] < 0.01
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0)  # the curve ends at 0
    assert lr_factor(500, 100, 10, "cosine") == pytest.approx(0.0)  # and stays there past the end
    assert [lr_factor(s, 100, 0, "constant") for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert lr_factor(2, 100, 4, "constant") == pytest.approx(0.75)
    with pytest.raises(ValueError, match="lr schedule"):
        lr_factor(0, 10, 0, "step")


def test_precision_contexts_on_cpu():
    x = torch.randn(4, 8)
    lin = torch.nn.Linear(8, 2)
    with autocast("bf16", torch.device("cpu")):
        assert lin(x).dtype == torch.bfloat16
    with autocast("fp32", torch.device("cpu")):
        assert lin(x).dtype == torch.float32
    assert grad_scaler("fp16", torch.device("cpu")).is_enabled()
    assert not grad_scaler("bf16", torch.device("cpu")).is_enabled()


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    from sslsep.training import schedule

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("fp16", cpu) == "fp16"
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert schedule.native_bf16(cpu) == native
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")  # oneDNN capped below bf16: a CPU without it
    assert not schedule.native_bf16(cpu) and resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # a cap above bf16 changes nothing
    assert schedule.native_bf16(cpu) == native
    monkeypatch.setattr(schedule, "native_bf16", lambda device: False)
    assert schedule.resolve_precision("auto", cpu) == "fp32"


def test_window_defines_throughput_once():
    w = Window()
    w.add({"loss": 1.0, "off": math.nan}, samples=8, wait_s=0.25, compute_s=0.75)
    w.add({"loss": 3.0, "off": math.nan}, samples=8, wait_s=0.25, compute_s=0.75)
    out = w.summary(world_size=2)
    assert out["loss"] == 2.0 and math.isnan(out["off"])
    assert out["steps_per_s"] == 1.0 and out["samples_per_s"] == 16.0 and out["data_wait_share"] == 0.25


def _regression_batches(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 1, generator=g)
    x = torch.randn(n, 6, generator=g)
    return [{"x": x[i:i + 8], "y": x[i:i + 8] @ w} for i in range(0, n, 8)]


def _fit(tmp_path, settings, batches):
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr)
    saved = []

    def step(m, b):
        loss = torch.nn.functional.mse_loss(m(b["x"]).float(), b["y"])
        return loss, {"mse": float(loss.detach())}

    run = RunDir(str(tmp_path))
    session = LocalSession(lambda: iter(batches), run.uri("state.pt"))
    run_loop(session, settings, model, opt, step, run=run, save=lambda c, s, m, d: saved.append((s, d)))
    return [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()], saved


def test_loop_follows_the_schedule_keeps_steps_and_resumes(tmp_path):
    s = LoopSettings(stage="toy", steps=12, report_every=4, keep_steps=(6,), lr=0.1, lr_schedule="cosine",
                     warmup_steps=4, grad_clip=1.0)
    short = dataclasses.replace(s, steps=8)  # interrupted at step 8 ...
    lines, saved = _fit(tmp_path, short, _regression_batches())
    lines2, saved2 = _fit(tmp_path, s, _regression_batches())  # ... and continued to 12
    steps = [m["step"] for m in lines2]
    assert steps == [4, 6, 8, 12]  # the 8-step run reported 4, 6, 8; the continuation only 12
    assert saved == [(6, False), (8, True)] and saved2 == [(12, True)]
    lrs = {m["step"]: m["lr"] for m in lines2}
    # the lr of the last step of each window follows one curve across the restart
    assert lrs[4] == pytest.approx(0.1) and lrs[12] == pytest.approx(0.1 * lr_factor(11, 12, 4, "cosine"))
    assert lines2[-1]["final"] is True and lines2[-1]["stopped_by"] == "steps"
    assert lines2[-1]["mse"] < lines2[0]["mse"]


def test_wall_clock_guard_is_reported(tmp_path):
    s = LoopSettings(stage="toy", steps=10_000, report_every=1000, lr=0.01, max_minutes=1e-9)
    lines, saved = _fit(tmp_path, s, _regression_batches())
    assert lines[-1]["step"] == 1 and lines[-1]["stopped_by"] == "max_minutes" and saved == [(1, True)]


def test_empty_data_is_an_error_naming_it(tmp_path):
    s = LoopSettings(stage="toy", steps=2, report_every=1, lr=0.01)
    run = RunDir(str(tmp_path))
    with pytest.raises(ValueError, match="nothing here"):
        run_loop(LocalSession(lambda: iter([]), run.uri("s.pt")), s, torch.nn.Linear(2, 1),
                 torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1), lambda m, b: None, run=run,
                 save=lambda *a: None, no_batch="nothing here")


def _lines(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


SCHEDULE = ["lr_schedule=cosine", "warmup_steps=3", "precision=bf16"]


def test_separation_trains_in_bf16_with_warmup_and_cosine(tmp_path):
    from sslsep.separation.train import train_loop

    cfg = load_config(None, ["audio.clip_seconds=0.5", "data.synth.num_clips=96", "separation.batch_clips=8",
                             "separation.val_clips=4", "separation.val_every=4", "separation.steps=12",
                             "separation.checkpoint_steps=[12]", "separation.lr=3e-3", "separation.use_ray=false",
                             *[f"separation.{x}" for x in SCHEDULE]])
    train_loop({"cfg": to_dict(cfg), "run_dir": str(tmp_path), "local": True})
    m = _lines(tmp_path)
    assert [x["step"] for x in m] == [4, 8, 12]
    losses = [x["train_mixit_loss"] for x in m]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert m[0]["lr"] == pytest.approx(3e-3) and m[-1]["lr"] < 3e-4  # warmed up, then decayed
    assert {"steps_per_s", "samples_per_s", "data_wait_share"} <= set(m[-1])


def test_pretraining_trains_in_bf16_with_warmup_and_cosine(tmp_path, registry):
    from sslsep.contrastive.train import train_loop

    cfg = load_config(None, ["audio.clip_seconds=0.5", "data.synth.num_clips=64", "augment.crop_seconds=0.25",
                             "augment.batch_size=8", "pretrain.batch_clips=8", "pretrain.log_every=4",
                             "pretrain.steps=16", "pretrain.lr=3e-3", "pretrain.use_ray=false",
                             *[f"pretrain.{x}" for x in SCHEDULE]])
    cfg = replace(cfg, {"separation.registry": registry})
    train_loop({"cfg": to_dict(cfg), "run_dir": str(tmp_path), "local": True})
    m = _lines(tmp_path)
    assert [x["step"] for x in m] == [4, 8, 12, 16]
    totals = [x["total"] for x in m]
    assert all(np.isfinite(totals)) and totals[-1] < totals[0], totals
    assert m[-1]["lr"] < 3e-4 and {"steps_per_s", "samples_per_s", "data_wait_share"} <= set(m[-1])
