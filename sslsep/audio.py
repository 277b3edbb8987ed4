"""Audio I/O and the log-mel front end.

`decode_clip` turns encoded bytes into a mono float32 clip at the configured rate and
length, and never raises on bad audio: it returns a :class:`Decoded` whose `status` says
what happened. Skips ("unreadable", "truncated", "empty", "non_finite") carry no audio;
"silent" clips are kept but flagged; conversions (resampled, downmixed) are noted so a
report can count them. Counting lives in :class:`DecodeReport`.
"""

from __future__ import annotations

import functools
import io
import math
import re
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch
import torchaudio

from sslsep.config import AudioConfig

SKIP_STATUSES = ("unreadable", "truncated", "empty", "non_finite")
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 1000, 1_000_000  # Hz; outside: "unreadable"
KEEP_STATUSES = ("ok", "silent")


@dataclass
class Decoded:
    audio: np.ndarray | None        # float32 (T,) at the target rate, None when skipped
    status: str                     # "ok" | "silent" | one of SKIP_STATUSES
    detail: str = ""                # why, for skips; which conversions, for kept clips
    source_rate: int = 0
    source_channels: int = 0
    source_frames: int = 0
    conversions: tuple[str, ...] = ()

    @property
    def skipped(self) -> bool:
        return self.status in SKIP_STATUSES


def _wav_truncated(data: bytes) -> bool:
    """libsndfile silently shortens a WAV whose data chunk is cut off; the RIFF header
    still declares the full size, so compare the two."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        return False
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"data":
            return size != 0xFFFFFFFF and pos + 8 + size > len(data)
        pos += 8 + size + (size & 1)
    return True  # no data chunk before the end of the file


def read_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Encoded bytes -> (float32 (frames, channels), rate). Raises on undecodable input."""
    import soundfile as sf  # here: the model code that imports this module runs without it (gpu.py)

    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return audio, int(rate)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """(T,) float32 -> (T',) float32 with torchaudio's windowed-sinc resampler."""
    if rate_in == rate_out:
        return audio
    with torch.inference_mode():
        out = _resampler(*_rate_pair(rate_in, rate_out))(torch.from_numpy(np.ascontiguousarray(audio)))
    return out.numpy().astype(np.float32, copy=False)


def _rate_pair(rate_in: int, rate_out: int, terms: int = 1000) -> tuple[int, int]:
    """torchaudio's sinc kernel is (out/g, in/g + ...) for g = gcd(in, out): coprime rates
    (12347 Hz -> 16000 Hz: 1.5 GB, 35 s; a corrupt header's rate: out of memory) get a
    ratio with terms <= `terms` instead, within 2.5e-4 of the true one (length, pitch).
    Common rates (8k, 11.025k, 22.05k, 44.1k, 48k, 96k) are exact already."""
    g = math.gcd(rate_in, rate_out)
    if rate_in // g <= terms and rate_out // g <= terms:
        return rate_in, rate_out
    ratio = Fraction(rate_out, rate_in)
    if ratio > 1:
        inv = (1 / ratio).limit_denominator(terms)
        return inv.numerator, inv.denominator
    ratio = ratio.limit_denominator(terms)
    return ratio.denominator, ratio.numerator


@functools.lru_cache(maxsize=32)
def _resampler(rate_in: int, rate_out: int) -> torchaudio.transforms.Resample:
    """The sinc kernel costs more than applying it: build it once per pair of rates."""
    return torchaudio.transforms.Resample(rate_in, rate_out)


def crop_or_pad(audio: np.ndarray, num_samples: int, mode: str = "start", key: str = "") -> np.ndarray:
    """(T,) -> (num_samples,). Longer clips are cut (start, center, or a random offset that
    is a pure function of `key`, so a clip crops the same way on every worker); shorter
    clips are zero-padded at the end."""
    n = audio.shape[0]
    if n == num_samples:
        return audio
    if n < num_samples:
        return np.pad(audio, (0, num_samples - n))
    spare = n - num_samples
    if mode == "start":
        offset = 0
    elif mode == "center":
        offset = spare // 2
    elif mode == "random":
        offset = zlib.crc32(key.encode()) % (spare + 1)
    else:
        raise ValueError(f"unknown crop mode {mode!r}")
    return audio[offset:offset + num_samples]


