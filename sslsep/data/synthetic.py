"""Procedurally generated sound scenes: sslsep's built-in dataset (nothing to download).

Design
------
* Event classes. ``CLASSES`` holds 14 classes, each made by its own small generator that draws
  its parameters (pitch, rate, timbre, envelope) per event. The classes differ in spectral shape
  and temporal structure, and each one still varies from event to event, so classification can
  be learned without being trivial. Everything is vectorised numpy. Filters shape spectra with
  rfft/irfft, and impulsive sounds (clicks, raindrops, knocks) place copies of a kernel with
  ``np.bincount``. There are no per-sample Python loops.
* Contexts. A scene picks a context (street, forest, kitchen, office, construction) uniformly,
  then 1-4 *distinct* classes from that context's prior weights (``CONTEXTS``). Two classes can
  only co-occur if they share a context, so ``chirp`` never meets ``engine``.
* Events. Each event draws a duration from its class's range, an onset uniform over the clip
  (so events partly overlap), and a gain uniform in dB. The gain is relative to a common
  reference level: RMS 0.1, with the peak capped at 0.5.
* Stems. A class appears at most once per scene, so stems map 1:1 onto labels: ``stems[k]``
  is the event labelled ``labels[k]``, ordered by onset. One common factor scales every stem so
  the mixture peak is <= 0.95. The mixture is then *defined* as the float32 sum of the float32
  stems, so separation can be scored exactly against the stems.
* Determinism. Scene ``index`` under ``seed`` depends only on ``SeedSequence([seed, index])``.
  Any clip can be made alone, in any order, on any worker, and ``iter_scenes`` streams one clip
  at a time. The scene layout (context, labels, onsets, gains) comes from the first child seed,
  and each event's waveform from a child seed of its own. Retuning a generator therefore
  changes sounds but never labels.
* Files. ``write_scenes`` writes float32 WAVs with a tiny built-in writer, not libsndfile.
  libsndfile stamps the wall-clock time into the PEAK chunk of float WAVs, and that would
  break byte-identical reruns. soundfile reads these files back bit-exactly.
"""

from __future__ import annotations

import csv
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

_REF_RMS = 0.1                   # every event is brought to this RMS before its dB gain ...
_REF_PEAK = 0.5                  # ... unless that puts its peak above this (clicks have huge crest factors)
_MAX_PEAK = 0.95 * (1 - 1e-4)    # headroom so float32 rounding of the stem sum cannot exceed 0.95
_FADE_S = 0.005                  # raised-cosine fade at event edges: no clicks from cut-off waveforms

# ----------------------------------------------------------------------------------- DSP helpers


