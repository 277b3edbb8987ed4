"""Separation metrics: SI-SNR values, SI-SNRi assignment variants, silent references."""

import math

import torch

from sslsep.separation.metrics import (mean_valid, multi_source_si_snri, pairwise_si_snr,
                                       si_snr, single_source_si_snr)

T = 1600
t = torch.arange(T) / 16000
SIN = torch.sin(2 * math.pi * 500 * t)  # whole periods over T -> zero mean
COS = torch.cos(2 * math.pi * 500 * t)  # orthogonal to SIN, same energy


def test_scaled_reference_is_large_and_clampable():
    assert si_snr(3.0 * SIN, SIN).item() > 80
    assert si_snr(-0.5 * SIN + 2.0, SIN).item() > 80  # scale- and offset-invariant
    assert si_snr(3.0 * SIN, SIN, max_db=50.0).item() == 50.0


def test_equal_energy_orthogonal_noise_is_zero_db():
    assert abs(si_snr(SIN + COS, SIN).item()) < 1e-3


def test_known_value():
    # noise energy 1% of target energy -> 20 dB; independent of the overall scale.
    assert abs(si_snr(SIN + 0.1 * COS, SIN).item() - 20.0) < 1e-3
    assert abs(si_snr(7 * (SIN + 0.1 * COS), SIN).item() - 20.0) < 1e-3


def test_batched_and_pairwise_agree():
    g = torch.Generator().manual_seed(0)
    est, refs = torch.randn(2, 3, T, generator=g), torch.randn(2, 4, T, generator=g)
    pw = pairwise_si_snr(est, refs)  # (B, K, M)
    direct = si_snr(est.unsqueeze(1), refs.unsqueeze(2))  # (B, K, M)
    torch.testing.assert_close(pw, direct, atol=1e-4, rtol=1e-4)


def _scene():
    g = torch.Generator().manual_seed(1)
    refs = torch.randn(2, 3, T, generator=g)
    refs[1, 2] = 0.0  # silent reference
    mixture = refs.sum(1)
    est = torch.cat([refs.flip(1), torch.zeros(2, 1, T)], dim=1)  # perfect, permuted, + a silent output
    est[1, 0] = 1e-3 * torch.randn(T, generator=g)  # the silent ref's slot holds low noise
    return est, refs, mixture


def test_perfect_separation_si_snri_large_and_silent_refs_nan():
    est, refs, mixture = _scene()
    mask = torch.tensor([[True, True, False], [True, True, True]])  # ex. 0 ref 2 is padding
    for assignment in ("best", "one_to_one"):
        vals, idx = multi_source_si_snri(est, refs, mixture, ref_mask=mask,
                                         assignment=assignment, return_index=True)
        assert vals.shape == (2, 3)
        assert torch.isnan(vals[0, 2]) and torch.isnan(vals[1, 2])
        assert (vals[torch.isfinite(vals)] > 30).all()
        assert idx[0].tolist() == [2, 1, -1] and idx[1, 2] == -1
        avg = mean_valid(vals)
        assert torch.isfinite(avg) and avg > 30


def test_one_to_one_never_exceeds_best():
    g = torch.Generator().manual_seed(2)
    refs = torch.randn(1, 2, T, generator=g)
    mixture = refs.sum(1)
    # one output resembles both refs more than the other output does -> "best" reuses it
    est = torch.stack([refs[0, 0] + refs[0, 1], 5 * torch.randn(T, generator=g)]).unsqueeze(0)
    best, bi = multi_source_si_snri(est, refs, mixture, return_index=True)
    o2o, oi = multi_source_si_snri(est, refs, mixture, assignment="one_to_one", return_index=True)
    assert bi[0].tolist() == [0, 0] and sorted(oi[0].tolist()) == [0, 1]
    assert o2o.sum() <= best.sum() + 1e-6


def test_all_silent_and_single_source():
    refs = torch.zeros(1, 2, T)
    vals = multi_source_si_snri(torch.randn(1, 3, T), refs, torch.zeros(1, T))
    assert torch.isnan(vals).all() and torch.isnan(mean_valid(vals))
    assert not torch.isnan(si_snr(torch.zeros(T), torch.zeros(T)))
    est = torch.stack([0.3 * SIN, 0.7 * SIN, 0.01 * COS]).unsqueeze(0)  # outputs sum ~= source
    single = single_source_si_snr(est, SIN.unsqueeze(0))
    assert single.shape == (1,) and abs(single.item() - 40.0) < 1e-2
