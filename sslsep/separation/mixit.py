"""Mixture invariant training (MixIT, Wisdom et al. 2020) loss.

The separator sees a mixture of two mixtures (MoM) and outputs M estimates; MixIT picks the
assignment of every output to one of the two reference mixtures that minimises the summed
thresholded negative SNR of the two remixes, and trains on that assignment only.

Search: all 2^M assignments at once, without materialising the (B, 2^M, 2, T) remixes
(1 GB for M=8, B=8, T=64000). With A the (2^M, 2, M) binary mixing matrices,

    ||x_r - A_r est||^2 = x_r.x_r - 2 A_r (est . x_r) + A_r (est est^T) A_r^T

needs only the (B, M, M) Gram matrix and the (B, M, 2) cross-correlations: O(B M^2 T) +
O(B 2^M M^2). These are computed in float64 (the expansion subtracts large nearly equal
terms) and clamped at 0; they serve only the argmin. The chosen remix's loss is then
recomputed directly from ``est`` so gradients are those of the plain MixIT loss.
"""

from __future__ import annotations

import torch

_EPS = 1e-8
_MIXING_CACHE: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def mixing_matrices(n_outputs: int, device: torch.device | str = "cpu"):
    """Bits (2^M, M) (1 = output goes to mixture 1) and mixing A (2^M, 2, M), cached per (M, device).

    Float64 so the Gram-term einsums run in float64; callers cast where needed.
    """
    key = (n_outputs, str(torch.device(device)))
    if key not in _MIXING_CACHE:
        codes = torch.arange(2 ** n_outputs, device=device)
        bits = (codes.unsqueeze(1) >> torch.arange(n_outputs, device=device)) & 1  # (A, M)
        mix = torch.stack([1 - bits, bits], dim=1).to(torch.float64)  # (A, 2, M)
        _MIXING_CACHE[key] = (bits, mix)
    return _MIXING_CACHE[key]


def _neg_snr(err: torch.Tensor, ref_energy: torch.Tensor, tau: float) -> torch.Tensor:
    """10 log10(err + tau ||x||^2 + eps) - 10 log10(||x||^2 + eps): -SNR, floored at -snr_max.

    The eps terms keep silent references finite: a silent mixture gives
    10 log10((err + eps) / eps), which pushes its assigned outputs to silence.
    """
    return 10 * torch.log10(err + tau * ref_energy + _EPS) - 10 * torch.log10(ref_energy + _EPS)


def assignment_errors(est: torch.Tensor, mixtures: torch.Tensor) -> torch.Tensor:
    """Squared remix errors for every assignment: (B, 2^M, 2), float64, via the Gram trick."""
    e64, x64 = est.detach().double(), mixtures.detach().double()
    gram = torch.einsum("bmt,bnt->bmn", e64, e64)  # (B, M, M)
    cross = torch.einsum("bmt,brt->bmr", e64, x64)  # (B, M, 2)
    xx = x64.pow(2).sum(-1)  # (B, 2)
    _, mix = mixing_matrices(est.shape[1], est.device)  # (A, 2, M)
    lin = torch.einsum("arm,bmr->bar", mix, cross)  # (B, A, 2)
    quad = torch.einsum("arm,bmn,arn->bar", mix, gram, mix)  # (B, A, 2)
    return (xx.unsqueeze(1) - 2 * lin + quad).clamp_min(0.0)  # (B, A, 2)


def mixit_loss(est: torch.Tensor, mixtures: torch.Tensor, snr_max: float = 30.0):
    """MixIT loss per example.

    Args:
        est: (B, M, T) separated outputs.
        mixtures: (B, 2, T) the two reference mixtures that were summed into the input.
        snr_max: soft SNR threshold in dB (tau = 10^(-snr_max/10)); the best possible
            loss is 2 * 10 log10((tau ||x||^2 + eps) / (||x||^2 + eps)) ~= -2 snr_max.

    Returns:
        loss (B,): sum over the two references of the thresholded -SNR of the best remix
            (differentiable w.r.t. ``est``; the caller reduces over the batch).
        assignment (B, M) long in {0, 1}: the reference mixture each output went to.
    """
    if est.dim() != 3 or mixtures.dim() != 3 or mixtures.shape[1] != 2:
        raise ValueError(f"expected est (B, M, T) and mixtures (B, 2, T), got "
                         f"{tuple(est.shape)} and {tuple(mixtures.shape)}")
    if est.shape[0] != mixtures.shape[0] or est.shape[-1] != mixtures.shape[-1]:
        raise ValueError(f"batch/length mismatch: {tuple(est.shape)} vs {tuple(mixtures.shape)}")
    tau = 10.0 ** (-snr_max / 10.0)
    with torch.no_grad():
        err = assignment_errors(est, mixtures)  # (B, A, 2)
        xx = mixtures.detach().double().pow(2).sum(-1).unsqueeze(1)  # (B, 1, 2)
        best = _neg_snr(err, xx, tau).sum(-1).argmin(dim=1)  # (B,)
        bits, mix = mixing_matrices(est.shape[1], est.device)
        assignment = bits[best]  # (B, M)
    # Half-precision outputs (autocast) are lifted to float32: energies of 64k samples
    # overflow/underflow fp16 and lose the threshold term in bf16.
    work = est.float() if est.dtype in (torch.float16, torch.bfloat16) else est
    refs = mixtures.to(work.dtype)
    remix = torch.einsum("brm,bmt->brt", mix[best].to(work.dtype), work)  # (B, 2, T)
    err_direct = (refs - remix).pow(2).sum(-1)  # (B, 2)
    loss = _neg_snr(err_direct, refs.pow(2).sum(-1), tau).sum(-1)  # (B,)
    return loss, assignment


def mixture_of_mixtures(clips: torch.Tensor):
    """Pair consecutive clips (0,1), (2,3), ... into MoMs.

    Args:
        clips: (B, T) single mixtures.
    Returns:
        mom (B // 2, T) = sum of each pair, mixtures (B // 2, 2, T). With odd B the last
        clip is dropped (it has no partner; the caller's batch sampler decides whether
        to keep it for the next batch).
    """
    if clips.dim() != 2:
        raise ValueError(f"clips must be (B, T), got {tuple(clips.shape)}")
    pairs = clips.shape[0] // 2
    if pairs == 0:
        raise ValueError("mixture_of_mixtures needs at least 2 clips")
    mixtures = clips[: 2 * pairs].reshape(pairs, 2, clips.shape[-1])  # (B/2, 2, T)
    return mixtures.sum(dim=1), mixtures  # (B/2, T), (B/2, 2, T)
