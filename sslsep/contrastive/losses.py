"""The two self-supervised objectives on views of separated sound scenes, plus their sum.

Each clip gives V views (mixture, separated channels, channel sums); the encoder maps them to
z (B, V, D). Losses are pure functions that return per-example tensors; the caller reduces.

1. Similarity maximisation, :func:`multiview_nt_xent`: NT-Xent / InfoNCE with in-batch
   negatives, in SupCon's "L_out" form (Khosla et al. 2020, eq. 2): for anchor view (b, v),

       loss = -1/(V-1) * sum_{p: other views of b} log( exp(s(a, p)) / sum_{k != a} exp(s(a, k)) )

   i.e. the log-probability is averaged over the V-1 positives *outside* the log, and the
   denominator holds every other view in the (global) batch, positives included. For V = 2
   this is exactly SimCLR's NT-Xent. Similarity: "cosine" = cos / temperature, or
   "bilinear" = COLA's a^T W b with W (D, D) learned, no normalisation and no temperature
   (as COLA's code; COLA squashes its embeddings with LayerNorm + tanh first, which is the
   caller's choice here).
2. Coincidence prediction, :class:`CoincidenceHead` + :func:`coincidence_pairs` +
   :func:`coincidence_loss`: an MLP decides whether two views come from the same clip.
3. :func:`joint_loss`: w_sim * mean(l_sim) + w_coinc * mean(l_coinc).

Multi-worker: ``gather`` (e.g. :func:`all_gather_with_grad`) turns the local z into the
global batch, whose rows [rank*B, (rank+1)*B) are replaced by the local z so that local
positives and negatives always carry gradient; anchors stay local (SimCLR / solo-learn).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (world * B, ...) concatenated in rank order; identity without a process group.

    Differentiable when ``torch.distributed.nn.functional.all_gather`` exists (gradients go
    back to the rank that owns each row); otherwise a plain all_gather whose result carries
    no gradient (the local rows are spliced back in by :func:`multiview_nt_xent`).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    try:
        from torch.distributed.nn.functional import all_gather
    except ImportError:  # pragma: no cover - very old torch
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)
    return torch.cat(all_gather(x.contiguous()), dim=0)


class BilinearSimilarity(nn.Module):
    """COLA's learned bilinear similarity s(a, b) = a^T W b; holds W (D, D)."""

    def __init__(self, dim: int, init_std: float = 0.05):
        super().__init__()
        # Keras "random_normal" (std 0.05), as COLA's BilinearProduct.
        self.W = nn.Parameter(torch.randn(dim, dim) * init_std)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a (N, D), b (M, D) -> (N, M) similarities."""
        return a @ self.W @ b.T  # (N, M)


def _pairwise_sim(a: torch.Tensor, b: torch.Tensor, temperature: float, similarity: str,
                  W: torch.Tensor | None) -> torch.Tensor:
    """a (N, D), b (M, D) -> logits (N, M)."""
    if similarity == "cosine":
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature  # (N, M)
    if similarity == "bilinear":
        if W is None:
            raise ValueError("similarity='bilinear' needs W (D, D), e.g. BilinearSimilarity(D).W")
        return a @ W @ b.T  # (N, M)
    raise ValueError(f"similarity must be 'cosine' or 'bilinear', got {similarity!r}")


def multiview_nt_xent(z: torch.Tensor, temperature: float = 0.1, similarity: str = "cosine",
                      W: torch.Tensor | None = None,
                      gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      rank: int | None = None) -> torch.Tensor:
    """z (B, V, D) -> per-anchor loss (B*V,), anchor order b*V + v (SupCon L_out, see module).

    ``gather``: z (B, V, D) -> (world*B, V, D); this worker's rows sit at ``rank*B``
    (``rank`` defaults to the torch.distributed rank, or 0). Needs equal B on every worker.
    """
    if z.dim() != 3:
        raise ValueError(f"z must be (B, V, D), got shape {tuple(z.shape)}")
    B, V, D = z.shape
    if V < 2:
        raise ValueError(f"multiview_nt_xent needs at least 2 views per clip, got V={V}")
    offset = 0
    cand = z
    if gather is not None:
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        full = gather(z)  # (Bg, V, D)
        offset = rank * B
        if full.shape[1:] != z.shape[1:] or full.shape[0] < offset + B:
            raise ValueError(f"gather returned {tuple(full.shape)}; expected (world*{B}, {V}, {D}) "
                             f"holding rank {rank}'s rows")
        # Splice the local rows back so they carry gradient even if `gather` does not.
        cand = torch.cat([full[:offset], z, full[offset + B:]], dim=0)  # (Bg, V, D)
    Bg = cand.shape[0]
    logits = _pairwise_sim(z.reshape(B * V, D), cand.reshape(Bg * V, D),
                           temperature, similarity, W)  # (B*V, Bg*V)
    # Candidate (c, w) of anchor (b, v): same clip iff c == offset + b; self iff also w == v.
    anchor_clip = offset + torch.arange(B, device=z.device).repeat_interleave(V)  # (B*V,)
    anchor_view = torch.arange(V, device=z.device).repeat(B)  # (B*V,)
    cand_clip = torch.arange(Bg, device=z.device).repeat_interleave(V)  # (Bg*V,)
    cand_view = torch.arange(V, device=z.device).repeat(Bg)  # (Bg*V,)
    same_clip = anchor_clip[:, None] == cand_clip[None, :]  # (B*V, Bg*V)
    is_self = same_clip & (anchor_view[:, None] == cand_view[None, :])  # (B*V, Bg*V)
    positive = same_clip & ~is_self  # (B*V, Bg*V), V-1 per row
    logits = logits.masked_fill(is_self, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (B*V, Bg*V)
    # where() rather than a product: -inf * 0 on the self entry would give NaN.
    pos_log_prob = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return -pos_log_prob / (V - 1)  # (B*V,)


class CoincidenceHead(nn.Module):
    """(e1 (P, D), e2 (P, D)) -> logit (P,) that the two views come from the same clip.

    Pair features [e1 + e2, |e1 - e2|, e1 * e2] (3D) are each invariant to swapping e1 and
    e2, so the head is exactly symmetric by construction; an MLP (Linear-ReLU-Linear-ReLU-
    Linear) maps them to one logit.
    """

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.config = dict(dim=dim, hidden=hidden)
        self.mlp = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 1))

    def forward(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        feats = torch.cat([e1 + e2, (e1 - e2).abs(), e1 * e2], dim=-1)  # (P, 3D)
        return self.mlp(feats).squeeze(-1)  # (P,)


def coincidence_pairs(B: int, V: int, generator: torch.Generator | None = None,
                      device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Balanced pairs into flattened (B*V) embeddings -> idx1 (P,), idx2 (P,), target (P,).

    Positives: every unordered pair of different views of the same clip (B*V*(V-1)/2).
    Negatives: as many, one per positive, sharing that positive's first view and pairing
    it with a random view of a random *other* clip (so every clip anchors equally often).
    Order: all positives, then all negatives; target float 1.0 / 0.0.
    """
    if V < 2 or B < 2:
        raise ValueError(f"coincidence pairs need B >= 2 clips and V >= 2 views, got B={B}, V={V}")
    v1, v2 = torch.triu_indices(V, V, offset=1)  # (V(V-1)/2,) each
    clip = torch.arange(B).repeat_interleave(v1.numel())  # (P_pos,)
    pos1 = clip * V + v1.repeat(B)  # (P_pos,)
    pos2 = clip * V + v2.repeat(B)  # (P_pos,)
    n = pos1.numel()
    # A uniform non-zero shift mod B picks a uniformly random clip other than `clip`.
    other = (clip + torch.randint(1, B, (n,), generator=generator)) % B  # (P_pos,)
    neg2 = other * V + torch.randint(0, V, (n,), generator=generator)  # (P_pos,)
    idx1 = torch.cat([pos1, pos1])  # (P,)
    idx2 = torch.cat([pos2, neg2])  # (P,)
    target = torch.cat([torch.ones(n), torch.zeros(n)])  # (P,)
    return idx1.to(device), idx2.to(device), target.to(device)


