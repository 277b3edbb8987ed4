"""Audio encoder: shapes, frame hop, sizes, determinism, short inputs, checkpoint round trip."""

import json

import pytest
import torch

from sslsep.contrastive.encoder import (MAX_FRAME_HOP_S, POOLS, AudioEncoder, build_encoder,
                                        load_encoder, save_encoder)

torch.set_num_threads(1)
SR = 16000


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def resnet():
    return build_encoder("resnet", embed_dim=96, proj_dim=32)


@pytest.mark.parametrize("pool", POOLS)
def test_compact_shapes_for_every_pool(pool):
    m = build_encoder("compact", pool=pool, embed_dim=64, proj_dim=32)
    x = torch.randn(3, SR // 2)
    fr, emb, proj = m.frames(x), m.embed(x), m(x)
    assert fr.shape == (3, m.num_frames(SR // 2), 64)
    assert emb.shape == (3, 64) and proj.shape == (3, 32)
    m.eval()  # same BatchNorm statistics for both calls
    fr = m.frames(x)
    want = {"mean": fr.mean(1), "max": fr.amax(1), "meanmax": fr.mean(1) + fr.amax(1)}[pool]
    assert torch.allclose(m.embed(x), want, atol=1e-6)


def test_resnet_shapes_for_every_pool(resnet):
    x = torch.randn(2, SR // 2)
    fr = resnet.frames(x)
    assert fr.shape == (2, resnet.num_frames(SR // 2), 96)
    assert resnet(x).shape == (2, 32)
    resnet.eval()
    fr = resnet.frames(x)
    for pool in POOLS:  # pooling is the last step: switch it on the one model
        resnet.pool = pool
        assert resnet.embed(x).shape == (2, 96)
    resnet.pool = "meanmax"
    assert torch.allclose(resnet.embed(x), fr.mean(1) + fr.amax(1), atol=1e-5)


@pytest.mark.parametrize("samples", [1, 300, 3200, 8000, 8161, 16000])
def test_frame_hop_and_count(samples):
    m = build_encoder("compact").eval()
    assert m.frame_hop_s == pytest.approx(0.04) and m.frame_hop_s <= MAX_FRAME_HOP_S
    fr = m.frames(torch.randn(2, samples))
    assert fr.shape[1] == m.num_frames(samples)
    if samples >= m.n_fft:  # center=True STFT: T // hop + 1 mel frames, pooled 4x (ceil)
        assert fr.shape[1] == -(-(samples // 160 + 1) // 4)
    # Frames span the clip at the stated hop (within one frame).
    assert abs(fr.shape[1] * m.frame_hop_s - max(samples, m.n_fft) / SR) <= m.frame_hop_s + 0.01


def test_frame_hop_adapts_to_the_mel_hop():
    assert build_encoder(hop_ms=20.0).frame_hop_s == pytest.approx(0.04)  # 2x pooling
    assert build_encoder(hop_ms=40.0).frame_hop_s == pytest.approx(0.04)  # none
    with pytest.raises(ValueError, match="50 ms"):
        build_encoder(hop_ms=60.0)


def test_param_counts_in_the_stated_ranges(resnet):
    compact = build_encoder("compact")
    assert 200_000 <= n_params(compact) <= 500_000
    assert 5_000_000 <= n_params(build_encoder("resnet")) <= 12_000_000
    assert n_params(resnet) > 5_000_000


def test_short_input_works_in_train_and_eval():
    m = build_encoder("compact")
    x = torch.randn(2, int(0.2 * SR))
    assert m(x).shape == (2, 128)  # train mode (batch >= 2 for the head's BatchNorm)
    m.eval()
    assert m.embed(x[:1]).shape == (1, 128)
    assert m.frames(x).shape == (2, 6, 128)  # 21 mel frames -> ceil(21 / 4)


def test_embed_is_deterministic_in_eval_mode():
    m = build_encoder("compact").eval()
    x = torch.randn(4, SR // 4)
    assert torch.equal(m.embed(x), m.embed(x))
    # Batch composition does not leak into eval outputs (BatchNorm uses running stats).
    assert torch.allclose(m.embed(x)[:1], m.embed(x[:1]), atol=1e-5)


def test_trains_one_step():
    m = build_encoder("compact", width=8)
    m(torch.randn(2, SR // 4)).pow(2).mean().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="arch"):
        AudioEncoder(arch="vit")
    with pytest.raises(ValueError, match="pool"):
        AudioEncoder(pool="attention")
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        build_encoder().frames(torch.randn(SR))


def test_save_load_round_trip(tmp_path):
    m = build_encoder("compact", width=16, embed_dim=48, proj_dim=24, pool="max")
    m(torch.randn(4, SR // 4))  # move BatchNorm running stats off their defaults
    m.eval()
    path = tmp_path / "enc.pt"
    save_encoder(m, path, step=7, note="hello")
    back = load_encoder(path)
    assert not back.training and back.config == m.config
    json.dumps(back.config)  # plain, JSON-serialisable kwargs
    x = torch.randn(2, SR // 2)
    assert torch.equal(back.embed(x), m.embed(x))
    assert torch.equal(back.frames(x), m.frames(x))
    assert torch.equal(back(x), m(x))
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["step"] == 7 and ckpt["note"] == "hello" and ckpt["model_args"]["width"] == 16
    with pytest.raises(ValueError, match="reserved"):
        save_encoder(m, path, state_dict={})
