"""Audio encoder for the contrastive stage: log-mel -> CNN -> frame embeddings -> clip embedding.

``AudioEncoder(audio (B, T))`` has three outputs, one per consumer:

* ``frames(audio) -> (B, F, D)``: frame embeddings every ``frame_hop_s`` seconds (HEAR's
  timestamp task needs a hop of at most 50 ms);
* ``embed(audio) -> (B, D)``: the pooled clip embedding, which evaluation freezes;
* ``forward(audio) -> (B, proj_dim)``: a projection head (Linear-BN-ReLU-Linear) on the clip
  embedding, which only the training losses see (SimCLR: the head absorbs view invariances
  that would otherwise be forced onto the embedding).

Decisions:

* Input normalisation: ``BatchNorm1d(n_mels)`` on the log-mel (B, n_mels, frames), i.e. each
  mel band is standardised over batch and time with running statistics (PANNs' ``bn0``), so
  loud low bands do not dominate the first convolution and no dataset statistics are needed.
* Frame hop: time is pooled by 2 on the first ``k`` blocks/stages, with ``k`` the largest of
  0, 1, 2 that keeps ``hop * 2**k <= 50 ms`` (10 ms mel hop -> 4x -> 40 ms). Frames are never
  upsampled; a mel hop above 50 ms is refused. Pools use ceil mode / strided "same" convs,
  so ``F = ceil((T // hop + 1) / 2**k)`` for every input length (see :meth:`num_frames`).
* Frequency is halved four times (64 mel -> 4) and then flattened with the channels
  (``C * F'``) before a per-frame Linear, so a frame embedding still knows in which band a
  pattern lies (a mean over frequency would discard that).
* Clip pooling over frames: "mean", "max" or "meanmax" = mean + max (PANNs' sum, which keeps D).
* Archs: "compact" (4 x conv3x3-BN-ReLU-maxpool, widths w, 2w, 4w, 4w; w = 32 -> ~0.34M
  parameters, CPU-trainable) and "resnet" (ResNet-18 layout: 4 stages x 2 basic residual
  blocks, widths w..8w; w = 64 -> ~11.5M parameters, for GPUs).
* Inputs shorter than one FFT window are zero-padded to it; anything from 1 sample works.
* Training mode needs batch >= 2 (BatchNorm in the projection head); eval mode takes any B.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sslsep.checkpoint import load_module, save_module

from sslsep.audio import LogMel
from sslsep.config import MAX_FRAME_HOP_S, AudioConfig  # HEAR: timestamps at most 50 ms apart


POOLS = ("mean", "max", "meanmax")
ARCHS: dict[str, dict] = {"compact": dict(width=32), "resnet": dict(width=64)}


def _halve(n: int, times: int) -> int:
    """Length after `times` ceil-mode halvings (maxpool ceil_mode / stride-2 'same' conv)."""
    for _ in range(times):
        n = math.ceil(n / 2)
    return n


def conv_bn_relu(c_in: int, c_out: int, stride=1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class CompactCNN(nn.Module):
    """(B, 1, n_mels, T) -> (B, 4w, ceil(n_mels/16), ceil(T/2**k)); one conv per block."""

    def __init__(self, width: int, time_pools: int):
        super().__init__()
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers, c_in = [], 1
        for i, c_out in enumerate(widths):
            layers += conv_bn_relu(c_in, c_out)
            layers.append(nn.MaxPool2d((2, 2 if i < time_pools else 1), ceil_mode=True))
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, F', T')


class BasicBlock(nn.Module):
    """ResNet basic block: two conv3x3-BN, identity (or 1x1 strided projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if c_in != c_out or stride != (1, 1):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)  # (B, C_out, F/s, T/s)
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x), inplace=True)


class ResNetCNN(nn.Module):
    """(B, 1, n_mels, T) -> (B, 8w, ceil(n_mels/16), ceil(T/2**k)); ResNet-18 stage layout."""

    def __init__(self, width: int, time_pools: int, blocks: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        layers: list[nn.Module] = conv_bn_relu(1, width)
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2 ** i
            # Every stage halves frequency; only the first `time_pools` stages halve time.
            stride = (2, 2 if i < time_pools else 1)
            for j in range(n):
                layers.append(BasicBlock(c_in, c_out, stride if j == 0 else (1, 1)))
                c_in = c_out
        self.net = nn.Sequential(*layers)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, F', T')


