"""HEAR 2021 API (https://hearbenchmark.com/hear-api.html) for sslsep encoders.

    model = load_model("runs/pre/encoder.pt")              # a torch.nn.Module
    emb, ts = get_timestamp_embeddings(audio, model)      # (n_sounds, n_frames, D), (n_sounds, n_frames) ms
    scene = get_scene_embeddings(audio, model)            # (n_sounds, D)

``audio`` is a float32 tensor (n_sounds, n_samples) at ``model.sample_rate``. Timestamps are
frame centres in milliseconds, ``frame_hop_s`` apart (40 ms for the 10 ms log-mel hop; HEAR
asks for at most 50 ms). Frame ``i`` pools log-mel frames ``[i 2^k, (i + 1) 2^k)`` (see
``AudioEncoder``), whose centres average to ``(i 2^k + (2^k - 1) / 2) * mel hop``.

Long sounds are cut into chunks of ``chunk_seconds`` (a multiple of the frame hop), each run
with ``context_seconds`` of the neighbouring audio on both sides and only its own frames kept:
the result matches one pass over the whole sound (the convolutions see the same input; the
encoder's batch norms run on stored statistics) at a bounded memory cost. The scene
embedding pools all frames with the encoder's own pooling, so for a sound that fits in one
chunk it is exactly ``encoder.embed(audio)``. Everything runs on the model's device, no grad.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sslsep.contrastive.encoder import AudioEncoder, build_encoder, load_encoder

DEFAULT_SEED = 0


class HearModel(nn.Module):
    """A frozen AudioEncoder with the attributes HEAR requires."""

    def __init__(self, encoder: AudioEncoder, chunk_seconds: float = 20.0, context_seconds: float = 2.0,
                 batch_sounds: int = 16):
        super().__init__()
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.sample_rate = int(encoder.config["sample_rate"])
        self.scene_embedding_size = int(encoder.embed_dim)
        self.timestamp_embedding_size = int(encoder.embed_dim)
        self.mel_per_frame = 2 ** encoder.time_pools
        self.frame_samples = encoder.hop_samples * self.mel_per_frame  # audio samples per frame hop
        self.chunk_samples = self.frame_samples * max(1, round(chunk_seconds * self.sample_rate / self.frame_samples))
        self.context_samples = self.frame_samples * math.ceil(context_seconds * self.sample_rate / self.frame_samples)
        self.batch_sounds = batch_sounds

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def timestamps_ms(self, n_frames: int) -> torch.Tensor:
        """(n_frames,) float32 frame centres in milliseconds."""
        centre_mel = torch.arange(n_frames, dtype=torch.float64) * self.mel_per_frame + (self.mel_per_frame - 1) / 2
        return (centre_mel * self.encoder.hop_samples * 1000.0 / self.sample_rate).float()

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, F, D) with F = encoder.num_frames(T), in chunks when T is long."""
        n = audio.shape[1]
        total = self.encoder.num_frames(n)
        if n <= self.chunk_samples:
            return self.encoder.frames(audio)  # (B, F, D)
        per_chunk = self.chunk_samples // self.frame_samples
        parts = []
        for start in range(0, n, self.chunk_samples):
            s0 = max(0, start - self.context_samples)  # a multiple of frame_samples: frames stay aligned
            s1 = min(n, start + self.chunk_samples + self.context_samples)
            fr = self.encoder.frames(audio[:, s0:s1])  # (B, F_seg, D); frame j is global frame s0/H + j
            first = (start - s0) // self.frame_samples
            last = min(first + per_chunk, total - s0 // self.frame_samples)
            parts.append(fr[:, first:last])
        out = torch.cat(parts, dim=1)  # (B, F, D)
        assert out.shape[1] == total, (out.shape, total)
        return out

    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, D) -> (B, D), as the encoder pools."""
        if self.encoder.pool == "mean":
            return frames.mean(dim=1)
        if self.encoder.pool == "max":
            return frames.amax(dim=1)
        return frames.mean(dim=1) + frames.amax(dim=1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.pool(self.frames(audio))


def load_model(model_file_path: str = "", **kwargs) -> HearModel:
    """An encoder checkpoint (sslsep.contrastive.save_encoder, local or s3://) as a HEAR
    model. An empty path gives the compact encoder with random weights (seed 0): the
    random-init baseline. `kwargs` go to :class:`HearModel` (chunk_seconds, ...)."""
    if model_file_path:
        encoder = load_encoder(model_file_path)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(DEFAULT_SEED)
            encoder = build_encoder("compact")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return HearModel(encoder, **kwargs).to(device).eval()


def _check(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
        raise ValueError(f"audio must be a (n_sounds, n_samples) tensor, got {getattr(audio, 'shape', type(audio))}")
    return audio.to(device=model.device, dtype=torch.float32)


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) -> (embeddings (n_sounds, n_frames, D) float32,
    timestamps (n_sounds, n_frames) float32 milliseconds, frame centres)."""
    audio = _check(audio, model)
    model.eval()
    parts = [model.frames(audio[i:i + model.batch_sounds]).float()
             for i in range(0, audio.shape[0], model.batch_sounds)]
    n_frames = model.encoder.num_frames(audio.shape[1])
    emb = (torch.cat(parts) if parts else
           torch.zeros(0, n_frames, model.timestamp_embedding_size, device=model.device))  # (n, F, D)
    ts = model.timestamps_ms(emb.shape[1]).to(model.device).expand(emb.shape[0], -1).contiguous()  # (n, F)
    return emb, ts


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, n_samples) -> (n_sounds, D) float32."""
    emb, _ = get_timestamp_embeddings(audio, model)
    return model.pool(emb).float()  # (n, D)
