"""Fuzzing the two decoders that meet untrusted bytes: `sslsep.audio.decode_clip` (any
bytes -> a clip or a named skip, never an exception) and the shard row decoder
`sslsep.data.sources._shard_batch_rows` (a Parquet batch -> clip rows; nulls get defaults,
a value of the wrong type is a ValueError naming the clip). Bounded: the whole file runs
in well under 20 s on 2 cores."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sslsep.audio import KEEP_STATUSES, SKIP_STATUSES, _resampler, decode_clip
from sslsep.config import AudioConfig
from sslsep.data.sources import _shard_batch_rows

CFG = AudioConfig(clip_seconds=0.25)
FUZZ = settings(max_examples=60, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_decoded(d) -> None:
    """The decoder's contract, whatever the input."""
    assert d.status in KEEP_STATUSES + SKIP_STATUSES, d.status
    if d.status in KEEP_STATUSES:
        assert d.audio is not None and d.audio.dtype == np.float32 and d.audio.shape == (CFG.num_samples,)
        assert np.isfinite(d.audio).all(), "non-finite audio with a keep status"
    else:
        assert d.audio is None and d.detail, (d.status, d.detail)


def encode(fmt: str, subtype: str, rate: int, channels: int, frames: int, seed: int) -> bytes:
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, (frames, channels)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


FORMATS = st.sampled_from([("WAV", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_24"), ("FLAC", "PCM_16"),
                           ("OGG", "VORBIS")])
@st.composite
def encoded(draw) -> bytes:
    fmt, subtype = draw(FORMATS)
    return encode(fmt, subtype, draw(st.sampled_from([8000, 11025, 16000, 22050, 44100, 12347])),
                  draw(st.integers(1, 3)), draw(st.integers(0, 3000)), draw(st.integers(0, 2**16)))


@FUZZ
@given(st.binary(max_size=4096))
def test_decode_random_bytes(data):
    check_decoded(decode_clip(data, CFG, key="fuzz"))


@FUZZ
@given(st.sampled_from([b"RIFF", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"RF64"]),
       st.binary(max_size=2048))
def test_decode_magic_then_garbage(magic, rest):
    check_decoded(decode_clip(magic + rest, CFG))


@FUZZ
@given(encoded(), st.data())
def test_decode_truncated_files(data, draw):
    cut = draw.draw(st.integers(0, len(data)))
    d = decode_clip(data[:cut], CFG)
    check_decoded(d)
    if cut == 0:
        assert d.status == "empty"


@FUZZ
@given(encoded(), st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=16),
       st.booleans())
def test_decode_mutated_files(data, edits, header_only):
    """Overwrite bytes: in the first 64 (header: rates, channel counts, chunk sizes) or anywhere."""
    buf = bytearray(data)
    span = min(len(buf), 64) if header_only else len(buf)
    for pos, value in edits:
        buf[pos % span] = value
    check_decoded(decode_clip(bytes(buf), CFG))


WAV_16K = encode("WAV", "PCM_16", 16000, 1, 800, 0)


@settings(FUZZ, max_examples=25)  # each example builds a resampling kernel
@given(st.one_of(st.integers(1, 2**32 - 1), st.integers(1000, 100_000)))
def test_decode_any_header_rate_is_quick(rate):
    """A corrupt (or exotic) sample rate in a WAV header: decoded or skipped in bounded time
    and memory (torchaudio's kernel for coprime rates once took 7 GB and 35 s)."""
    assert WAV_16K[24:28] == (16000).to_bytes(4, "little")
    data = WAV_16K[:24] + rate.to_bytes(4, "little") + (2 * rate % 2**32).to_bytes(4, "little") + WAV_16K[32:]
    _resampler.cache_clear()  # time the kernel too: a cached one would hide its cost
    t0 = time.monotonic()
    d = decode_clip(data, CFG)
    assert time.monotonic() - t0 < 2.0, rate
    check_decoded(d)
    assert d.status in ("ok", "unreadable"), (d.status, d.detail)