class AudioEncoder(nn.Module):
    """Waveform (B, T) -> frame embeddings / clip embedding / projection (see module doc).

    Plain, JSON-serialisable keyword arguments only; ``self.config`` records them (with
    ``width`` resolved) so :func:`load_encoder` rebuilds the model from a checkpoint alone.
    """

    def __init__(self, *, arch: str = "compact", embed_dim: int = 128, proj_dim: int = 128,
                 pool: str = "meanmax", width: int | None = None, sample_rate: int = 16000,
                 n_mels: int = 64, win_ms: float = 25.0, hop_ms: float = 10.0,
                 f_min: float = 60.0, f_max: float = 7800.0):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        width = int(width or ARCHS[arch]["width"])
        self.config = dict(arch=arch, embed_dim=embed_dim, proj_dim=proj_dim, pool=pool,
                           width=width, sample_rate=sample_rate, n_mels=n_mels, win_ms=win_ms,
                           hop_ms=hop_ms, f_min=f_min, f_max=f_max)
        self.logmel = LogMel(AudioConfig(sample_rate=sample_rate, n_mels=n_mels, win_ms=win_ms,
                                         hop_ms=hop_ms, f_min=f_min, f_max=f_max))
        self.hop_samples = self.logmel.hop_length
        self.n_fft = self.logmel.mel.n_fft
        mel_hop_s = self.hop_samples / sample_rate
        if mel_hop_s > MAX_FRAME_HOP_S:
            raise ValueError(f"mel hop {mel_hop_s * 1000:.1f} ms exceeds the 50 ms frame hop HEAR needs")
        self.time_pools = max(k for k in range(3) if mel_hop_s * 2 ** k <= MAX_FRAME_HOP_S + 1e-9)
        self.frame_hop_s = mel_hop_s * 2 ** self.time_pools
        self.pool, self.embed_dim, self.proj_dim = pool, embed_dim, proj_dim

        self.input_norm = nn.BatchNorm1d(n_mels)  # per mel band, over batch and time
        cnn = CompactCNN if arch == "compact" else ResNetCNN
        self.cnn = cnn(width, self.time_pools)
        self.freq_out = _halve(n_mels, 4)
        self.frame_proj = nn.Linear(self.cnn.out_channels * self.freq_out, embed_dim)
        self.head = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.BatchNorm1d(embed_dim),
                                  nn.ReLU(inplace=True), nn.Linear(embed_dim, proj_dim))

    def num_frames(self, num_samples: int) -> int:
        """Frame count that :meth:`frames` returns for an input of `num_samples`."""
        mel_frames = max(num_samples, self.n_fft) // self.hop_samples + 1  # center=True STFT
        return _halve(mel_frames, self.time_pools)

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, F, D); frame i sits at about mel frames [i * 2**k, (i + 1) * 2**k)."""
        if audio.dim() != 2:
            raise ValueError(f"audio must be (B, T), got shape {tuple(audio.shape)}")
        if audio.shape[-1] < self.n_fft:
            # The STFT's reflect padding needs more than half a window of signal.
            audio = F.pad(audio, (0, self.n_fft - audio.shape[-1]))  # (B, n_fft)
        with torch.profiler.record_function("sslsep/logmel"):  # parts of a profiled step (training.profile)
            x = self.input_norm(self.logmel(audio))  # (B, n_mels, T_mel)
        with torch.profiler.record_function("sslsep/cnn"):
            x = self.cnn(x.unsqueeze(1))  # (B, C, F', T')
        B, C, Fq, T = x.shape
        x = x.permute(0, 3, 1, 2).reshape(B, T, C * Fq)  # (B, T', C * F')
        return self.frame_proj(x)  # (B, T', D)

    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, D): frame embeddings pooled over time."""
        fr = self.frames(audio)  # (B, F, D)
        if self.pool == "mean":
            return fr.mean(dim=1)  # (B, D)
        if self.pool == "max":
            return fr.amax(dim=1)  # (B, D)
        return fr.mean(dim=1) + fr.amax(dim=1)  # (B, D)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, proj_dim): projection head on the clip embedding (losses only)."""
        return self.head(self.embed(audio))  # (B, P)


def build_encoder(arch: str = "compact", **overrides) -> AudioEncoder:
    if arch not in ARCHS:
        raise ValueError(f"unknown encoder arch {arch!r}; choose from {sorted(ARCHS)}")
    return AudioEncoder(arch=arch, **{**ARCHS[arch], **overrides})


def save_encoder(model: AudioEncoder, path, **extra) -> None:
    """One self-contained file (sslsep.checkpoint): weights, constructor args, ``extra``."""
    save_module(model, path, **extra)


def load_encoder(path, map_location="cpu", weights_only: bool = True) -> AudioEncoder:
    """Rebuild an :class:`AudioEncoder` from a :func:`save_encoder` file alone (local or
    s3://), in eval mode."""
    return load_module(AudioEncoder, path, map_location, weights_only)
