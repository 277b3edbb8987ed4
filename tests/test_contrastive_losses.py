"""Contrastive objectives: hand values, a brute-force reference, symmetry, gather, training."""

import math

import pytest
import torch
import torch.nn.functional as F

from sslsep.contrastive.losses import (BilinearSimilarity, CoincidenceHead, all_gather_with_grad,
                                       coincidence_accuracy, coincidence_loss, coincidence_pairs,
                                       joint_loss, multiview_nt_xent)

torch.set_num_threads(1)


def reference_nt_xent(z, temperature=0.1, similarity="cosine", W=None):
    """Double loop over anchors and candidates, straight from the SupCon L_out formula."""
    B, V, _ = z.shape
    out = []
    for b in range(B):
        for v in range(V):
            a = z[b, v]

            def s(x, a=a):
                if similarity == "cosine":
                    return F.cosine_similarity(a, x, dim=0) / temperature
                return a @ W @ x

            denom = sum(torch.exp(s(z[c, w])) for c in range(B) for w in range(V) if (c, w) != (b, v))
            terms = [torch.log(torch.exp(s(z[b, p])) / denom) for p in range(V) if p != v]
            out.append(-sum(terms) / (V - 1))
    return torch.stack(out)


def test_orthogonal_views_give_log_of_the_candidate_count():
    # Four orthogonal unit vectors: every similarity is 0, so each anchor's softmax is
    # uniform over its 3 candidates and the loss is log(3).
    z = torch.eye(4).reshape(2, 2, 4)
    loss = multiview_nt_xent(z, temperature=0.1)
    assert torch.allclose(loss, torch.full((4,), math.log(3.0)))


def test_aligned_views_by_hand_and_small():
    # Clip 0's views are both e0, clip 1's both e1: the positive scores 1/tau = 10, the two
    # negatives 0, so loss = -log(e^10 / (e^10 + 2)) = log(1 + 2 e^-10).
    e = torch.eye(2, dtype=torch.float64)  # float32 loses the 1e-4 value to rounding
    z = torch.stack([torch.stack([e[0], e[0]]), torch.stack([e[1], e[1]])])  # (2, 2, 2)
    loss = multiview_nt_xent(z, temperature=0.1)
    assert torch.allclose(loss, torch.full((4,), math.log1p(2 * math.exp(-10)), dtype=torch.float64))
    assert loss.max() < 1e-3


@pytest.mark.parametrize("V", [2, 3])
@pytest.mark.parametrize("similarity", ["cosine", "bilinear"])
def test_vectorised_equals_double_loop(V, similarity):
    g = torch.Generator().manual_seed(V)
    z = torch.randn(3, V, 5, generator=g, dtype=torch.float64)
    W = torch.randn(5, 5, generator=g, dtype=torch.float64) * 0.3 if similarity == "bilinear" else None
    got = multiview_nt_xent(z, 0.2, similarity, W)
    assert got.shape == (3 * V,)
    assert torch.allclose(got, reference_nt_xent(z, 0.2, similarity, W))


def test_swapping_view_order_leaves_the_mean_unchanged():
    z = torch.randn(4, 3, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    perm = torch.tensor([2, 0, 1])
    a, b = multiview_nt_xent(z), multiview_nt_xent(z[:, perm])
    assert torch.allclose(a.mean(), b.mean())
    # Stronger: each anchor keeps its own loss, only the order changes.
    assert torch.allclose(a.reshape(4, 3)[:, perm], b.reshape(4, 3))


def test_one_view_raises():
    with pytest.raises(ValueError, match="at least 2 views"):
        multiview_nt_xent(torch.randn(4, 1, 8))
    with pytest.raises(ValueError, match="needs W"):
        multiview_nt_xent(torch.randn(4, 2, 8), similarity="bilinear")


def test_bilinear_gives_W_gradients():
    sim = BilinearSimilarity(6)
    z = torch.randn(4, 2, 6, requires_grad=True)
    loss = multiview_nt_xent(z, similarity="bilinear", W=sim.W)
    assert torch.isfinite(loss).all()
    loss.mean().backward()
    assert sim.W.grad is not None and sim.W.grad.abs().sum() > 0
    assert z.grad.abs().sum() > 0
    a, b = torch.randn(3, 6), torch.randn(5, 6)
    assert torch.allclose(sim(a, b), a @ sim.W @ b.T)


def test_gather_identity_equals_no_gather_and_all_gather_is_identity_without_dist():
    z = torch.randn(4, 3, 8, generator=torch.Generator().manual_seed(2))
    ref = multiview_nt_xent(z)
    assert torch.allclose(multiview_nt_xent(z, gather=lambda x: x), ref)
    assert torch.allclose(multiview_nt_xent(z, gather=all_gather_with_grad), ref)
    assert all_gather_with_grad(z) is z


@pytest.mark.parametrize("rank", [0, 1])
def test_gather_adds_negatives_but_keeps_anchors_local(rank):
    # Two fake workers of 3 clips: worker `rank`'s anchors against the global 6-clip batch
    # are the matching rows of the loss over the whole batch.
    full = torch.randn(6, 2, 8, generator=torch.Generator().manual_seed(3))
    local = full[3 * rank:3 * rank + 3].clone().requires_grad_(True)
    gather = lambda x: full.detach()  # noqa: E731  (not differentiable, like a plain all_gather)
    got = multiview_nt_xent(local, gather=gather, rank=rank)
    want = multiview_nt_xent(full)[6 * rank:6 * rank + 6]
    assert torch.allclose(got, want, atol=1e-6)
    got.sum().backward()  # the spliced local rows carry gradient through positives too
    assert local.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="gather returned"):
        multiview_nt_xent(local.detach(), gather=lambda x: x, rank=1)