def _loguniform(rng, lo, hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _unit(x: np.ndarray) -> np.ndarray:
    """Scale to unit RMS so components of one event can be mixed at chosen ratios."""
    rms = np.sqrt(np.mean(x * x))
    return x / rms if rms > 0 else x


def _band_gain(f: np.ndarray, lo: float, hi: float, order: int) -> np.ndarray:
    """Butterworth-like magnitude response; lo=0 gives a low-pass."""
    with np.errstate(divide="ignore"):
        g = 1.0 / np.sqrt(1.0 + (f / hi) ** (2 * order))
        return g / np.sqrt(1.0 + (lo / f) ** (2 * order)) if lo > 0 else g


def _noise(rng, n: int, sr: int, lo: float, hi: float, order: int = 2) -> np.ndarray:
    """Gaussian noise band-limited to about [lo, hi] Hz. The spectrum is drawn directly on a
    power-of-two grid, because awkward (e.g. prime) FFT lengths are ~10x slower."""
    size = 1 << max(n - 1, 1).bit_length()
    spec = rng.standard_normal(size // 2 + 1) + 1j * rng.standard_normal(size // 2 + 1)
    spec *= _band_gain(np.fft.rfftfreq(size, 1.0 / sr), lo, min(hi, 0.48 * sr), order)
    return np.fft.irfft(spec, size)[:n]


def _pulses(n: int, times, amps, kernel: np.ndarray) -> np.ndarray:
    """Copies of `kernel` starting at sample positions `times`, scaled by `amps`, cut to n samples."""
    times = np.asarray(times, dtype=np.int64)
    amps = np.broadcast_to(np.asarray(amps, dtype=float), times.shape)
    keep = (times >= 0) & (times < n)
    idx = (times[keep, None] + np.arange(len(kernel))).ravel()
    out = np.bincount(idx, weights=(amps[keep, None] * kernel).ravel(), minlength=n + len(kernel))[:n]
    return out.astype(float, copy=False)   # bincount of nothing comes back as int


def _smooth(rng, n: int, sr: int, rate: float, lo: float, hi: float) -> np.ndarray:
    """A random curve in [lo, hi] that changes about `rate` times a second."""
    points = int(np.ceil(n / sr * rate)) + 2
    return np.interp(np.arange(n), np.linspace(0, n, points), rng.uniform(lo, hi, points))


def _gate(pos, length: float, ramp: float) -> np.ndarray:
    """Trapezoid: 1 for 0 <= pos < length with linear ramps of `ramp` samples, 0 outside."""
    return np.clip(np.minimum(pos, length - pos) / max(ramp, 1.0), 0.0, 1.0)


def _pulse_wave(cycles: np.ndarray, f_max: float, sr: int, kappa: float) -> np.ndarray:
    """A pulse train exp(kappa*(cos-1)) that is band-limited by construction. Harmonic k falls
    off roughly like exp(-k^2 / 2 kappa). Kappa is capped so that the harmonic at Nyquist sits
    below -70 dB, which rules out aliasing."""
    kappa = min(kappa, (0.5 * sr / f_max) ** 2 / 16)
    w = np.exp(kappa * (np.cos(2 * np.pi * cycles) - 1))
    return w - w.mean()


# ------------------------------------------------------------------------------ event classes
# Each generator is fn(rng, n, sr) -> float64 (n,), and sound starts near sample 0 (the scene
# chooses the onset). _event records the range of event durations in seconds.

_GENERATORS: dict[str, tuple[Callable, tuple[float, float]]] = {}


def _event(name: str, min_s: float, max_s: float):
    def register(fn):
        _GENERATORS[name] = (fn, (min_s, max_s))
        return fn
    return register


@_event("harmonic_tone", 0.5, 3.0)
def _harmonic_tone(rng, n, sr):
    # Ranges from bell (stretched partials, long ring) to flute (harmonic, vibrato); higher partials decay faster.
    t = np.arange(n) / sr
    f0 = _loguniform(rng, 180, 1200)
    k = np.arange(1, rng.integers(3, 9))
    ratios = k * np.sqrt(1 + _loguniform(rng, 1e-4, 3e-2) * k**2)
    ok = f0 * ratios < 0.45 * sr
    k, ratios = k[ok], ratios[ok]
    amps = rng.uniform(0.3, 1.0, len(k)) / k ** rng.uniform(0.5, 2.0)
    taus = rng.uniform(0.2, 1.5) / k**0.7
    depth, rate = rng.uniform(0, 0.006), rng.uniform(4, 6)
    warp = t - depth / (2 * np.pi * rate) * np.cos(2 * np.pi * rate * t)   # vibrato, integrated in closed form
    phases = 2 * np.pi * f0 * ratios[:, None] * warp + rng.uniform(0, 2 * np.pi, (len(k), 1))
    x = (amps[:, None] * np.exp(-t / taus[:, None]) * np.sin(phases)).sum(0)
    return x * (1 - np.exp(-t / rng.uniform(0.002, 0.03)))


@_event("chirp", 0.4, 3.0)
def _chirp(rng, n, sr):
    # Birdsong: a train of fast FM syllables that sweep down, up or in an arch, each pitched a little differently.
    top = min(8000.0, 0.42 * sr)
    f_hi = _loguniform(rng, 0.6 * top, top)
    f_lo = f_hi * rng.uniform(0.35, 0.8)
    syl = max(int(rng.uniform(0.03, 0.15) * sr), 2)
    period = syl + int(rng.uniform(0.02, 0.2) * sr)
    i = np.arange(n)
    u = np.clip((i % period) / syl, 0.0, 1.0)
    sweep = u ** rng.uniform(0.5, 2.0)
    frac = (1 - sweep, sweep, np.sin(np.pi * sweep))[rng.integers(3)]
    f = (f_lo + (f_hi - f_lo) * frac) * 2 ** rng.normal(0, 0.1, i[-1] // period + 1)[i // period]
    f = np.minimum(f, 0.45 * sr)
    return np.sin(np.pi * u) ** 2 * np.sin(2 * np.pi * np.cumsum(f) / sr)


@_event("noise_burst", 0.15, 1.0)
def _noise_burst(rng, n, sr):
    # Ranges from door slam to hiss: band-limited noise with a fast attack and an exponential decay.
    t = np.arange(n) / sr
    fc = _loguniform(rng, 150, min(5000.0, 0.3 * sr))
    half = 2 ** (rng.uniform(0.5, 2.5) / 2)
    env = (1 - np.exp(-t / rng.uniform(0.001, 0.02))) * np.exp(-t / rng.uniform(0.05, 0.5))
    return env * _noise(rng, n, sr, fc / half, fc * half, order=3)


@_event("click_train", 1.0, 4.0)
def _click_train(rng, n, sr):
    # Footsteps or ticking: short decaying noise clicks at a steady rate, with timing jitter and alternating accents.
    period = _loguniform(rng, 0.12, 0.7) * sr
    times = np.arange(rng.uniform(0, min(0.01 * sr, n / 2)), n, period)
    jitter = rng.normal(0, rng.uniform(0, 0.06) * period, len(times))
    jitter[:1] = 0.0   # the first click stays near sample 0 so that even a very short event sounds
    times = np.maximum(np.round(times + jitter), 0)
    amps = rng.uniform(0.6, 1.0, len(times)) * np.where(np.arange(len(times)) % 2, rng.uniform(0.5, 1.0), 1.0)
    klen = max(int(rng.uniform(0.005, 0.025) * sr), 2)
    lo = _loguniform(rng, 500, 2000)
    decay = np.exp(-np.arange(klen) / (rng.uniform(0.001, 0.006) * sr))
    return _pulses(n, times, amps, decay * _noise(rng, klen, sr, lo, lo * rng.uniform(2, 6)))


@_event("siren", 1.5, 4.0)
def _siren(rng, n, sr):
    # Emergency siren: a few harmonics swept by a periodic LFO, from a slow wail to a fast yelp.
    t = np.arange(n) / sr
    fc = rng.uniform(550, 1100)
    cycles = _loguniform(rng, 0.25, 4.0) * t + rng.uniform()
    lfo = np.sin(2 * np.pi * cycles) if rng.uniform() < 0.5 else 2 * np.abs(2 * (cycles % 1) - 1) - 1
    f = fc * (1 + rng.uniform(0.15, 0.4) * lfo)
    phase = 2 * np.pi * np.cumsum(f) / sr
    return sum(a * np.sin(h * phase) for h, a in ((1, 1.0), (2, 0.35), (3, 0.2)) if h * f.max() < 0.45 * sr)


@_event("engine", 1.5, 4.0)
def _engine(rng, n, sr):
    # Idling engine: a low pulse buzz with wandering speed, half-rate AM (uneven cylinders) and rumble noise.
    f0 = _loguniform(rng, 25, 90) * _smooth(rng, n, sr, rng.uniform(0.5, 2.0), 0.95, 1.05)
    cycles = np.cumsum(f0) / sr
    x = _pulse_wave(cycles, f0.max(), sr, rng.uniform(5, 60))
    x *= 1 + rng.uniform(0.2, 0.8) * np.sin(np.pi * cycles + rng.uniform(0, 2 * np.pi))
    return _unit(x) + rng.uniform(0.1, 0.5) * _unit(_noise(rng, n, sr, 20, _loguniform(rng, 150, 500)))


@_event("rain", 1.5, 4.0)
def _rain(rng, n, sr):
    # Rain: a bright noise bed plus many drops (decaying pings with some crackle) at a Poisson rate.
    bed = _unit(_noise(rng, n, sr, _loguniform(rng, 400, 1500), 0.45 * sr))
    count = rng.poisson(rng.uniform(60, 500) * n / sr)
    k = np.arange(max(int(0.008 * sr), 2)) / sr
    ping = np.sin(2 * np.pi * _loguniform(rng, 1500, min(5000.0, 0.4 * sr)) * k)
    kernel = np.exp(-k / rng.uniform(0.0008, 0.003)) * (ping + 0.5 * rng.standard_normal(len(k)))
    drops = _pulses(n, rng.integers(0, n, count), rng.exponential(1.0, count) * rng.choice([-1.0, 1.0], count), kernel)
    return _unit(drops) + rng.uniform(0.2, 0.8) * bed


# Formants F1-F3 (Hz) of a few vowels (Peterson & Barney): /a/, /i/, /u/, /e/, /o/, /ae/, /er/
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480],
                    [570, 840, 2410], [660, 1720, 2410], [490, 1350, 1690]], dtype=float)


