"""TDCN++-style masking separator: encoder -> TDCN++ masker -> decoder -> mixture consistency.

Each stage is a small ``nn.Module`` that can be tested alone (asteroid-style):

* front ends: :class:`LearnedFrontEnd` (Conv1d+ReLU analysis basis, ConvTranspose1d
  synthesis, hop = window / 2) or :class:`STFTFrontEnd` (compressed magnitude or
  real/imag features in, real masks applied to the complex STFT, ``torch.istft`` out).
* :class:`TDCNppMasker`: input norm + 1x1 bottleneck, dilated depthwise-separable conv
  blocks with learnable scaled residuals (init 0.9**k) and a dense skip from the
  bottleneck features into the input of every later repeat, then a 1x1 to M masks
  (sigmoid, or softmax across the M outputs).
* mixture consistency (Wisdom et al. 2019): ``est_i += w_i (x - sum_j est_j)``, with
  w_i = 1/M ("uniform") or w predicted by a softmax head over time-pooled masker
  features ("learned"); "none" disables it.

Norm: default ``"gln"`` = global layer norm (mean/var over channels AND time per example,
per-channel gain/bias); it needs no fixed length, only the whole input. ``"cln"`` =
channel-wise layer norm (per frame over channels) is frame-local, so it is also
streamable. Both work for any length.

Quick-size choice (``experiments/benchmarks/separator_speed.py --trial``; 2-core CPU; MixIT
on mixtures-of-mixtures of synthetic sine sweeps / band-limited noise bursts / harmonic
tones, 2 s clips, 4 MoMs per step; same masker for all: bottleneck 64, 128 conv channels,
5 dilations x 2 repeats, M = 4; metric: held-out multi-source SI-SNRi, "best" matching,
16 fixed MoMs). Seed 0 trains each front end for 100 s of model-step time; seed 1 for a
fixed 300 steps (robust to the shared, busy machine of the later runs):

    front end                          seed 0: steps  SI-SNRi   seed 1 (300 steps)
    STFT 32 ms / 8 ms, |X|^0.3              371       +6.00 dB      +3.68 dB
    STFT 32 ms / 8 ms, compressed re/im     380       +6.35 dB      +3.51 dB
    learned basis 128, 10 ms window         511       +3.90 dB      +2.83 dB
    learned basis 64, 5 ms window           142       +3.71 dB         -
    learned basis 64, 2.5 ms window          87       +2.56 dB         -

The STFT front end separates best per CPU-minute: better per step than any learned basis
and, against the short-window bases, 3-4x more steps per minute (8 ms hop vs 2.5/1.25 ms:
fewer frames). Magnitude vs complex features tie within seed noise; ``SIZES["quick"]``
keeps the FUSS baseline's magnitude features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sslsep.checkpoint import load_module, read_checkpoint, save_module



class GlobalLayerNorm(nn.Module):
    """gLN: normalise over channels and time of each example; per-channel affine."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, C, F)
        mean = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        return self.gain * (x - mean) / torch.sqrt(var + self.eps) + self.bias