def test_coincidence_head_is_symmetric():
    head = CoincidenceHead(8, hidden=16)
    e1, e2 = torch.randn(5, 8), torch.randn(5, 8)
    assert head(e1, e2).shape == (5,)
    assert torch.equal(head(e1, e2), head(e2, e1))


def test_coincidence_pairs_are_balanced_and_correct():
    B, V = 5, 3
    idx1, idx2, target = coincidence_pairs(B, V, torch.Generator().manual_seed(0))
    n_pos = B * V * (V - 1) // 2
    assert idx1.shape == idx2.shape == target.shape == (2 * n_pos,)
    assert int(target.sum()) == n_pos and target.dtype == torch.float32
    c1, c2, v1, v2 = idx1 // V, idx2 // V, idx1 % V, idx2 % V
    pos = target == 1
    assert (c1[pos] == c2[pos]).all() and (v1[pos] != v2[pos]).all()
    assert (c1[~pos] != c2[~pos]).all()
    assert idx1.max() < B * V and idx2.max() < B * V and idx2.min() >= 0
    # Every clip anchors the same number of positives and negatives.
    assert torch.bincount(c1[pos], minlength=B).tolist() == [V * (V - 1) // 2] * B
    assert torch.bincount(c1[~pos], minlength=B).tolist() == [V * (V - 1) // 2] * B
    again = coincidence_pairs(B, V, torch.Generator().manual_seed(0))
    assert torch.equal(again[1], idx2)
    with pytest.raises(ValueError):
        coincidence_pairs(1, 3)
    with pytest.raises(ValueError):
        coincidence_pairs(4, 1)


def test_coincidence_loss_and_accuracy():
    logits = torch.tensor([3.0, -2.0, 0.5, -1.0])
    target = torch.tensor([1.0, 0.0, 0.0, 0.0])
    loss = coincidence_loss(logits, target)
    assert loss.shape == (4,)
    assert torch.allclose(loss[0], F.softplus(torch.tensor(-3.0)))
    assert torch.allclose(loss[2], F.softplus(torch.tensor(0.5)))
    assert coincidence_accuracy(logits, target) == 0.75


def test_joint_loss_weights_and_skips():
    l_sim, l_coinc = torch.tensor([1.0, 3.0]), torch.tensor([0.5, 0.5, 2.0])
    total, parts = joint_loss(l_sim, l_coinc, 2.0, 0.5)
    assert torch.isclose(total, torch.tensor(2.0 * 2.0 + 0.5 * 1.0))
    assert parts == pytest.approx({"sim": 2.0, "coinc": 1.0, "total": 4.5})
    total, parts = joint_loss(l_sim, l_coinc, 1.0, 0.0)  # skipped part still reported
    assert total.item() == 2.0 and parts["coinc"] == 1.0
    total, parts = joint_loss(None, l_coinc, 0.0, 1.0)
    assert total.item() == 1.0 and math.isnan(parts["sim"])
    with pytest.raises(ValueError):
        joint_loss(None, l_coinc, 1.0, 1.0)
    with pytest.raises(ValueError):
        joint_loss(l_sim, l_coinc, 0.0, 0.0)


def test_both_losses_fall_under_adam_on_a_tiny_problem():
    # 8 clips, each a random 16-d "scene"; views are noisy copies. A linear encoder plus the
    # coincidence head must pull views of a clip together and tell pairs apart.
    torch.manual_seed(0)
    B, V, Din, D = 8, 3, 16, 8
    scenes = torch.randn(B, 1, Din)
    views = scenes + 0.5 * torch.randn(B, V, Din)  # (B, V, Din)
    enc, head, sim = torch.nn.Linear(Din, D), CoincidenceHead(D, 16), BilinearSimilarity(D)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters(), *sim.parameters()], lr=1e-2)
    pairs = coincidence_pairs(B, V, torch.Generator().manual_seed(0))

    def losses():
        z = enc(views)  # (B, V, D)
        l_cos = multiview_nt_xent(z, 0.2)
        l_bil = multiview_nt_xent(torch.tanh(z), similarity="bilinear", W=sim.W)
        flat = z.reshape(B * V, D)
        l_co = coincidence_loss(head(flat[pairs[0]], flat[pairs[1]]), pairs[2])
        return l_cos.mean(), l_bil.mean(), l_co.mean()

    before = [x.item() for x in losses()]
    for _ in range(40):
        opt.zero_grad()
        l_cos, l_bil, l_co = losses()
        total, _ = joint_loss(l_cos + l_bil, l_co, 1.0, 1.0)
        total.backward()
        opt.step()
    after = [x.item() for x in losses()]
    assert all(a < 0.7 * b for a, b in zip(after, before)), (before, after)