@_event("babble", 1.5, 4.0)
def _babble(rng, n, sr):
    # Speech-like babble from 1-2 voices. Each voice is a glottal pulse train with intonation, cut into
    # Hann-windowed syllables (the syllable-rate AM) that are formant-filtered by one FFT per syllable.
    out = np.zeros(n)
    for _ in range(rng.integers(1, 3)):
        f0 = _loguniform(rng, 85, 260) * _smooth(rng, n, sr, 2.0, 0.85, 1.15)
        src = _pulse_wave(np.cumsum(f0) / sr, f0.max(), sr, rng.uniform(8, 30)) + 0.05 * rng.standard_normal(n)
        speaker = rng.uniform(0.9, 1.2)   # vocal-tract length: scales every formant of this voice
        start = 0
        while start < n:
            seg = src[start:start + max(int(rng.uniform(0.1, 0.3) * sr), 8)]
            if start == 0 or rng.uniform() < 0.85:   # some syllables are pauses, never the first
                formants = _VOWELS[rng.integers(len(_VOWELS))] * speaker * rng.uniform(0.95, 1.05, 3)
                size = 1 << max(len(seg) - 1, 1).bit_length()   # power-of-two FFT; zero padding is harmless
                f = np.fft.rfftfreq(size, 1.0 / sr)
                gain = sum(w / (1 + ((f - fm) / bw) ** 2) for fm, w, bw in zip(formants, (1.0, 0.7, 0.4), (40, 50, 75)))
                voiced = np.fft.irfft(np.fft.rfft(seg * np.hanning(len(seg)), size) * gain, size)
                out[start:start + len(seg)] += voiced[:len(seg)]
            start += len(seg)
    return out


