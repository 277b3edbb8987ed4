"""Separator model: components, shapes, mixture consistency, checkpoints, sizes, training."""

import json

import pytest
import torch

from sslsep.separation.mixit import mixit_loss, mixture_of_mixtures
from sslsep.separation.model import (SIZES, LearnedFrontEnd, STFTFrontEnd, Separator,
                                     TDCNppMasker, build_separator, load_checkpoint,
                                     load_separator, save_separator)

TINY = dict(n_basis=16, bottleneck=16, conv_channels=24, n_dilations=2, n_repeats=2, n_sources=3)


def tiny(**kw):
    return Separator(**{**TINY, "window_ms": 2.5, **kw})


@pytest.mark.parametrize("front_end,window_ms,hop_ms", [("learned", 2.5, None), ("stft", 16.0, 4.0)])
@pytest.mark.parametrize("mask_activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize("consistency", ["uniform", "learned", "none"])
def test_shapes_and_consistency(front_end, window_ms, hop_ms, mask_activation, consistency):
    torch.manual_seed(0)
    model = tiny(front_end=front_end, window_ms=window_ms, hop_ms=hop_ms,
                 mask_activation=mask_activation, consistency=consistency)
    x = torch.randn(2, 1237)  # odd length
    y = model(x)
    assert y.shape == (2, 3, 1237) and torch.isfinite(y).all()
    if consistency != "none":
        torch.testing.assert_close(y.sum(1), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", ["gln", "cln"])
@pytest.mark.parametrize("features", ["mag", "complex"])
def test_norms_and_stft_features(norm, features):
    model = tiny(front_end="stft", window_ms=16.0, stft_features=features, norm=norm)
    for T in (255, 256, 3001):
        assert model(torch.randn(1, T)).shape == (1, 3, T)


def test_inputs_shorter_than_a_window():
    for size in SIZES:
        model = build_separator(size).eval()
        with torch.no_grad():
            assert model(torch.randn(2, 100)).shape == (2, model.n_sources, 100)


def test_learned_front_end_alone():
    fe = LearnedFrontEnd(n_basis=8, win=40)
    x = torch.randn(2, 333)
    feats, rep, length = fe.encode(x)
    assert feats.shape[:2] == (2, 8) and (feats >= 0).all() and length == 333
    assert fe.decode(rep.unsqueeze(1).expand(2, 3, -1, -1), length).shape == (2, 3, 333)


def test_stft_front_end_unit_mask_reconstructs():
    fe = STFTFrontEnd(win=256, hop=64)
    x = torch.randn(2, 1000)
    feats, spec, length = fe.encode(x)
    assert feats.shape == (2, 129, spec.shape[-1])
    y = fe.decode(spec.unsqueeze(1), length)  # (B, 1, T)
    torch.testing.assert_close(y[:, 0], x, atol=1e-5, rtol=0)


def test_masker_alone_softmax_sums_to_one():
    masker = TDCNppMasker(in_channels=10, mask_channels=6, n_sources=4, bottleneck=8,
                          conv_channels=12, kernel_size=3, n_dilations=3, n_repeats=2,
                          norm="gln", mask_activation="softmax")
    masks, pooled = masker(torch.randn(2, 10, 37))
    assert masks.shape == (2, 4, 6, 37) and pooled.shape == (2, 8)
    torch.testing.assert_close(masks.sum(1), torch.ones(2, 6, 37))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = tiny(consistency="learned").eval()
    path = tmp_path / "sep.pt"
    save_separator(model, str(path), step=7, metrics={"sisnri": 3.5}, config={"name": "x"})
    loaded = load_separator(str(path))
    assert not loaded.training and loaded.config == model.config
    x = torch.randn(2, 800)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    ckpt = load_checkpoint(str(path))
    assert ckpt["step"] == 7 and ckpt["metrics"]["sisnri"] == 3.5
    with pytest.raises(ValueError):
        save_separator(model, str(path), state_dict={})


def test_config_is_json_and_sizes():
    for size in SIZES:
        model = build_separator(size)
        assert json.loads(json.dumps(model.config)) == model.config
    assert build_separator("quick", n_sources=8).n_sources == 8
    with pytest.raises(ValueError):
        build_separator("huge")


def test_paper_size_runs_short_input():
    model = build_separator("paper").eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert 5e6 < n_params < 2e7, n_params  # ~9.4M with 256/512 TDCN++ x 32 blocks
    assert model.front.win == 40 and model.front.hop == 20
    with torch.no_grad():
        y = model(torch.randn(1, 1600))
    assert y.shape == (1, 8, 1600)


def test_adam_steps_reduce_mixit_loss():
    torch.manual_seed(0)
    t = torch.arange(4000) / 16000
    freqs = torch.tensor([220.0, 1300.0, 470.0, 3100.0]).unsqueeze(1)
    clips = 0.1 * torch.sin(2 * torch.pi * freqs * t)  # 4 clips -> 2 MoMs
    clips[1] += 0.05 * torch.randn(4000)
    mom, mixtures = mixture_of_mixtures(clips)
    model = tiny(front_end="stft", window_ms=16.0, n_sources=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss, _ = mixit_loss(model(mom), mixtures)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(loss.mean().item())
    assert losses[-1] < losses[0] - 1.0, losses