class ChannelLayerNorm(nn.Module):
    """cLN: normalise each frame over channels only (frame-local, streamable)."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, C, F)
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # (B, C, F)


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "gln":
        return GlobalLayerNorm(channels)
    if kind == "cln":
        return ChannelLayerNorm(channels)
    raise ValueError(f"norm must be 'gln' or 'cln', got {kind!r}")


class LearnedFrontEnd(nn.Module):
    """Learned analysis/synthesis basis: N filters of L samples, hop L/2."""

    def __init__(self, n_basis: int, win: int):
        super().__init__()
        if win < 2 or win % 2:
            raise ValueError(f"learned basis window must be an even number of samples, got {win}")
        self.win, self.hop, self.n_features, self.n_mask = win, win // 2, n_basis, n_basis
        self.encoder = nn.Conv1d(1, n_basis, win, stride=self.hop, bias=False)
        self.decoder = nn.ConvTranspose1d(n_basis, 1, win, stride=self.hop, bias=False)

    def encode(self, x: torch.Tensor):
        # Pad one hop each side (edge samples get two windows) and up to a whole frame count,
        # so the transposed conv returns exactly the padded length.
        T = x.shape[-1]
        n_frames = max(1, math.ceil((T + 2 * self.hop - self.win) / self.hop) + 1)
        right = (n_frames - 1) * self.hop + self.win - T - self.hop
        xp = F.pad(x, (self.hop, right)).unsqueeze(1)  # (B, 1, T_pad)
        rep = F.relu(self.encoder(xp))  # (B, N, F)
        return rep, rep, T

    def decode(self, masked: torch.Tensor, length: int) -> torch.Tensor:
        B, M, N, Fr = masked.shape
        y = self.decoder(masked.reshape(B * M, N, Fr))  # (B*M, 1, T_pad)
        return y.reshape(B, M, -1)[..., self.hop:self.hop + length]  # (B, M, T)


class STFTFrontEnd(nn.Module):
    """Hann STFT; features = |X|^0.3 ("mag", as the FUSS baseline) or compressed re/im."""

    def __init__(self, win: int, hop: int, features: str = "mag"):
        super().__init__()
        if features not in ("mag", "complex"):
            raise ValueError(f"stft_features must be 'mag' or 'complex', got {features!r}")
        self.win, self.hop, self.features = win, hop, features
        self.n_mask = win // 2 + 1
        self.n_features = self.n_mask * (1 if features == "mag" else 2)
        self.register_buffer("window", torch.hann_window(win), persistent=False)

    def encode(self, x: torch.Tensor):
        # Zero (not reflect) centre padding: works for inputs shorter than half a window.
        spec = torch.stft(x, self.win, self.hop, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)  # (B, K, F) complex
        mag = spec.abs()
        # Power-law compression keeps quiet bins visible to the masker (FUSS baseline: 0.3).
        comp = (mag + 1e-8).pow(0.3)  # (B, K, F)
        if self.features == "mag":
            feats = comp
        else:
            unit = spec / (mag + 1e-8)
            feats = torch.cat([comp * unit.real, comp * unit.imag], dim=1)  # (B, 2K, F)
        return feats, spec, x.shape[-1]

    def decode(self, masked: torch.Tensor, length: int) -> torch.Tensor:
        B, M, K, Fr = masked.shape
        y = torch.istft(masked.reshape(B * M, K, Fr), self.win, self.hop, window=self.window,
                        center=True, length=length)  # (B*M, T)
        return y.reshape(B, M, length)  # (B, M, T)


class ConvBlock(nn.Module):
    """1x1 -> PReLU -> norm -> depthwise dilated conv -> PReLU -> norm -> 1x1."""

    def __init__(self, bottleneck: int, hidden: int, kernel: int, dilation: int, norm: str):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(bottleneck, hidden, 1), nn.PReLU(), make_norm(norm, hidden),
            nn.Conv1d(hidden, hidden, kernel, dilation=dilation, groups=hidden,
                      padding=dilation * (kernel - 1) // 2),
            nn.PReLU(), make_norm(norm, hidden), nn.Conv1d(hidden, bottleneck, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, Bn, F)


class TDCNppMasker(nn.Module):
    """TDCN++ mask network: features (B, C, F) -> masks (B, M, C_mask, F), pooled (B, Bn)."""

    def __init__(self, in_channels: int, mask_channels: int, n_sources: int, bottleneck: int,
                 conv_channels: int, kernel_size: int, n_dilations: int, n_repeats: int,
                 norm: str, mask_activation: str):
        super().__init__()
        if mask_activation not in ("sigmoid", "softmax"):
            raise ValueError(f"mask_activation must be 'sigmoid' or 'softmax', got {mask_activation!r}")
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd so 'same' padding keeps the frame count")
        self.n_sources, self.mask_channels, self.activation = n_sources, mask_channels, mask_activation
        self.n_dilations, self.n_repeats = n_dilations, n_repeats
        self.in_norm = make_norm(norm, in_channels)
        self.bottleneck = nn.Conv1d(in_channels, bottleneck, 1)
        n_blocks = n_dilations * n_repeats
        self.blocks = nn.ModuleList(
            ConvBlock(bottleneck, conv_channels, kernel_size, 2 ** (i % n_dilations), norm)
            for i in range(n_blocks))
        # TDCN++ scaled residuals: one learnable scalar per block, initialised 0.9**k so deep
        # stacks start close to identity-plus-small-updates.
        self.res_scale = nn.Parameter(torch.tensor([0.9 ** k for k in range(n_blocks)]))
        # Longer-range skips (simple version): the bottleneck features enter every later
        # repeat's input through its own dense (1x1) layer.
        self.repeat_skips = nn.ModuleList(nn.Conv1d(bottleneck, bottleneck, 1)
                                          for _ in range(max(0, n_repeats - 1)))
        self.out = nn.Sequential(nn.PReLU(), nn.Conv1d(bottleneck, n_sources * mask_channels, 1))

    def forward(self, feats: torch.Tensor):
        x0 = self.bottleneck(self.in_norm(feats))  # (B, Bn, F)
        x = x0
        for i, block in enumerate(self.blocks):
            r = i // self.n_dilations
            if r > 0 and i % self.n_dilations == 0:
                x = x + self.repeat_skips[r - 1](x0)  # (B, Bn, F)
            x = x + self.res_scale[i] * block(x)  # (B, Bn, F)
        B, _, Fr = x.shape
        logits = self.out(x).reshape(B, self.n_sources, self.mask_channels, Fr)  # (B, M, C, F)
        masks = torch.sigmoid(logits) if self.activation == "sigmoid" else logits.softmax(dim=1)
        return masks, x.mean(dim=-1)  # (B, M, C, F), (B, Bn)


def mixture_consistency(est: torch.Tensor, mixture: torch.Tensor,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """Project est (B, M, T) so sum_i est_i == mixture (B, T); weights (B, M) sum to 1."""
    residual = mixture - est.sum(dim=1)  # (B, T)
    if weights is None:
        return est + residual.unsqueeze(1) / est.shape[1]  # (B, M, T)
    return est + weights.unsqueeze(-1) * residual.unsqueeze(1)  # (B, M, T)


class Separator(nn.Module):
    """Masking separator: ``forward(mixture (B, T)) -> sources (B, M, T)``, same T.

    Plain, JSON-serialisable keyword arguments only; ``self.config`` records them so
    :func:`load_separator` can rebuild the model from a checkpoint alone.
    ``window_ms``/``hop_ms`` apply to both front ends (learned: hop is always window/2;
    stft: ``hop_ms=None`` means window/4).
    """

    def __init__(self, *, sample_rate: int = 16000, front_end: str = "learned",
                 n_basis: int = 256, window_ms: float = 2.5, hop_ms: float | None = None,
                 stft_features: str = "mag", bottleneck: int = 256, conv_channels: int = 512,
                 kernel_size: int = 3, n_dilations: int = 8, n_repeats: int = 4,
                 n_sources: int = 8, mask_activation: str = "sigmoid", norm: str = "gln",
                 consistency: str = "uniform"):
        super().__init__()
        self.config = dict(
            sample_rate=sample_rate, front_end=front_end, n_basis=n_basis, window_ms=window_ms,
            hop_ms=hop_ms, stft_features=stft_features, bottleneck=bottleneck,
            conv_channels=conv_channels, kernel_size=kernel_size, n_dilations=n_dilations,
            n_repeats=n_repeats, n_sources=n_sources, mask_activation=mask_activation,
            norm=norm, consistency=consistency)
        win = int(round(window_ms * sample_rate / 1000))
        if front_end == "learned":
            self.front = LearnedFrontEnd(n_basis, win)
        elif front_end == "stft":
            hop = int(round(hop_ms * sample_rate / 1000)) if hop_ms else win // 4
            self.front = STFTFrontEnd(win, hop, stft_features)
        else:
            raise ValueError(f"front_end must be 'learned' or 'stft', got {front_end!r}")
        if consistency not in ("uniform", "learned", "none"):
            raise ValueError(f"consistency must be 'uniform', 'learned' or 'none', got {consistency!r}")
        self.n_sources, self.consistency = n_sources, consistency
        self.masker = TDCNppMasker(self.front.n_features, self.front.n_mask, n_sources, bottleneck,
                                   conv_channels, kernel_size, n_dilations, n_repeats, norm,
                                   mask_activation)
        self.weight_head = nn.Linear(bottleneck, n_sources) if consistency == "learned" else None

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        if mixture.dim() != 2:
            raise ValueError(f"mixture must be (B, T), got shape {tuple(mixture.shape)}")
        feats, rep, length = self.front.encode(mixture)  # (B, C, F), (B, C_mask, F)
        masks, pooled = self.masker(feats)  # (B, M, C_mask, F), (B, Bn)
        est = self.front.decode(masks * rep.unsqueeze(1), length)  # (B, M, T)
        if self.consistency == "uniform":
            est = mixture_consistency(est, mixture)
        elif self.consistency == "learned":
            est = mixture_consistency(est, mixture, self.weight_head(pooled).softmax(dim=-1))
        return est  # (B, M, T)


SIZES: dict[str, dict] = {
    # Public MixIT reference configuration (Wisdom et al. 2020): 16 kHz, learned basis of 256
    # filters, 2.5 ms window / 1.25 ms hop, TDCN++ 256/512, 8 dilations x 4 repeats, M = 8.
    "paper": dict(sample_rate=16000, front_end="learned", n_basis=256, window_ms=2.5,
                  bottleneck=256, conv_channels=512, kernel_size=3, n_dilations=8,
                  n_repeats=4, n_sources=8, mask_activation="sigmoid", norm="gln",
                  consistency="uniform"),
    # CPU-trainable in minutes; STFT front end chosen by the trial in the module docstring.
    "quick": dict(sample_rate=16000, front_end="stft", window_ms=32.0, hop_ms=8.0,
                  stft_features="mag", bottleneck=64, conv_channels=128, kernel_size=3,
                  n_dilations=5, n_repeats=2, n_sources=4, mask_activation="sigmoid",
                  norm="gln", consistency="uniform"),
}


def build_separator(size: str = "quick", **overrides) -> Separator:
    if size not in SIZES:
        raise ValueError(f"unknown separator size {size!r}; choose from {sorted(SIZES)}")
    return Separator(**{**SIZES[size], **overrides})


def save_separator(model: Separator, path, **extra) -> None:
    """One self-contained file (sslsep.checkpoint): weights, constructor args, ``extra``."""
    save_module(model, path, **extra)


def load_checkpoint(path, map_location="cpu", weights_only: bool = True) -> dict:
    """The raw checkpoint dict."""
    return read_checkpoint(path, map_location, weights_only)


def load_separator(path, map_location="cpu", weights_only: bool = True) -> Separator:
    """Rebuild a :class:`Separator` from a :func:`save_separator` file alone (local or
    s3://), in eval mode. ``weights_only=True`` (safe unpickling) accepts plain metadata."""
    return load_module(Separator, path, map_location, weights_only)
