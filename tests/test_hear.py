"""The HEAR 2021 API contract: load_model, get_timestamp_embeddings, get_scene_embeddings."""

import numpy as np
import pytest
import torch

from sslsep import hear
from sslsep.contrastive.encoder import build_encoder, save_encoder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    enc = build_encoder("compact", width=4, embed_dim=24, proj_dim=8, pool="meanmax")
    path = tmp_path_factory.mktemp("hear") / "encoder.pt"
    save_encoder(enc, str(path))
    return str(path), enc.eval()


@pytest.fixture(scope="module")
def model(checkpoint):
    return hear.load_model(checkpoint[0])


def sounds(n, samples, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 0.1, (n, samples)).astype(np.float32))


def test_model_attributes_from_a_saved_checkpoint(model, checkpoint):
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 16000
    assert model.scene_embedding_size == model.timestamp_embedding_size == 24
    for a, b in zip(model.encoder.state_dict().values(), checkpoint[1].state_dict().values()):
        assert torch.equal(a.cpu(), b)  # the checkpoint's weights, not a fresh init
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("n_samples", [1, 100, 399, 1000, 16000, 16000 * 3 + 123])
def test_timestamp_embeddings_contract(model, n_samples):
    audio = sounds(3, n_samples)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    n_frames = model.encoder.num_frames(n_samples)
    assert emb.shape == (3, n_frames, model.timestamp_embedding_size) and emb.dtype == torch.float32
    assert ts.shape == (3, n_frames) and ts.dtype == torch.float32
    assert n_frames >= 1 and torch.isfinite(emb).all()
    assert torch.equal(ts[0], ts[2])
    hops = torch.diff(ts[0])
    assert (hops > 0).all() and (hops <= 50.0 + 1e-4).all()
    assert ts[0, 0] == pytest.approx(15.0)  # centre of mel frames 0..3 at a 10 ms hop
    if n_samples >= 16000:
        # the last frame sits at the end of the sound, within one hop
        assert abs(ts[0, -1].item() - 1000 * n_samples / 16000) <= 50.0


def test_scene_embeddings_contract_and_consistency(model, checkpoint):
    audio = sounds(4, 16000)
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (4, model.scene_embedding_size) and scene.dtype == torch.float32
    with torch.no_grad():
        expected = checkpoint[1].embed(audio)
    torch.testing.assert_close(scene.cpu(), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(scene[0], scene[1])  # different sounds, different embeddings
    short = hear.get_scene_embeddings(sounds(2, 50), model)  # shorter than one STFT window
    assert short.shape == (2, 24) and torch.isfinite(short).all()
    assert hear.get_scene_embeddings(sounds(0, 1000), model).shape == (0, 24)


def test_long_audio_in_chunks_matches_one_pass(checkpoint):
    chunked = hear.load_model(checkpoint[0], chunk_seconds=0.5, context_seconds=0.5, batch_sounds=1)
    whole = hear.load_model(checkpoint[0], chunk_seconds=60.0)
    audio = sounds(2, int(16000 * 3.3), seed=4)
    e1, t1 = hear.get_timestamp_embeddings(audio, chunked)
    e2, t2 = hear.get_timestamp_embeddings(audio, whole)
    assert e1.shape == e2.shape and torch.equal(t1, t2)
    torch.testing.assert_close(e1, e2, atol=1e-4, rtol=1e-4)
    # without context the chunk edges would differ: the test can tell
    bare = hear.load_model(checkpoint[0], chunk_seconds=0.5, context_seconds=0.0)
    e3, _ = hear.get_timestamp_embeddings(audio, bare)
    assert e3.shape == e2.shape and not torch.allclose(e3, e2, atol=1e-4)


def test_empty_path_is_a_seeded_random_encoder_and_bad_input_is_refused():
    a, b = hear.load_model(), hear.load_model("")
    audio = sounds(1, 8000)
    torch.testing.assert_close(hear.get_scene_embeddings(audio, a), hear.get_scene_embeddings(audio, b))
    assert a.scene_embedding_size == 128
    with pytest.raises(ValueError):
        hear.get_scene_embeddings(torch.zeros(1000), a)