def coincidence_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits (P,), target (P,) in {0, 1} -> per-pair binary cross-entropy (P,)."""
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")


@torch.no_grad()
def coincidence_accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of pairs whose logit sign matches the target (logit > 0 means 'same clip')."""
    return ((logits > 0) == (target > 0.5)).float().mean().item()


def joint_loss(l_sim: torch.Tensor | None, l_coinc: torch.Tensor | None,
               w_sim: float = 1.0, w_coinc: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """l_sim (N,), l_coinc (P,) -> (w_sim * mean(l_sim) + w_coinc * mean(l_coinc), parts).

    A weight of 0 leaves that part out of the graph (its tensor may then be None); ``parts``
    still reports its computed mean when the tensor is given, NaN when it is None.
    parts = {"sim", "coinc", "total"} as floats, for logging.
    """
    total, parts = None, {}
    for name, loss, w in (("sim", l_sim, w_sim), ("coinc", l_coinc, w_coinc)):
        if w < 0:
            raise ValueError(f"loss weight w_{name} must be >= 0, got {w}")
        if loss is None:
            if w > 0:
                raise ValueError(f"w_{name}={w} > 0 but l_{name} is None")
            parts[name] = float("nan")
            continue
        mean = loss.mean()  # ()
        parts[name] = mean.detach().item()
        if w > 0:
            total = w * mean if total is None else total + w * mean
    if total is None:
        raise ValueError("both loss weights are 0: nothing to optimise")
    parts["total"] = total.detach().item()
    return total, parts