@_event("dog_bark", 0.3, 2.5)
def _dog_bark(rng, n, sr):
    # Dog bark: 1-5 short harmonic bursts with a falling pitch, a formant bump and some roughness.
    out = np.zeros(n)
    f_start, drop, formant = _loguniform(rng, 300, 800), rng.uniform(0.5, 0.8), rng.uniform(800, 1600)
    start = 0
    for _ in range(rng.integers(1, 6)):
        length = min(int(rng.uniform(0.08, 0.25) * sr), n - start)
        if length < 2:
            break
        u = np.arange(length) / length
        f = f_start * rng.uniform(0.9, 1.1) * (1 - (1 - drop) * u)
        h = np.arange(1, min(12, int(0.45 * sr / f[0])) + 1)[:, None]
        amps = 1 / (1 + ((h * f - formant) / 400) ** 2) + 0.2 / h
        burst = (amps * np.sin(h * 2 * np.pi * np.cumsum(f) / sr)).sum(0)
        burst += 0.3 * burst.std() * rng.standard_normal(length)
        out[start:start + length] = np.minimum(u / 0.05, 1) * (1 - u) ** 1.5 * burst
        start += length + int(rng.uniform(0.1, 0.4) * sr)
        if start >= n:
            break
    return out


@_event("water", 1.0, 4.0)
def _water(rng, n, sr):
    # Running or pouring water: mid-band noise with a fluttering level, plus bubbles (short rising blips) of 3 sizes.
    flutter = _smooth(rng, n, sr, rng.uniform(3, 10), 0.3, 1.0)
    out = flutter * _unit(_noise(rng, n, sr, _loguniform(rng, 150, 500), _loguniform(rng, 1200, 3500)))
    for _ in range(3):
        klen = max(int(rng.uniform(0.01, 0.04) * sr), 2)
        k = np.arange(klen) / sr
        blip = np.sin(2 * np.pi * _loguniform(rng, 300, 1500) * (k + 0.25 * k**2 / k[-1])) * np.exp(-3 * k / k[-1])
        count = rng.poisson(rng.uniform(5, 30) * n / sr)
        out += rng.uniform(0.3, 1.0) * _unit(_pulses(n, rng.integers(0, n, count), rng.uniform(0.3, 1.0, count), blip))
    return out


