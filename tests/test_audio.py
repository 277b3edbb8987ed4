import io

import numpy as np
import pytest
import soundfile as sf
import torch

from sslsep.audio import DecodeReport, LogMel, crop_or_pad, decode_clip, resample
from sslsep.config import AudioConfig

from conftest import tone


def test_each_bad_file_gets_its_named_status(bad_folder):
    root, expected = bad_folder
    cfg = AudioConfig(clip_seconds=1.0)
    for rel, status in expected.items():
        d = decode_clip((root / rel).read_bytes(), cfg, key=rel)
        assert d.status == status, (rel, d.status, d.detail)
        if d.skipped:
            assert d.audio is None and d.detail
        else:
            assert d.audio.shape == (16000,) and d.audio.dtype == np.float32
            assert np.isfinite(d.audio).all()


def test_conversions_are_recorded_and_correct():
    cfg = AudioConfig(clip_seconds=1.0)
    buf = io.BytesIO()
    sf.write(buf, tone(rate=44100, channels=2, freq=1000), 44100, format="WAV", subtype="FLOAT")
    d = decode_clip(buf.getvalue(), cfg)
    assert d.status == "ok" and d.source_rate == 44100 and d.source_channels == 2
    assert "downmixed from 2 channels" in d.conversions and "resampled from 44100 Hz" in d.conversions
    spectrum = np.abs(np.fft.rfft(d.audio))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 1000) <= 2  # the tone stays at 1 kHz


def test_crop_pad():
    x = np.arange(10, dtype=np.float32)
    assert crop_or_pad(x, 4, "start").tolist() == [0, 1, 2, 3]
    assert crop_or_pad(x, 4, "center").tolist() == [3, 4, 5, 6]
    a, b = crop_or_pad(x, 4, "random", "clip-a"), crop_or_pad(x, 4, "random", "clip-a")
    assert a.tolist() == b.tolist()  # a pure function of the key
    assert crop_or_pad(x, 12).tolist() == list(range(10)) + [0, 0]
    with pytest.raises(ValueError):
        crop_or_pad(x, 4, "nope")


def test_resample_length_and_identity():
    x = tone(1.0, 22050)
    y = resample(x, 22050, 16000)
    assert y.shape == (16000,) and y.dtype == np.float32
    assert resample(x, 22050, 22050) is x


def test_logmel_shape_and_defaults():
    cfg = AudioConfig()
    lm = LogMel(cfg)
    out = lm(torch.from_numpy(np.stack([tone(1.0), tone(1.0, freq=2000)])))
    assert out.shape == (2, 64, 101)  # 10 ms hop, centred frames
    assert lm.mel.win_length == 400 and lm.hop_length == 160
    assert torch.isfinite(out).all()
    # a 440 Hz tone has its energy in a lower band than a 2 kHz tone
    assert out[0].mean(-1).argmax() < out[1].mean(-1).argmax()


def test_report_counts_and_names():
    r = DecodeReport()
    r.add("a", "ok")
    r.add("b", "ok", "resampled from 44100 Hz")
    r.add("c", "silent")
    r.add("d", "truncated", "cut")
    r.add_label_problem("e.wav", "missing_file", "row 3")
    assert r.total == 4 and r.kept == 3
    assert [s[0] for s in r.skipped] == ["d"] and r.silent == ["c"]
    assert r.label_problems == [("e.wav", "missing_file", "row 3")]
    assert r.converted == {"resampled": 1}
    text = r.summary()
    assert "skipped d: truncated (cut)" in text and "silent  c" in text
    assert "labels  e.wav: missing_file (row 3)" in text
