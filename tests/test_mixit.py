"""MixIT loss: Gram-trick search vs brute force, invariances, floor value, gradients, silence."""

import itertools
import math
import time

import pytest
import torch

from sslsep.separation.mixit import (assignment_errors, mixing_matrices, mixit_loss,
                                     mixture_of_mixtures)

EPS = 1e-8


def brute_force(est, mixtures, snr_max=30.0):
    """Loop over every assignment in float64; returns (loss (B,), assignment (B, M))."""
    tau = 10 ** (-snr_max / 10)
    est, mixtures = est.double(), mixtures.double()
    B, M, _ = est.shape
    losses, assigns = [], []
    for b in range(B):
        best, best_bits = math.inf, None
        for bits in itertools.product([0, 1], repeat=M):
            total = 0.0
            for r in range(2):
                remix = sum(est[b, m] for m in range(M) if bits[m] == r)
                xx = float(mixtures[b, r].pow(2).sum())
                err = float((mixtures[b, r] - remix).pow(2).sum())
                total += 10 * math.log10(err + tau * xx + EPS) - 10 * math.log10(xx + EPS)
            if total < best:
                best, best_bits = total, bits
        losses.append(best)
        assigns.append(best_bits)
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(assigns)


@pytest.mark.parametrize("M", [2, 3, 4, 5])
def test_matches_brute_force(M):
    g = torch.Generator().manual_seed(M)
    est = torch.randn(3, M, 200, generator=g)
    mixtures = torch.randn(3, 2, 200, generator=g)
    loss, assign = mixit_loss(est, mixtures)
    ref_loss, ref_assign = brute_force(est, mixtures)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-4, atol=1e-4)
    assert torch.equal(assign, ref_assign)
    assert loss.shape == (3,) and assign.shape == (3, M)


def test_permutation_invariance():
    g = torch.Generator().manual_seed(0)
    est = torch.randn(4, 5, 300, generator=g)
    mixtures = torch.randn(4, 2, 300, generator=g)
    perm = torch.tensor([3, 0, 4, 1, 2])
    loss, assign = mixit_loss(est, mixtures)
    loss_p, assign_p = mixit_loss(est[:, perm], mixtures)
    torch.testing.assert_close(loss, loss_p)
    assert torch.equal(assign_p, assign[:, perm])


def test_perfect_estimates_reach_threshold_floor():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(2, 4, 500, generator=g)  # sources 0,1 -> mixture 0; 2,3 -> mixture 1
    mixtures = torch.stack([src[:, 0] + src[:, 1], src[:, 2] + src[:, 3]], dim=1)
    est = torch.cat([src[:, [2, 0, 3, 1]], torch.zeros(2, 2, 500)], dim=1)  # (2, 6, T)
    loss, assign = mixit_loss(est, mixtures, snr_max=30.0)
    tau = 1e-3
    xx = mixtures.double().pow(2).sum(-1)
    expected = (10 * torch.log10((tau * xx + EPS) / (xx + EPS))).sum(-1)  # ~= -60
    torch.testing.assert_close(loss.double(), expected, atol=1e-3, rtol=0)
    assert torch.allclose(expected, torch.full((2,), -60.0, dtype=torch.float64), atol=1e-6)
    assert assign[:, :4].tolist() == [[1, 0, 1, 0]] * 2  # silent outputs may go anywhere


def test_gradients_flow():
    g = torch.Generator().manual_seed(2)
    est = torch.randn(2, 4, 256, generator=g, requires_grad=True)
    mixtures = torch.randn(2, 2, 256, generator=g)
    loss, _ = mixit_loss(est, mixtures)
    loss.mean().backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