@_event("alarm", 0.8, 3.0)
def _alarm(rng, n, sr):
    # Electronic beeper: a square-ish tone (odd harmonics) gated on and off, sometimes alternating two pitches.
    i = np.arange(n)
    f = _loguniform(rng, 900, min(3500.0, 0.25 * sr))
    beep = rng.uniform(0.05, 0.3) * sr
    period = beep * rng.uniform(1.5, 3.0)
    alt = rng.uniform(1.2, 1.5) if rng.uniform() < 0.4 else 1.0
    phase = 2 * np.pi * np.cumsum(f * np.where((i // period) % 2, alt, 1.0)) / sr
    x = sum(np.sin(k * phase) / k for k in (1, 3, 5, 7) if k * f * alt < 0.45 * sr)
    return x * _gate(i % period, beep, 0.003 * sr)


@_event("wind", 2.0, 4.0)
def _wind(rng, n, sr):
    # Wind: low-passed noise swelling in slow gusts, sometimes with a faint narrow-band howl.
    gusts = _smooth(rng, n, sr, rng.uniform(0.3, 1.5), 0.1, 1.0) ** 2
    rush = _unit(_noise(rng, n, sr, 30, _loguniform(rng, 150, 900), order=1))
    fh = _loguniform(rng, 250, 700)
    return gusts * (rush + rng.uniform(0, 0.5) * _unit(_noise(rng, n, sr, fh / 1.06, fh * 1.06, order=4)))


@_event("knock", 0.3, 2.5)
def _knock(rng, n, sr):
    # Knocking or hammering: 1-8 strikes, each a sharp click that excites 2-4 damped resonant modes.
    count = rng.integers(1, 9)
    period = rng.uniform(0.12, 0.5) * sr
    times = np.round(np.arange(count) * period + np.abs(rng.normal(0, 0.03 * period, count)) * (np.arange(count) > 0))
    modes = rng.integers(2, 5)
    freqs = np.exp(rng.uniform(np.log(150), np.log(min(2500.0, 0.4 * sr)), modes))[:, None]
    taus = rng.uniform(0.005, 0.06, modes)[:, None]
    k = np.arange(int(5 * taus.max() * sr) + 1) / sr
    ring = (rng.uniform(0.3, 1.0, (modes, 1)) * np.exp(-k / taus) * np.sin(2 * np.pi * freqs * k)).sum(0)
    kernel = ring + rng.uniform(0.2, 1.0) * rng.standard_normal(len(k)) * np.exp(-k / 0.001)
    return _pulses(n, times, rng.uniform(0.6, 1.0, count), kernel)


@_event("horn", 0.3, 2.0)
def _horn(rng, n, sr):
    # Car horn: two buzzy tones about a third apart sounding together, in 1-3 honks.
    t = np.arange(n) / sr
    f1 = _loguniform(rng, 300, 500)
    x = sum(_pulse_wave(f * t + rng.uniform(), f, sr, rng.uniform(3, 12)) for f in (f1, f1 * rng.uniform(1.18, 1.35)))
    gate, start = np.zeros(n), 0
    for _ in range(rng.integers(1, 4)):
        length = int(rng.uniform(0.15, 0.9) * sr)
        pos = np.arange(min(length, n - start))
        gate[start:start + len(pos)] = _gate(pos, length, 0.01 * sr)
        start += length + int(rng.uniform(0.08, 0.3) * sr)
        if start >= n:
            break
    return x * gate


CLASSES: tuple[str, ...] = tuple(sorted(_GENERATORS))

# Context -> {class: prior weight}. Classes co-occur only within a context. Treat as read-only:
# the normalised tables below are built once at import.
CONTEXTS: dict[str, dict[str, float]] = {
    "street": {"engine": 3.0, "horn": 2.0, "click_train": 2.0, "babble": 2.0, "siren": 1.0,
               "dog_bark": 1.0, "alarm": 0.5, "wind": 0.5},
    "forest": {"chirp": 3.0, "wind": 2.0, "rain": 1.5, "water": 1.5, "knock": 1.0, "dog_bark": 0.5,
               "click_train": 0.5},
    "kitchen": {"water": 2.0, "noise_burst": 2.0, "alarm": 1.5, "babble": 1.5, "knock": 1.0,
                "harmonic_tone": 1.0, "click_train": 0.5},
    "office": {"babble": 2.0, "click_train": 2.0, "alarm": 1.0, "harmonic_tone": 1.0, "noise_burst": 1.0,
               "knock": 1.0, "horn": 0.3},
    "construction": {"knock": 3.0, "engine": 2.0, "noise_burst": 2.0, "alarm": 1.0, "babble": 1.0,
                     "horn": 0.5, "siren": 0.3},
}
_CONTEXT_NAMES = tuple(sorted(CONTEXTS))
_CONTEXT_TABLES = {name: (tuple(sorted(w)), np.array([w[c] for c in sorted(w)]) / sum(w.values()))
                   for name, w in CONTEXTS.items()}
assert set(CLASSES) == {c for w in CONTEXTS.values() for c in w}, "every class belongs to some context"
#: The largest max_events every context can satisfy with distinct classes.
MAX_EVENTS = min(len(w) for w in CONTEXTS.values())

# ---------------------------------------------------------------------------------------- scenes


@dataclass(frozen=True, eq=False)   # eq=False: comparing numpy fields with == would be ambiguous
class Scene:
    clip_id: str              # f"synth-{seed}-{index:08d}"
    audio: np.ndarray         # float32 (T,), exactly stems.sum(0)
    stems: np.ndarray         # float32 (K, T), one row per event, ordered by onset
    labels: tuple[str, ...]   # class per stem, same order as stems (distinct)
    context: str
    events: tuple[dict, ...]  # per event: {"label", "onset_s", "duration_s", "gain_db"}


def _validate(seed=0, sample_rate=16000, num_samples=64000, min_events=1, max_events=4, gain_db=(-12.0, 0.0)):
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000, got {sample_rate}")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be > 0, got {num_samples}")
    if min_events < 1:
        raise ValueError(f"min_events must be >= 1, got {min_events}")
    if min_events > max_events:
        raise ValueError(f"min_events ({min_events}) must be <= max_events ({max_events})")
    if max_events > MAX_EVENTS:
        raise ValueError(f"max_events must be <= {MAX_EVENTS} (classes in the smallest context), got {max_events}")
    if len(gain_db) != 2 or gain_db[0] > gain_db[1]:
        raise ValueError(f"gain_db must be (low, high) with low <= high, got {gain_db!r}")


def _fade(x: np.ndarray, sr: int) -> np.ndarray:
    m = min(int(_FADE_S * sr), len(x) // 4)
    if m > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        x[:m] *= ramp
        x[-m:] *= ramp[::-1]
    return x


def _level(x: np.ndarray) -> np.ndarray:
    peak = np.abs(x).max()
    return x * min(_REF_RMS / np.sqrt(np.mean(x * x)), _REF_PEAK / peak) if peak > 0 else x


def scene_id(seed: int, index: int) -> str:
    """The clip id of scene `index` of `seed`: known without generating the scene."""
    return f"synth-{int(seed)}-{int(index):08d}"


def generate_scene(index: int, *, seed: int = 0, sample_rate: int = 16000, num_samples: int = 64000,
                   min_events: int = 1, max_events: int = 4, gain_db: tuple[float, float] = (-12.0, 0.0)) -> Scene:
    """Scene `index` of the stream `seed`. It depends on (seed, index) alone, so any clip can be
    generated independently of the others, in any order, on any worker."""
    _validate(seed, sample_rate, num_samples, min_events, max_events, gain_db)
    if int(index) != index or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    root = np.random.SeedSequence([int(seed), int(index)])
    rng = np.random.default_rng(root.spawn(1)[0])          # the scene layout only

    context = _CONTEXT_NAMES[rng.integers(len(_CONTEXT_NAMES))]
    names, probs = _CONTEXT_TABLES[context]
    k = int(rng.integers(min_events, max_events + 1))
    labels = [names[i] for i in rng.choice(len(names), size=k, replace=False, p=probs)]
    clip_s = num_samples / sample_rate
    lengths, onsets, gains = [], [], []
    for label in labels:
        lo, hi = _GENERATORS[label][1]
        length = int(round(rng.uniform(min(lo, clip_s), min(hi, clip_s)) * sample_rate))
        lengths.append(min(max(length, 1), num_samples))
        onsets.append(int(rng.integers(0, num_samples - lengths[-1] + 1)))
        gains.append(float(rng.uniform(gain_db[0], gain_db[1])))

    order = sorted(range(k), key=onsets.__getitem__)
    stems = np.zeros((k, num_samples))
    for row, (j, event_seed) in enumerate(zip(order, root.spawn(k))):
        x = _GENERATORS[labels[j]][0](np.random.default_rng(event_seed), lengths[j], sample_rate)
        if not x.any():   # only events a few samples long: keep every stem audible so SI-SNR stays defined
            x[len(x) // 2] = 1.0
        stems[row, onsets[j]:onsets[j] + lengths[j]] = _level(_fade(x, sample_rate)) * 10 ** (gains[j] / 20)

    peak = np.abs(stems.sum(0)).max()
    stems32 = (stems * (min(1.0, _MAX_PEAK / peak) if peak > 0 else 1.0)).astype(np.float32)
    events = tuple({"label": labels[j], "onset_s": round(onsets[j] / sample_rate, 6),
                    "duration_s": round(lengths[j] / sample_rate, 6), "gain_db": round(gains[j], 3)} for j in order)
    return Scene(clip_id=scene_id(seed, index), audio=stems32.sum(0, dtype=np.float32), stems=stems32,
                 labels=tuple(labels[j] for j in order), context=context, events=events)


def iter_scenes(num_clips: int, *, start: int = 0, **kwargs) -> Iterator[Scene]:
    """Scenes start .. start+num_clips-1, generated lazily one at a time. The arguments are checked
    immediately, before the first scene is requested."""
    if num_clips < 0:
        raise ValueError(f"num_clips must be >= 0, got {num_clips}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    _validate(**kwargs)   # unknown keywords raise TypeError here, not at the first next()
    return (generate_scene(i, **kwargs) for i in range(start, start + num_clips))


def multi_hot(labels: Sequence[str], classes: Sequence[str] = CLASSES) -> np.ndarray:
    """float32 (C,) with a 1 for every label present."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros(len(classes), dtype=np.float32)
    for label in labels:
        if label not in index:
            raise ValueError(f"unknown label {label!r}")
        out[index[label]] = 1.0
    return out


def _write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    """Mono IEEE float32 WAV with fmt, fact and data chunks. No timestamps, so reruns are byte-identical."""
    data = np.ascontiguousarray(x, dtype="<f4").tobytes()
    path.write_bytes(b"".join([
        b"RIFF", struct.pack("<I", 48 + len(data)), b"WAVE",
        b"fmt ", struct.pack("<IHHIIHH", 16, 3, 1, sr, 4 * sr, 4, 32),   # format 3 = IEEE float
        b"fact", struct.pack("<II", 4, len(x)),
        b"data", struct.pack("<I", len(data)), data]))


def write_scenes(dst: str | os.PathLike, num_clips: int, *, seed: int = 0, sample_rate: int = 16000,
                 num_samples: int = 64000, **kwargs) -> dict:
    """Write DST/audio/<clip_id>.wav, DST/stems/<clip_id>/<k>_<label>.wav and DST/labels.csv
    (columns path, clip_id, context, labels joined by ';', and events as JSON). The files are
    float32 WAV, so they are exact. Returns {num_clips, seconds, dst, sample_rate}."""
    scenes = iter_scenes(num_clips, seed=seed, sample_rate=sample_rate, num_samples=num_samples, **kwargs)
    root = Path(dst)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "clip_id", "context", "labels", "events"])
        for scene in scenes:
            rel = f"audio/{scene.clip_id}.wav"
            _write_wav(root / rel, scene.audio, sample_rate)
            stem_dir = root / "stems" / scene.clip_id
            stem_dir.mkdir(parents=True, exist_ok=True)
            for k, (label, stem) in enumerate(zip(scene.labels, scene.stems)):
                _write_wav(stem_dir / f"{k}_{label}.wav", stem, sample_rate)
            writer.writerow([rel, scene.clip_id, scene.context, ";".join(scene.labels),
                             json.dumps(list(scene.events), sort_keys=True, separators=(",", ":"))])
    return {"num_clips": num_clips, "seconds": num_clips * num_samples / sample_rate, "dst": str(root),
            "sample_rate": sample_rate}