def peak_normalised(audio: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """audio scaled to `peak` (float32): what people listen to, whatever a channel's level."""
    x = np.asarray(audio, np.float32)
    top = float(np.max(np.abs(x))) if x.size else 0.0
    return x * (peak / top) if top > 1e-9 else x


def rms_dbfs(audio: np.ndarray) -> float:
    return float(10.0 * np.log10(np.mean(np.square(audio, dtype=np.float64)) + 1e-20))


def decode_clip(data: bytes, cfg: AudioConfig, key: str = "") -> Decoded:
    """Encoded bytes -> a mono clip of cfg.num_samples at cfg.sample_rate, or a named skip."""
    if data is None:
        return Decoded(None, "empty", "no audio bytes (null)")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return Decoded(None, "unreadable", f"expected encoded bytes, got {type(data).__name__}")
    if not data:
        return Decoded(None, "empty", "file has 0 bytes")
    try:
        audio, rate = read_audio(data)
    except ImportError:
        raise  # no decoder installed: never a property of the clip
    except Exception as e:  # libsndfile reports every corruption as a generic error
        # libsndfile names the in-memory buffer ("Error opening <_io.BytesIO ...>"): drop it
        msg = re.sub(r"^Error opening <[^>]*>:\s*", "", str(e).strip()) or type(e).__name__
        import soundfile as sf

        try:
            info_ok = sf.info(io.BytesIO(data)).frames > 0
        except Exception:
            info_ok = False
        return Decoded(None, "truncated" if info_ok else "unreadable", msg)
    frames, channels = audio.shape
    meta = dict(source_rate=rate, source_channels=channels, source_frames=frames)
    if frames == 0:
        return Decoded(None, "empty", "no audio frames", **meta)
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:  # a corrupt header, or a cost out of proportion
        return Decoded(None, "unreadable", f"sample rate {rate} Hz outside {MIN_SOURCE_RATE}-{MAX_SOURCE_RATE} Hz",
                       **meta)
    if _wav_truncated(data):
        return Decoded(None, "truncated", "WAV data chunk is shorter than its header says", **meta)
    if not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).sum())
        return Decoded(None, "non_finite", f"{bad} NaN/Inf samples", **meta)
    conversions = []
    with np.errstate(over="ignore"):  # overflow is caught below as non_finite
        mono = audio[:, 0] if channels == 1 else audio.mean(axis=1)  # (frames,)
    if channels != 1:
        conversions.append(f"downmixed from {channels} channels")
    if rate != cfg.sample_rate:
        mono = resample(mono, rate, cfg.sample_rate)
        conversions.append(f"resampled from {rate} Hz")
    clip = np.ascontiguousarray(crop_or_pad(mono, cfg.num_samples, cfg.crop, key), dtype=np.float32)
    if not np.isfinite(clip).all():  # float samples near the float32 limit overflow when mixed down
        return Decoded(None, "non_finite", "NaN/Inf after " + (", ".join(conversions) or "decoding"), **meta)
    status = "silent" if rms_dbfs(clip) < cfg.silence_dbfs else "ok"
    return Decoded(clip, status, "; ".join(conversions), conversions=tuple(conversions), **meta)


@dataclass
class DecodeReport:
    """Counts of every decode outcome, with the name of every skipped or flagged clip."""
    counts: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)   # (name, status, detail)
    silent: list[str] = field(default_factory=list)
    converted: Counter = field(default_factory=Counter)                 # conversion kind -> count
    label_problems: list[tuple[str, str, str]] = field(default_factory=list)  # CSV rows, not clips

    def add_label_problem(self, name: str, kind: str, detail: str = "") -> None:
        """A labels-CSV row without its file, or a class the class index does not know."""
        self.label_problems.append((name, kind, detail))

    def add(self, name: str, status: str, detail: str = "") -> None:
        self.counts[status] += 1
        if status not in KEEP_STATUSES:
            self.skipped.append((name, status, detail))
            return
        if status == "silent":
            self.silent.append(name)
        for conv in filter(None, (d.strip() for d in detail.split(";"))):
            self.converted[conv.split(" from ")[0]] += 1

    def merge(self, other: "DecodeReport") -> None:
        """Add another report's counts and named clips (e.g. one per source) to this one."""
        self.counts.update(other.counts)
        self.converted.update(other.converted)
        self.skipped += other.skipped
        self.silent += other.silent
        self.label_problems += other.label_problems

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def kept(self) -> int:
        return self.counts["ok"] + self.counts["silent"]

    def to_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "counts": dict(sorted(self.counts.items())),
                "converted": dict(sorted(self.converted.items())),
                "skipped": [{"name": n, "status": s, "detail": d} for n, s, d in self.skipped],
                "silent": list(self.silent),
                "label_problems": [{"name": n, "kind": k, "detail": d} for n, k, d in self.label_problems]}

    def summary(self) -> str:
        lines = [f"{self.total} clips: {self.kept} kept ("
                 f"{self.counts['silent']} flagged silent), {len(self.skipped)} skipped"]
        for conv, n in sorted(self.converted.items()):
            lines.append(f"  {n} {conv}")
        for name, status, detail in self.skipped:
            lines.append(f"  skipped {name}: {status}" + (f" ({detail})" if detail else ""))
        for name in self.silent[:20]:
            lines.append(f"  silent  {name}")
        if len(self.silent) > 20:
            lines.append(f"  ... and {len(self.silent) - 20} more silent clips")
        for name, kind, detail in self.label_problems:
            lines.append(f"  labels  {name}: {kind}" + (f" ({detail})" if detail else ""))
        return "\n".join(lines)


class LogMel(torch.nn.Module):
    """(B, T) waveform -> (B, n_mels, frames) log-mel, torchaudio, 25 ms / 10 ms by default."""

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        win = int(round(cfg.win_ms * cfg.sample_rate / 1000))
        hop = int(round(cfg.hop_ms * cfg.sample_rate / 1000))
        n_fft = 1 << (win - 1).bit_length()
        self.hop_length = hop
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=n_fft, win_length=win, hop_length=hop,
            f_min=cfg.f_min, f_max=min(cfg.f_max, cfg.sample_rate / 2), n_mels=cfg.n_mels,
            power=2.0, center=True)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(audio) + 1e-6)  # (B, n_mels, frames)