def test_m8_fast_and_matches_direct():
    g = torch.Generator().manual_seed(3)
    est = torch.randn(4, 8, 16000, generator=g)
    mixtures = torch.randn(4, 2, 16000, generator=g)
    mixit_loss(est, mixtures)  # warm the mixing-matrix cache
    start = time.perf_counter()
    loss, assign = mixit_loss(est, mixtures)
    assert time.perf_counter() - start < 3.0  # ~0.1 s on an idle 2-core CPU
    _, mix = mixing_matrices(8)
    err = assignment_errors(est, mixtures)  # (B, 256, 2)
    for chunk in range(0, 256, 64):  # direct remixes in chunks to bound memory
        remix = torch.einsum("arm,bmt->bart", mix[chunk:chunk + 64], est.double())
        direct = (mixtures.double().unsqueeze(1) - remix).pow(2).sum(-1)  # (B, 64, 2)
        torch.testing.assert_close(err[:, chunk:chunk + 64], direct, rtol=1e-9, atol=1e-6)
    # The chosen assignment's loss equals the direct loss of that remix.
    chosen = mix[(assign * (2 ** torch.arange(8))).sum(-1)]  # (B, 2, M)
    remix = torch.einsum("brm,bmt->brt", chosen, est.double())
    xx = mixtures.double().pow(2).sum(-1)
    e = (mixtures.double() - remix).pow(2).sum(-1)
    direct_loss = (10 * torch.log10(e + 1e-3 * xx + EPS) - 10 * torch.log10(xx + EPS)).sum(-1)
    torch.testing.assert_close(loss.double(), direct_loss, rtol=1e-5, atol=1e-4)


def test_float32_cancellation_near_perfect():
    # Near-perfect estimates of loud signals: the expanded error is a difference of large
    # terms; float64 + clamp must still pick the right partition.
    g = torch.Generator().manual_seed(4)
    src = 100 * torch.randn(1, 3, 4000, generator=g)
    mixtures = torch.stack([src[:, 0] + src[:, 2], src[:, 1]], dim=1)
    est = src + 1e-4 * torch.randn(1, 3, 4000, generator=g)
    loss, assign = mixit_loss(est, mixtures)
    assert assign.tolist() == [[0, 1, 0]]
    assert (assignment_errors(est, mixtures) >= 0).all()
    assert loss.item() < -59


def test_silent_references_finite():
    est = torch.randn(2, 4, 128, requires_grad=True)
    mixtures = torch.randn(2, 2, 128)
    mixtures[0, 1] = 0.0  # one silent reference
    mixtures[1] = 0.0  # an all-zero example
    loss, _ = mixit_loss(est, mixtures)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(est.grad).all()
    zero_loss, _ = mixit_loss(torch.zeros(1, 3, 64), torch.zeros(1, 2, 64))
    assert torch.isfinite(zero_loss).all() and zero_loss.abs().item() < 1e-4


def test_mixing_matrix_cache_and_layout():
    bits, mix = mixing_matrices(3)
    assert mixing_matrices(3)[1] is mix
    assert mix.shape == (8, 2, 3) and torch.equal(mix.sum(1), torch.ones(8, 3, dtype=mix.dtype))
    assert bits[5].tolist() == [1, 0, 1]  # bit m of the code = output m goes to mixture 1


def test_mixture_of_mixtures_pairs_and_drops_odd():
    clips = torch.arange(5 * 4, dtype=torch.float32).reshape(5, 4)
    mom, mixtures = mixture_of_mixtures(clips)
    assert mom.shape == (2, 4) and mixtures.shape == (2, 2, 4)
    assert torch.equal(mixtures[1, 0], clips[2]) and torch.equal(mom[0], clips[0] + clips[1])
    with pytest.raises(ValueError):
        mixture_of_mixtures(clips[:1])


def test_half_precision_estimates_give_float32_loss():
    est = torch.randn(2, 3, 64000).bfloat16().requires_grad_()
    mixtures = torch.randn(2, 2, 64000)
    loss, _ = mixit_loss(est, mixtures)
    loss.sum().backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    assert est.grad.dtype == torch.bfloat16
