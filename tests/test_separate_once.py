"""Separate once, view many: the augmenter in process runs only the separator work its views
draw on, keeps bad separator output away from the trainer, and stops on a broken separator."""

import os
import shutil

import numpy as np
import pytest
import torch

from sslsep.checkpoint import load_module
from sslsep.config import load_config, replace, to_dict
from sslsep.data.sources import iter_clips
from sslsep.run import RunDir
from sslsep.separation.model import Separator
from sslsep.separation.train import _save_state_file
from sslsep.views.service import SeparationAugmenter, SeparatorFailure, separator_names, view_rng
from sslsep.views.builders import draw_views

BASE = ["audio.clip_seconds=0.5", "data.synth.num_clips=64", "augment.crop_seconds=0.125",
        "augment.context_seconds=0.0625", "augment.views_per_clip=3"]


def augmenter(registry, *sets):
    cfg = replace(load_config(None, [*BASE, *sets]), {"separation.registry": registry}, origin="test")
    return SeparationAugmenter(registry, to_dict(cfg)), cfg


def batch_of(cfg, n=16, epoch=0):
    rows = [r for _, r in zip(range(n), iter_clips(cfg.data, cfg.audio))]
    return {"clip_id": np.array([r["clip_id"] for r in rows]), "epoch": np.full(n, epoch),
            "audio": np.stack([r["audio"] for r in rows])}


def test_only_the_drawn_separators_run_and_only_on_the_drawn_spans(registry):
    aug, cfg = augmenter(registry)
    batch = batch_of(cfg)
    out = aug(batch)
    assert out["views"].shape == (16, 3, 2000) and np.isfinite(out["views"]).all()
    T = batch["audio"].shape[1]
    draws = [draw_views(view_rng(cfg.seed, 0, c), 3, cfg.augment.kinds, aug.names, T, 2000)
             for c in batch["clip_id"]]
    span_s, clip_s = 4000 / 16000, T / 16000  # crop 0.125 s + 0.0625 s of context each side; the clip
    for n in aug.names:
        per_clip = [sum(d.separator == n for d in ds) for ds in draws]
        # one span per view, or the whole clip once where its spans would add up to the clip
        expected = sum(clip_s if k * span_s >= clip_s else k * span_s for k in per_clip)
        assert aug.counts[n]["separated_s"] == pytest.approx(expected)
        assert aug.counts[n]["calls"] == len({k * span_s >= clip_s for k in per_clip if k})  # batched: <= 2
    every_on_whole_clips = len(aug.names) * 16 * T / 16000
    # 3 views, 2 of 3 drawn from one of 2 separators, spans of half the clip: ~0.7 of the old work
    assert sum(c["separated_s"] for c in aug.counts.values()) < 0.85 * every_on_whole_clips
    # mixture draws cost nothing: their views are the mixture's crops, untouched
    for i, ds in enumerate(draws):
        for v, d in enumerate(ds):
            if d.kind == "mixture":
                np.testing.assert_array_equal(out["views"][i, v], batch["audio"][i, d.offset:d.offset + 2000])


def test_epoch_gives_new_views_and_mixture_only_runs_no_separator(registry):
    aug, cfg = augmenter(registry)
    a, b = aug(batch_of(cfg, epoch=0)), aug(batch_of(cfg, epoch=1))
    assert not np.array_equal(a["views"], b["views"]) and (b["epoch"] == 1).all()
    np.testing.assert_array_equal(aug(batch_of(cfg, epoch=0))["views"], a["views"])
    mix, _ = augmenter(registry, "augment.kinds=[mixture]")
    out = mix(batch_of(cfg))
    assert mix.models == {} and "fallbacks" not in out and set(out["view_kind"][0]) == {"mixture"}


def test_bf16_separators_give_fp32_views_close_to_fp32(registry):
    fp32, cfg = augmenter(registry)
    bf16, _ = augmenter(registry, "augment.precision=bf16")
    a, b = fp32(batch_of(cfg)), bf16(batch_of(cfg))
    assert b["views"].dtype == np.float32 and np.isfinite(b["views"]).all()
    err = np.abs(a["views"] - b["views"]).mean() / np.abs(a["views"]).mean()
    assert err < 0.1


@pytest.fixture
def broken_registry(registry, tmp_path):
    """The two test separators plus a diverged one (every weight NaN) at step 3."""
    folder = tmp_path / "reg"
    shutil.copytree(os.path.dirname(registry), folder)
    model = load_module(Separator, str(folder / "separators" / "step-000002.pt"))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    cfg = load_config(None, ["audio.clip_seconds=0.5"])
    _save_state_file(model, RunDir(str(folder)), 3, {}, cfg)
    return str(folder / "registry.json")


def test_bad_separator_output_falls_back_to_the_mixture_and_is_counted(broken_registry):
    aug, cfg = augmenter(broken_registry)
    assert separator_names(cfg) == ["step-000001", "step-000002", "step-000003"] == aug.names
    out = aug(batch_of(cfg))
    assert np.isfinite(out["views"]).all()
    bad = aug.counts["step-000003"]["bad"]
    assert bad == aug.counts["step-000003"]["views"] > 0
    assert aug.counts["step-000001"]["bad"] == aug.counts["step-000002"]["bad"] == 0
    assert out["fallbacks"].shape == (16, 3) and out["fallbacks"][:, 2].sum() == bad
    assert out["fallbacks"][:, :2].sum() == 0
    named = [(f, k, s) for fs, ks, ss in zip(out["view_fallback"], out["view_kind"], out["view_separator"])
             for f, k, s in zip(fs, ks, ss) if f]
    assert len(named) == bad and all(f == "step-000003" and k == "mixture" and s == "" for f, k, s in named)


def test_a_separator_bad_on_most_views_stops_the_job_naming_it(broken_registry):
    aug, cfg = augmenter(broken_registry, "augment.separators=[step-000003]")
    with pytest.raises(SeparatorFailure, match=r"separator 'step-000003' \(.*step-000003.pt\) gave non-finite"):
        for epoch in range(10):
            aug(batch_of(cfg, epoch=epoch))
    assert aug.counts["step-000003"]["views"] == 32


def test_mix_back_and_gain_change_views_reproducibly():
    """Mixture-only views (no separator) with mix-back and gain: every view differs from its plain
    mixture crop by another clip of the batch and a level change, and the same batch gives the same views."""
    plain, cfg = augmenter("", "augment.kinds=[mixture]", "augment.views_per_clip=2")
    batch = batch_of(cfg, n=8)
    base = plain(batch)["views"]  # (B, V, crop)
    aug, _ = augmenter("", "augment.kinds=[mixture]", "augment.views_per_clip=2", "augment.mix_prob=1.0",
                       "augment.gain_db=[-6, 6]")
    out = aug(batch)["views"]
    assert out.shape == base.shape and np.isfinite(out).all()
    assert not np.allclose(out, base)
    assert np.array_equal(out, aug(batch)["views"])
    level = 10 * np.log10((out ** 2).mean(-1) / (base ** 2).mean(-1))  # (B, V) dB: gain + a little mix-back
    assert (level > -6.5).all() and (level < 6.5).all()
