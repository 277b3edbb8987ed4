"""Separation metrics: SI-SNR, multi-source SI-SNRi, single-source SI-SNR.

Conventions
-----------
* All signals are zero-meaned first (scale- and offset-invariant SNR, Le Roux et al. 2019).
* Silent references (energy <= ``silence_energy``) and padded references (``ref_mask``
  False) get NaN per-reference values; :func:`mean_valid` averages only finite entries, so
  no NaN leaks into averages.
* :func:`multi_source_si_snri` reports by default ``assignment="best"``: for each reference,
  the best-matching output (max SI-SNR over the M outputs; several references may pick
  the same output; this is the convention of the MixIT / Fonseca et al. 2021 analyses).
  ``assignment="one_to_one"`` is the FUSS-style metric: the optimal one-to-one matching of
  valid references to distinct outputs (exhaustive over permutations; fine for K, M <= 8).
  It is never higher than "best".
"""

from __future__ import annotations

import itertools

import torch

_EPS = 1e-8


def si_snr(est: torch.Tensor, ref: torch.Tensor, eps: float = _EPS,
           max_db: float | None = None) -> torch.Tensor:
    """Scale-invariant SNR in dB of est vs ref over the last axis: (..., T) -> (...).

    eps keeps silent inputs finite (silent ref -> very negative unless est is silent too).
    ``max_db`` optionally clamps the upper end (a perfect estimate otherwise gives
    ~10 log10(||ref||^2 / eps) or the float rounding floor, i.e. a large arbitrary number).
    """
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)  # (..., 1)
    target = alpha * ref  # (..., T)
    noise = est - target  # (..., T)
    val = 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))
    return val if max_db is None else val.clamp(max=max_db)


def pairwise_si_snr(est: torch.Tensor, refs: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """SI-SNR of every output vs every reference: est (B, M, T), refs (B, K, T) -> (B, K, M).

    Uses inner products (no (B, K, M, T) broadcast), in float64 for accuracy.
    """
    e = est.double() - est.double().mean(-1, keepdim=True)  # (B, M, T)
    r = refs.double() - refs.double().mean(-1, keepdim=True)  # (B, K, T)
    dot = torch.einsum("bkt,bmt->bkm", r, e)  # (B, K, M)
    rr = r.pow(2).sum(-1).unsqueeze(-1)  # (B, K, 1)
    ee = e.pow(2).sum(-1).unsqueeze(1)  # (B, 1, M)
    alpha = dot / (rr + eps)  # (B, K, M)
    target = alpha.pow(2) * rr  # (B, K, M)
    noise = (ee - 2 * alpha * dot + target).clamp_min(0.0)  # (B, K, M)
    return (10 * torch.log10((target + eps) / (noise + eps))).to(est.dtype)


def valid_refs(refs: torch.Tensor, ref_mask: torch.Tensor | None = None,
               silence_energy: float = 1e-8) -> torch.Tensor:
    """(B, K) bool: reference is present (mask) and not silent (zero-mean energy > threshold)."""
    r = refs - refs.mean(-1, keepdim=True)
    valid = r.pow(2).sum(-1) > silence_energy  # (B, K)
    return valid if ref_mask is None else valid & ref_mask.bool()


def _one_to_one(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Output index per reference (B, K) maximising the summed score of valid refs."""
    B, K, M = scores.shape
    if K > M:
        raise ValueError(f"one_to_one needs K <= M, got K={K}, M={M}")
    perms = torch.tensor(list(itertools.permutations(range(M), K)), device=scores.device)  # (P, K)
    masked = torch.where(valid.unsqueeze(-1), scores, torch.zeros_like(scores))  # (B, K, M)
    gathered = masked.unsqueeze(1).expand(B, perms.shape[0], K, M).gather(
        -1, perms.view(1, -1, K, 1).expand(B, -1, K, 1)).squeeze(-1)  # (B, P, K)
    best = gathered.sum(-1).argmax(dim=1)  # (B,)
    return perms[best]  # (B, K)


def multi_source_si_snri(est: torch.Tensor, refs: torch.Tensor, mixture: torch.Tensor,
                         ref_mask: torch.Tensor | None = None, assignment: str = "best",
                         silence_energy: float = 1e-8, return_index: bool = False):
    """Per-reference SI-SNR improvement (dB) of the matched output over the mixture.

    Args:
        est: (B, M, T) separated outputs. refs: (B, K, T) reference sources.
        mixture: (B, T) the separator input. ref_mask: (B, K) bool, False = padded ref.
        assignment: "best" (default; best output per reference) or "one_to_one" (FUSS-style).
    Returns:
        (B, K) SI-SNRi with NaN for padded or silent references; with ``return_index`` also
        the matched output index (B, K) (-1 for invalid references).
    """
    valid = valid_refs(refs, ref_mask, silence_energy)  # (B, K)
    scores = pairwise_si_snr(est, refs)  # (B, K, M)
    if assignment == "best":
        index = scores.argmax(dim=-1)  # (B, K)
    elif assignment == "one_to_one":
        index = _one_to_one(scores, valid)  # (B, K)
    else:
        raise ValueError(f"assignment must be 'best' or 'one_to_one', got {assignment!r}")
    matched = scores.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # (B, K)
    base = si_snr(mixture.unsqueeze(1).expand_as(refs), refs)  # (B, K)
    improvement = torch.where(valid, matched - base, torch.full_like(matched, float("nan")))
    if return_index:
        return improvement, torch.where(valid, index, torch.full_like(index, -1))
    return improvement


def single_source_si_snr(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """SI-SNR (dB) of the sum of the outputs vs the single source: (B, M, T), (B, T) -> (B,)."""
    return si_snr(est.sum(dim=1), ref)


def mean_valid(values: torch.Tensor) -> torch.Tensor:
    """Mean over finite entries only (NaN/inf = invalid refs); NaN only if none is finite."""
    finite = torch.isfinite(values)
    count = finite.sum()
    total = torch.where(finite, values, torch.zeros_like(values)).sum()
    return total / count if count > 0 else torch.tensor(float("nan"), dtype=values.dtype)