@FUZZ
@given(st.sampled_from(["WAV", "FLAC"]), st.integers(1, 3),
       st.sampled_from([np.nan, np.inf, -np.inf, 3e38, 0.0, 1e-30]), st.integers(0, 999))
def test_decode_extreme_sample_values(fmt, channels, value, where):
    """NaN/Inf (float WAV keeps them), values at float32's limit (a downmix overflows),
    silence and denormal-scale values."""
    x = np.random.default_rng(where).uniform(-0.5, 0.5, (1000, channels)).astype(np.float32)
    x[where:] = value
    if fmt == "FLAC":  # integer PCM: NaN/Inf cannot be written, large values clip
        x = np.clip(np.nan_to_num(x), -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format=fmt, subtype="FLOAT" if fmt == "WAV" else "PCM_16")
    d = decode_clip(buf.getvalue(), CFG)
    check_decoded(d)
    if fmt == "WAV" and not np.isfinite(value):
        assert d.status == "non_finite"


# --------------------------------------------------------------------------- shard rows

VALUES = {"bytes": st.one_of(st.binary(max_size=512), encoded()),
          "none": st.none(),
          "str": st.text(max_size=8),
          "int": st.integers(-5, 5),
          "float": st.one_of(st.floats(allow_nan=True), st.integers(-5, 5).map(float)),
          "list": st.lists(st.one_of(st.text(max_size=4), st.none()), max_size=3),
          "array": st.lists(st.text(max_size=4), max_size=3).map(lambda v: np.array(v, dtype=object))}


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def legal(col: str, v) -> bool:
    """What the shard decoder must accept (nulls included; Ray hands nullable integer
    columns over as float64 with NaN); anything else must be a ValueError naming the clip.
    Every audio value is legal: a non-bytes one is a named skip, not an error."""
    if col == "audio_bytes" or _missing(v):
        return True
    if col == "labels":
        return isinstance(v, (list, np.ndarray))
    if col == "fold":
        return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    return isinstance(v, str)  # group


@st.composite
def shard_batches(draw) -> dict:
    n = draw(st.integers(1, 4))
    batch = {"clip_id": [f"clip-{i}" for i in range(n)]}
    for col in ("audio_bytes", "labels", "fold", "group"):
        if col in ("fold", "group") and draw(st.booleans()):
            continue  # optional columns
        batch[col] = [draw(st.sampled_from(list(VALUES)).flatmap(VALUES.get)) for _ in range(n)]
    return batch


@settings(FUZZ, max_examples=40)
@given(shard_batches())
def test_shard_rows_are_named_or_a_clear_error(batch):
    wrong = [(col, batch["clip_id"][i]) for col, values in batch.items() if col != "clip_id"
             for i, v in enumerate(values) if not legal(col, v)]
    try:
        rows = _shard_batch_rows(batch, CFG)
    except ValueError as e:
        assert wrong, f"ValueError on a legal batch: {e}"
        assert any(f"clip {cid!r}: {col}" in str(e) for col, cid in wrong), str(e)
        return
    assert not wrong, f"accepted values of the wrong type: {wrong}"
    assert [r["clip_id"] for r in rows] == batch["clip_id"]  # one row per input, in order
    for r, data in zip(rows, batch["audio_bytes"]):
        assert r["status"] in KEEP_STATUSES + SKIP_STATUSES
        assert r["audio"].shape == (CFG.num_samples,) and np.isfinite(r["audio"]).all()
        assert isinstance(r["fold"], int) and isinstance(r["group"], str)
        assert all(isinstance(lab, str) for lab in r["labels"])
        if r["status"] in SKIP_STATUSES:
            assert r["detail"], "a skip says why"
        if not isinstance(data, bytes) or not data:
            assert r["status"] in ("empty", "unreadable")


@pytest.mark.parametrize("clip_id", [None, "", 7])
def test_shard_row_without_a_clip_name_is_an_error(clip_id):
    with pytest.raises(ValueError, match="is not a clip name"):
        _shard_batch_rows({"clip_id": [clip_id], "audio_bytes": [b""], "labels": [[]]}, CFG)
