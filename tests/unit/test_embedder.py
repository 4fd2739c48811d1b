"""sparselib.embedder against hand-derived cases, brute force and sklearn.

kWTA thresholds and ties by hand; exactly k winners (the top k, found with
numpy's sort) as a hypothesis property; the straight-through gradient; the
soft kWTA in closed form and its hard limit; the scheduler's endpoints;
synaptic scaling and its running mean by hand; the triplet loss against a
hand case, a loop over every triplet and finite differences; centroids
and nearest-centroid predictions against a hand case, brute force and
scikit-learn's NearestCentroid.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.neighbors import NearestCentroid

from sparselib import embedder as E
from sparselib.classifiers import SparseMLP


# --------------------------------------------------------------------------
# k and the threshold


@pytest.mark.parametrize("sparsity,n,k", [
    (0.05, 256, 13),      # 12.8 -> 13 (the source's MNIST embedder)
    (0.05, 512, 26),      # 25.6 -> 26
    (0.07, 100, 7),       # 7.000000000000001 in floating point: still 7
    (0.3, 10, 3),         # 3.0000000000000004
    (0.1, 10, 1),
    (0.5, 3, 2),
    (0.5, 2, 1),
    (1e-9, 100, 1),
    (0.99, 100, 99)])
def test_kwta_k_by_hand(sparsity, n, k):
    assert E.kwta_k(sparsity, n) == k


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-6, 1 - 1e-6), st.integers(2, 5000))
def test_kwta_k_is_the_ceiling(sparsity, n):
    p = sparsity * n
    assume(math.ceil(p) < n)
    k = E.kwta_k(sparsity, n)
    assert 1 <= k < n
    assert k >= p * (1 - 1e-9)          # never fewer than sparsity * n
    assert k - 1 < p                    # and the smallest such integer


def test_kwta_k_rejects_bad_values():
    with pytest.raises(ValueError, match=r"k < 100"):
        E.kwta_k(0.995, 100)            # ceil(99.5) = 100 leaves no loser
    with pytest.raises(ValueError, match="sparsity"):
        E.kwta_k(0.0, 10)
    with pytest.raises(ValueError, match="sparsity"):
        E.kwta_k(1.0, 10)
    with pytest.raises(TypeError, match="sparsity"):
        E.kwta_k("0.1", 10)
    with pytest.raises(ValueError, match="n must be >= 2"):
        E.kwta_k(0.5, 1)


def test_threshold_and_binary_kwta_by_hand():
    x = torch.tensor([[3.0, 1.0, 4.0, 1.5, 9.0],
                      [0.0, -1.0, -2.0, 5.0, 2.0]])
    # row 0 sorted: 9, 4, 3, ... -> k=2: (4 + 3) / 2 = 3.5
    # row 1 sorted: 5, 2, 0, ... -> k=2: (2 + 0) / 2 = 1
    torch.testing.assert_close(E.kwta_threshold(x, 2),
                               torch.tensor([[3.5], [1.0]]))
    # sparsity 0.4 of 5 units: k = 2
    y = E.binary_kwta(x, 0.4)
    assert y.tolist() == [[0, 0, 1, 0, 1], [0, 0, 0, 1, 1]]
    assert y.dtype == x.dtype
    torch.testing.assert_close(E.kwta_threshold(x, 1),
                               torch.tensor([[6.5], [3.5]]))


def test_ties_give_fewer_than_k_winners():
    # k = 2; the 2nd and 3rd largest are both 1: threshold 1, and '>'
    # drops both, so one winner instead of two.
    x = torch.tensor([[2.0, 1.0, 1.0, 0.0],
                      [5.0, 5.0, 5.0, 5.0],    # constant row: no winner
                      [2.0, 2.0, 1.0, 0.0]])   # tie above the cut: fine
    assert E.kwta_threshold(x, 2).flatten().tolist() == [1.0, 5.0, 1.5]
    assert E.binary_kwta(x, 0.5).tolist() == [[1, 0, 0, 0], [0, 0, 0, 0],
                                              [1, 1, 0, 0]]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(2, 40), st.floats(0.001, 0.999),
       st.integers(0, 2**32 - 1))
def test_exactly_the_k_largest_win_without_ties(batch, d, sparsity, seed):
    assume(math.ceil(sparsity * d) < d)
    k = E.kwta_k(sparsity, d)
    rng = np.random.default_rng(seed)
    a = rng.permutation(batch * d).reshape(batch, d) * 0.37 - 5.0
    y = E.binary_kwta(torch.from_numpy(a), sparsity).numpy()
    expected = np.zeros_like(a)
    top = np.argsort(-a, axis=1)[:, :k]
    np.put_along_axis(expected, top, 1.0, axis=1)
    assert (y.sum(axis=1) == k).all()
    np.testing.assert_array_equal(y, expected)


def test_straight_through_gradient_is_the_upstream_gradient():
    torch.manual_seed(0)
    x = torch.randn(5, 12, requires_grad=True)
    g = torch.randn(5, 12)
    (E.binary_kwta(x, 0.25) * g).sum().backward()
    assert torch.equal(x.grad, g)       # every unit, winners or not
    with torch.no_grad():
        y = E.binary_kwta(x, 0.25)
    assert not y.requires_grad and (y.sum(1) == 3).all()


def test_binary_kwta_rejects_bad_inputs():
    with pytest.raises(ValueError, match="x must be 2-d"):
        E.binary_kwta(torch.randn(10), 0.1)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        E.binary_kwta(torch.arange(10).reshape(2, 5), 0.1)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        E.binary_kwta([[1.0, 2.0]], 0.1)
    with pytest.raises(ValueError, match="at least 2 units"):
        E.binary_kwta(torch.randn(3, 1), 0.5)
    with pytest.raises(ValueError, match="k < 20"):
        E.binary_kwta(torch.randn(3, 20), 0.99)
    with pytest.raises(ValueError, match="k must be <= 4"):
        E.kwta_threshold(torch.randn(3, 5), 5)


# --------------------------------------------------------------------------
# soft kWTA and the module


def test_soft_kwta_closed_form():
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    # k = 2 -> threshold (2 + 1) / 2 = 1.5; hardness 2 -> z = -3, -1, 1, 3
    sig = [1 / (1 + math.exp(-z)) for z in (-3, -1, 1, 3)]
    torch.testing.assert_close(
        E.soft_kwta(x, 0.5, 2.0, "sigmoid"),
        torch.tensor([sig], dtype=torch.float64))
    # hard sigmoid clamp(z / 6 + 1/2, 0, 1)
    torch.testing.assert_close(
        E.soft_kwta(x, 0.5, 2.0, "hardsigmoid"),
        torch.tensor([[0.0, 1 / 3, 2 / 3, 1.0]], dtype=torch.float64))


def test_soft_kwta_gradient_through_the_threshold_by_hand():
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.float64,
                     requires_grad=True)
    E.soft_kwta(x, 0.5, 2.0, "sigmoid").sum().backward()
    z = torch.tensor([-3.0, -1.0, 1.0, 3.0], dtype=torch.float64)
    s = torch.sigmoid(z)
    d = 2 * s * (1 - s)                 # dy_j / dx_j with t held fixed
    # t = (x[2] + x[1]) / 2 (the 2nd and 3rd largest): each of those two
    # also receives -1/2 of sum_j dy_j / dt = -sum_j d_j.
    expected = d - 0.5 * d.sum() * torch.tensor([0.0, 1.0, 1.0, 0.0],
                                                 dtype=torch.float64)
    torch.testing.assert_close(x.grad[0], expected)


@pytest.mark.parametrize("kind", ["sigmoid", "hardsigmoid"])
def test_soft_kwta_gradient_finite_differences_and_shift(kind):
    torch.manual_seed(14)
    # distinct values, far from the hard sigmoid's kinks at |z| = 3
    x = (torch.randperm(24).reshape(3, 8) * 0.1).double()
    x.requires_grad_(True)
    w = torch.randn(3, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda t: (E.soft_kwta(t, 0.25, 3.7, kind) * w).sum(), (x,))
    (E.soft_kwta(x, 0.25, 3.7, kind) * w).sum().backward()
    # adding a constant to a row changes nothing: the gradient sums to 0
    torch.testing.assert_close(x.grad.sum(dim=1),
                               torch.zeros(3, dtype=torch.float64))
    with torch.no_grad():
        torch.testing.assert_close(E.soft_kwta(x + 5.0, 0.25, 3.7, kind),
                                   E.soft_kwta(x, 0.25, 3.7, kind))


@pytest.mark.parametrize("kind", ["sigmoid", "hardsigmoid"])
def test_soft_kwta_tends_to_binary_kwta(kind):
    torch.manual_seed(1)
    x = torch.randn(16, 50, dtype=torch.float64)
    thr = E.kwta_threshold(x, E.kwta_k(0.1, 50))
    far = (x - thr).abs() > 1e-3
    assert far.float().mean() > 0.9
    soft = E.soft_kwta(x, 0.1, 1e5, kind)
    hard = E.binary_kwta(x, 0.1)
    assert ((soft - hard).abs()[far] < 1e-6).all()
    # a gentle slope is far from binary
    assert (E.soft_kwta(x, 0.1, 1.0, kind) - hard).abs().max() > 0.3


def test_soft_kwta_rejects_bad_arguments():
    x = torch.randn(2, 10)
    with pytest.raises(ValueError, match="hardness"):
        E.soft_kwta(x, 0.1, 0.0)
    with pytest.raises(ValueError, match="kind"):
        E.soft_kwta(x, 0.1, 1.0, "tanh")
    with pytest.raises(ValueError, match="sparsity"):
        E.soft_kwta(x, 1.5, 1.0)


def test_kwta_embedding_soft_in_training_binary_in_eval():
    torch.manual_seed(2)
    x = torch.randn(8, 40)
    m = E.KWTAEmbedding(0.1, hardness=2.0, kind="sigmoid")
    y = m(x)
    torch.testing.assert_close(y, E.soft_kwta(x, 0.1, 2.0, "sigmoid"))
    assert ((y > 0) & (y < 1)).all()
    m.eval()
    assert torch.equal(m(x), E.binary_kwta(x, 0.1))
    m.train()
    m.sparsity, m.hardness = 0.2, 5.0
    torch.testing.assert_close(m(x), E.soft_kwta(x, 0.2, 5.0, "sigmoid"))
    hard = E.KWTAEmbedding(0.1, soft=False)
    assert torch.equal(hard(x), E.binary_kwta(x, 0.1))  # even in training
    assert "sparsity=0.2" in repr(m) and "hardness=5" in repr(m)
    with pytest.raises(ValueError, match="sparsity"):
        m.sparsity = 1.2
    with pytest.raises(ValueError, match="hardness"):
        m.hardness = -1
    with pytest.raises(TypeError, match="soft"):
        E.KWTAEmbedding(0.1, soft=1)


# --------------------------------------------------------------------------
# the scheduler


def test_scheduler_geometric_by_hand():
    m = E.KWTAEmbedding(0.3)
    s = E.KWTAScheduler(m, (0.5, 0.05), (1.0, 10.0), n_steps=4)
    assert (m.sparsity, m.hardness) == (0.5, 1.0)     # step 0 applied
    seen = [(m.sparsity, m.hardness)]
    for _ in range(6):                                 # two steps past
        s.step()
        seen.append((m.sparsity, m.hardness))
    assert seen[2][0] == pytest.approx(math.sqrt(0.5 * 0.05), rel=1e-12)
    assert seen[2][1] == pytest.approx(math.sqrt(10.0), rel=1e-12)
    assert seen[1][0] == pytest.approx(0.5 * 0.1 ** 0.25, rel=1e-12)
    for sp, hd in seen[4:]:
        assert (sp, hd) == (0.05, 10.0)                # exactly the ends
    sps, hds = zip(*seen)
    assert all(a >= b for a, b in zip(sps, sps[1:]))   # sparsity down
    assert all(a <= b for a, b in zip(hds, hds[1:]))   # hardness up
    assert all(0.05 <= v <= 0.5 for v in sps)


def test_scheduler_linear_and_partial():
    m = E.KWTAEmbedding(0.3, hardness=7.0)
    s = E.KWTAScheduler(m, (0.5, 0.05), None, n_steps=2, kind="linear")
    s.step()
    assert m.sparsity == pytest.approx(0.275)
    assert m.hardness == 7.0                           # left alone
    s.step()
    assert m.sparsity == 0.05
    emb = E.SDREmbedder(20, 8, 40, sparsity=0.1)
    E.KWTAScheduler(emb, (0.2, 0.1), (1.0, 4.0), n_steps=3, kind="linear")
    assert emb.kwta.sparsity == 0.2 and emb.scaling.target == 0.2
    assert emb.kwta.hardness == 1.0


def test_scheduler_rejects_bad_arguments():
    m = E.KWTAEmbedding(0.1)
    with pytest.raises(TypeError, match="module"):
        E.KWTAScheduler(torch.nn.ReLU())
    with pytest.raises(ValueError, match=r"sparsity_range\[1\]"):
        E.KWTAScheduler(m, (0.5, 0.0))
    with pytest.raises(ValueError, match=r"hardness_range\[0\]"):
        E.KWTAScheduler(m, (0.5, 0.1), (0.0, 1.0))
    with pytest.raises(ValueError, match="sparsity_range must be a pair"):
        E.KWTAScheduler(m, (0.5, 0.1, 0.05))
    with pytest.raises(ValueError, match="n_steps"):
        E.KWTAScheduler(m, n_steps=0)
    with pytest.raises(ValueError, match="kind"):
        E.KWTAScheduler(m, kind="cosine")
    emb = E.SDREmbedder(20, 8, 10, sparsity=0.1)
    with pytest.raises(ValueError, match="k < 10"):
        E.KWTAScheduler(emb, (0.95, 0.1))      # 10 of 10 units


# --------------------------------------------------------------------------
# synaptic scaling


def test_synaptic_scaling_by_hand():
    s = E.SynapticScaling(3, target=0.1, boost=2.0)
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    assert torch.equal(s(x), x)                        # rate = target: 1
    s.firing_rate.copy_(torch.tensor([0.3, 0.1, 0.0]))
    factors = [math.exp(2 * (0.1 - 0.3)), 1.0, math.exp(2 * 0.1)]
    torch.testing.assert_close(s(x), x * torch.tensor(factors))
    assert factors[0] < 1 < factors[2]     # over target damped, under amplified


def test_synaptic_scaling_running_mean_by_hand():
    s = E.SynapticScaling(3, target=0.1, momentum=0.25)
    act = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]], requires_grad=True)
    s.update_(act)
    # 0.75 * 0.1 + 0.25 * [1, 0.5, 0]
    torch.testing.assert_close(s.firing_rate,
                               torch.tensor([0.325, 0.2, 0.075]))
    assert not s.firing_rate.requires_grad
    s.update_(torch.zeros(4, 3, dtype=torch.float64))
    torch.testing.assert_close(s.firing_rate,
                               0.75 * torch.tensor([0.325, 0.2, 0.075]))
    assert s.firing_rate.dtype == torch.float32
    assert "firing_rate" in s.state_dict()


def test_synaptic_scaling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="target"):
        E.SynapticScaling(4, target=0.0)
    with pytest.raises(ValueError, match="boost"):
        E.SynapticScaling(4, target=0.1, boost=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        E.SynapticScaling(4, target=0.1, momentum=0.0)
    s = E.SynapticScaling(4, target=0.1)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\)"):
        s(torch.randn(2, 5))
    with pytest.raises(ValueError, match="activity"):
        s.update_(torch.randn(2, 3))


# --------------------------------------------------------------------------
# the embedder


def test_baseline_mlp_is_the_classifiers_mlp():
    x = torch.randn(6, 1, 4, 5)
    torch.manual_seed(3)
    ours = E.mlp(20, 16, 10)
    torch.manual_seed(3)
    theirs = SparseMLP(20, 16, 10, lam=0.0, init="default")
    torch.testing.assert_close(ours(x), theirs(x.flatten(1)))
    with pytest.raises(TypeError, match="activation"):
        E.mlp(20, 16, 10, activation=torch.relu)


def test_embedder_codes():
    torch.manual_seed(4)
    m = E.SDREmbedder(20, 16, 40, sparsity=0.1, hardness=2.0,
                      kind="sigmoid", momentum=0.5)
    assert m.k == 4
    x = torch.randn(12, 20)
    rate0 = m.scaling.firing_rate.clone()
    soft = m(x)
    assert soft.shape == (12, 40)
    assert ((soft > 0) & (soft < 1)).all()
    assert not torch.equal(m.scaling.firing_rate, rate0)   # updated
    m.eval()
    rate1 = m.scaling.firing_rate.clone()
    code = m(x)
    assert code.shape == (12, 40)
    assert (code.sum(dim=1) == 4).all()
    assert set(code.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(m.scaling.firing_rate, rate1)       # not in eval
    m.train()
    emb = m.embed(x.reshape(12, 4, 5))                     # images flatten
    assert torch.equal(emb, code) and m.training
    assert not emb.requires_grad
    assert torch.equal(m.scaling.firing_rate, rate1)       # embed: neither


def test_embedder_updates_rates_with_the_binary_winners():
    torch.manual_seed(5)
    m = E.SDREmbedder(20, 16, 40, sparsity=0.1, momentum=0.25)
    x = torch.randn(10, 20)
    winners = E.binary_kwta(m.preactivation(x).detach(), 0.1)
    expected = 0.75 * 0.1 + 0.25 * winners.mean(dim=0)
    m(x)
    torch.testing.assert_close(m.scaling.firing_rate, expected)
    m.sparsity = 0.05
    assert m.kwta.sparsity == 0.05 and m.scaling.target == 0.05
    plain = E.SDREmbedder(20, 16, 40, synaptic_scaling=False)
    assert plain.scaling is None and plain.eval()(x).sum(1).eq(2).all()


def test_hidden_kwta_replaces_the_relu():
    torch.manual_seed(6)
    m = E.SDREmbedder(20, 16, 40, sparsity=0.1, hidden_kwta=True)
    assert isinstance(m.mlp[2], E.KWTAEmbedding) and not m.mlp[2].soft
    x = torch.randn(7, 20)
    h = m.mlp[:3](x)
    assert (h.sum(dim=1) == 2).all()                  # ceil(0.1 * 16)
    assert set(h.unique().tolist()) == {0.0, 1.0}
    m(x).sum().backward()                             # straight through
    assert m.mlp[1].weight.grad.abs().sum() > 0


def test_embedder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="k < 10"):
        E.SDREmbedder(20, 16, 10, sparsity=0.95)
    with pytest.raises(TypeError, match="synaptic_scaling"):
        E.SDREmbedder(synaptic_scaling="yes")
    m = E.SDREmbedder(20, 16, 40)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 20\)"):
        m(torch.randn(3, 21))
    with pytest.raises(ValueError, match="sparsity"):
        m.sparsity = 0.0


def test_one_training_step_lowers_the_triplet_loss():
    torch.manual_seed(7)
    centres = torch.randn(3, 20)
    y = torch.arange(24) % 3
    x = centres[y] + 0.5 * torch.randn(24, 20)
    m = E.SDREmbedder(20, 16, 40, sparsity=0.1, hardness=2.0,
                      kind="sigmoid", synaptic_scaling=False)
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    loss0 = E.triplet_loss_cosine(m(x), y)
    opt.zero_grad()
    loss0.backward()
    opt.step()
    with torch.no_grad():
        loss1 = E.triplet_loss_cosine(m(x), y)
    assert loss0.item() > 0
    assert loss1.item() < loss0.item()


# --------------------------------------------------------------------------
# triplet loss


def brute_triplet(emb, labels, margin, mining):
    e = emb.detach().double().numpy()
    lab = labels.tolist()
    n = len(lab)

    def cos(i, j):
        a, b = e[i], e[j]
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))

    if mining == "all":
        losses = [max(0.0, cos(a, q) - cos(a, p) + margin)
                  for a, p, q in itertools.product(range(n), repeat=3)
                  if p != a and lab[p] == lab[a] and lab[q] != lab[a]]
        return sum(losses) / len(losses) if losses else 0.0
    per = []
    for a in range(n):
        ps = [cos(a, p) for p in range(n) if p != a and lab[p] == lab[a]]
        ns = [cos(a, q) for q in range(n) if lab[q] != lab[a]]
        if ps and ns:
            per.append(max(0.0, max(ns) - min(ps) + margin))
    return sum(per) / len(per) if per else 0.0


def test_triplet_loss_hand_case():
    # directions (1,0), (0.6,0.8) in class 0; (0,1), (-1,0) in class 1;
    # lengths vary (cosine ignores them).
    emb = torch.tensor([[2.0, 0.0], [3.0, 4.0], [0.0, 0.5], [-2.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    # cos(0,1)=.6 cos(0,2)=0 cos(0,3)=-1 cos(1,2)=.8 cos(1,3)=-.6 cos(2,3)=0
    # all 8 triplets, margin .5: a=1,n=2: .8-.6+.5=.7; a=2,n=0: 0-0+.5=.5;
    # a=2,n=1: .8-0+.5=1.3; the other five <= 0. Mean 2.5 / 8.
    assert E.triplet_loss_cosine(emb, y, 0.5, "all").item() == \
        pytest.approx(2.5 / 8)
    # batch-hard: anchors 0..3 give 0, .7, 1.3, relu(-.6 - 0 + .5) = 0
    assert E.triplet_loss_cosine(emb, y, 0.5, "hard").item() == \
        pytest.approx(2.0 / 4)


@pytest.mark.parametrize("mining", ["all", "hard"])
def test_triplet_loss_matches_a_loop_over_triplets(mining):
    torch.manual_seed(8)
    emb = torch.randn(13, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 3, 0, 1, 1, 2, 0, 4])  # 4: alone
    for margin in (0.0, 0.3, 1.0):
        got = E.triplet_loss_cosine(emb, y, margin, mining).item()
        assert got == pytest.approx(brute_triplet(emb, y, margin, mining),
                                    rel=1e-12, abs=1e-14)


def test_triplet_loss_in_blocks(monkeypatch):
    torch.manual_seed(9)
    emb = torch.randn(11, 4, dtype=torch.float64)
    y = torch.arange(11) % 3
    want = brute_triplet(emb, y, 0.5, "all")
    monkeypatch.setattr(E, "_TRIPLET_BLOCK", 2 * 11 * 11)   # 2 anchors
    assert E.triplet_loss_cosine(emb, y).item() == pytest.approx(want,
                                                                 rel=1e-12)


@pytest.mark.parametrize("mining", ["all", "hard"])
def test_triplet_loss_zero_for_separated_classes(mining):
    # each class along its own axis, lengths varying: cos 1 within a
    # class, 0 across, so every triplet has 0 - 1 + 0.5 < 0.
    eye = torch.eye(4)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    emb = eye[y] * torch.linspace(0.5, 2.0, 8)[:, None]
    assert E.triplet_loss_cosine(emb, y, 0.5, mining).item() == 0.0
    # a margin above 1 makes every triplet count: 0 - 1 + 1.5
    assert E.triplet_loss_cosine(emb, y, 1.5, mining).item() == \
        pytest.approx(0.5)


@pytest.mark.parametrize("mining", ["all", "hard"])
def test_triplet_loss_gradient_finite_differences(mining):
    torch.manual_seed(10)
    emb = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 0])
    assert torch.autograd.gradcheck(
        lambda e: E.triplet_loss_cosine(e, y, 0.3, mining), (emb,))


def test_triplet_loss_without_valid_triplets_is_zero():
    emb = torch.randn(4, 3, requires_grad=True)
    for y in (torch.zeros(4, dtype=torch.long), torch.arange(4)):
        for mining in ("all", "hard"):
            loss = E.triplet_loss_cosine(emb, y, mining=mining)
            assert loss.item() == 0.0
            loss.backward()
            assert torch.isfinite(emb.grad).all()


def test_triplet_loss_rejects_bad_inputs():
    emb = torch.randn(4, 3)
    y = torch.tensor([0, 0, 1, 1])
    with pytest.raises(TypeError, match="labels must hold integer"):
        E.triplet_loss_cosine(emb, y.float())
    with pytest.raises(ValueError, match="labels must hold one label"):
        E.triplet_loss_cosine(emb, y[:3])
    with pytest.raises(ValueError, match="margin"):
        E.triplet_loss_cosine(emb, y, margin=-0.1)
    with pytest.raises(ValueError, match="mining"):
        E.triplet_loss_cosine(emb, y, mining="semi-hard")
    with pytest.raises(TypeError, match="emb must be a floating-point"):
        E.triplet_loss_cosine(y[:, None].repeat(1, 3), y)


# --------------------------------------------------------------------------
# centroids and nearest-centroid accuracy


def test_class_centroids_by_hand():
    codes = torch.tensor([[1.0, 1.0, 0.0, 0.0],
                          [1.0, 0.0, 1.0, 0.0],
                          [0.0, 0.0, 1.0, 1.0],
                          [0.0, 1.0, 1.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    means = E.class_centroids(codes, y, 3, None)
    torch.testing.assert_close(means, torch.tensor([[1.0, 0.5, 0.5, 0.0],
                                                    [0.0, 0.5, 1.0, 1.0],
                                                    [0.0, 0.0, 0.0, 0.0]]))
    # k = 2: class 0's 2nd and 3rd values tie at .5 -> one bit only;
    # class 1: threshold (1 + .5) / 2 -> two bits; class 2 (no rows): none
    assert E.class_centroids(codes, y, 3, 0.5).tolist() == [
        [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]


def test_nearest_centroid_by_hand():
    codes = torch.tensor([[1.0, 1.0, 0.0, 0.0],
                          [0.0, 0.0, 1.0, 1.0],
                          [1.0, 0.0, 1.0, 0.0],
                          [0.0, 0.0, 0.0, 0.0]])
    cents = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    # row 2 is equally close to both (cos .5): the lower index wins;
    # the zero row has cosine 0 with both: index 0.
    for metric in ("cosine", "euclidean"):
        assert E.nearest_centroid_predict(codes, cents, metric).tolist() == \
            [0, 1, 0, 0]
    y = torch.tensor([0, 1, 1, 1])
    assert E.nearest_centroid_accuracy(codes, y, cents) == pytest.approx(0.5)


def test_nearest_centroid_cosine_against_brute_force():
    rng = np.random.default_rng(11)
    codes = rng.random((30, 8))
    cents = rng.random((4, 8))
    want = [int(np.argmax([c @ m / (np.linalg.norm(c) * np.linalg.norm(m))
                           for m in cents])) for c in codes]
    got = E.nearest_centroid_predict(torch.from_numpy(codes),
                                     torch.from_numpy(cents))
    assert got.tolist() == want


def test_centroids_and_prediction_against_sklearn():
    rng = np.random.default_rng(12)
    y = rng.integers(0, 3, 60)
    x = rng.normal(size=(3, 5))[y] + rng.normal(size=(60, 5))
    ref = NearestCentroid().fit(x, y)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    cents = E.class_centroids(xt, yt, 3, None)
    np.testing.assert_allclose(cents.numpy(), ref.centroids_, rtol=1e-12)
    xq = rng.normal(size=(40, 5)) * 2
    pred = E.nearest_centroid_predict(torch.from_numpy(xq), cents,
                                      "euclidean")
    np.testing.assert_array_equal(pred.numpy(), ref.predict(xq))
    acc = E.nearest_centroid_accuracy(xt, yt, cents, "euclidean")
    assert acc == pytest.approx(ref.score(x, y), abs=1e-12)


def test_end_to_end_codes_score_by_binarised_centroids():
    torch.manual_seed(13)
    m = E.SDREmbedder(20, 16, 40, sparsity=0.1).eval()
    x = torch.randn(30, 20)
    y = torch.arange(30) % 3
    codes = m.embed(x)
    cents = E.class_centroids(codes, y, 3, 0.1)
    assert cents.shape == (3, 40)
    assert set(cents.unique().tolist()) <= {0.0, 1.0}
    assert (cents.sum(dim=1) <= 4).all()
    acc = E.nearest_centroid_accuracy(codes, y, cents)
    assert 0.0 <= acc <= 1.0


def test_centroid_functions_reject_bad_inputs():
    codes = torch.rand(4, 6)
    y = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        E.class_centroids(codes, y, 3, 0.2)
    with pytest.raises(ValueError, match="labels must hold one label"):
        E.class_centroids(codes, y[:2], 4, 0.2)
    with pytest.raises(ValueError, match="sparsity"):
        E.class_centroids(codes, y, 4, 1.0)
    with pytest.raises(ValueError, match="same width"):
        E.nearest_centroid_predict(codes, torch.rand(2, 5))
    with pytest.raises(ValueError, match="metric"):
        E.nearest_centroid_predict(codes, torch.rand(2, 6), "hamming")
    with pytest.raises(TypeError, match="same dtype"):
        E.nearest_centroid_predict(codes, torch.rand(2, 6).double())


# --------------------------------------------------------------------------
# embedding accuracy and the two training protocols


def toy_classes(n, seed, d=20, n_classes=3, noise=0.6):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, d, generator=torch.Generator()
                          .manual_seed(99))
    y = torch.arange(n) % n_classes
    return centres[y] + noise * torch.randn(n, d, generator=g), y


def test_embedding_accuracy_against_numpy():
    torch.manual_seed(15)
    m = E.SDREmbedder(20, 16, 40, sparsity=0.1).eval()
    x, y = toy_classes(60, 1)
    xq, yq = toy_classes(30, 2)
    with torch.no_grad():
        ref = m.embed(x).numpy()
        q = m.embed(xq).numpy()
    # numpy oracle: class means, top k = 4 set to 1, largest cosine
    means = np.stack([ref[y.numpy() == c].mean(0) for c in range(3)])
    cents = np.zeros_like(means)
    np.put_along_axis(cents, np.argsort(-means, axis=1, kind="stable")[:, :4],
                      1.0, axis=1)
    # (ties in a mean would make the oracle differ; this case has none)
    srt = -np.sort(-means, axis=1)
    assert (srt[:, 3] > srt[:, 4]).all()
    cos = (q @ cents.T) / (np.linalg.norm(q, axis=1, keepdims=True) *
                           np.linalg.norm(cents, axis=1))
    want = float((cos.argmax(1) == yq.numpy()).mean())
    got = E.embedding_accuracy(m, x, y, xq, yq, n_classes=3, batch_size=7)
    assert got == pytest.approx(want, abs=1e-12)
    with pytest.raises(TypeError, match="embed"):
        E.embedding_accuracy(E.mlp(20, 16, 3), x, y, xq, yq)


def adam_by_hand(model, x, y, loss_fn, n_epochs, seed, batch_size, lr, wd,
                 scheduler=None):
    # the protocol written out: same batches (sparselib.data.loader with a
    # seeded generator), torch's Adam, the scheduler after each epoch
    from sparselib.data import loader
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    batches = loader(x, y, batch_size=batch_size,
                     generator=torch.Generator().manual_seed(seed))
    for _ in range(n_epochs):
        model.train()
        for xb, yb in batches:
            opt.zero_grad()
            loss_fn(model, xb, yb).backward()
            opt.step()
        if scheduler is not None:
            scheduler.step()


def test_train_embedder_is_adam_on_the_triplet_loss():
    x, y = toy_classes(48, 3)
    xv, yv = toy_classes(24, 4)
    nets = []
    for _ in range(2):
        torch.manual_seed(16)
        nets.append(E.SDREmbedder(20, 16, 40, sparsity=0.1, hardness=2.0,
                                  kind="sigmoid"))
    ours, ref = nets
    sched = E.KWTAScheduler(ours, (0.3, 0.1), (1.0, 4.0), n_steps=2)
    res = E.train_embedder(ours, x, y, xv, yv, 3, margin=0.3,
                           scheduler=sched, select_from=3, batch_size=16,
                           lr=0.01, weight_decay=1e-3, seed=5, n_classes=3)
    adam_by_hand(ref, x, y,
                 lambda m, a, b: E.triplet_loss_cosine(m(a), b, 0.3), 3, 5,
                 16, 0.01, 1e-3,
                 E.KWTAScheduler(ref, (0.3, 0.1), (1.0, 4.0), n_steps=2))
    # select_from = n_epochs: the last epoch, i.e. the hand loop's weights
    assert res.best_epoch == 3 and not ours.training
    for (name, a), b in zip(ours.state_dict().items(),
                            ref.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    h = res.history.epoch
    assert h["epoch"] == [1, 2, 3] and len(res.history.step["loss"]) == 9
    # each epoch trained and scored before the scheduler's step
    assert h["sparsity"] == pytest.approx([0.3, math.sqrt(0.03), 0.1])
    assert h["hardness"] == pytest.approx([1.0, 2.0, 4.0])
    assert res.best_accuracy == h["accuracy"][2] == pytest.approx(
        E.embedding_accuracy(ours, x, y, xv, yv, 3))


def test_train_embedder_keeps_the_best_epoch():
    x, y = toy_classes(60, 5)
    xv, yv = toy_classes(30, 6)
    torch.manual_seed(17)
    m = E.SDREmbedder(20, 16, 40, sparsity=0.1, hardness=3.0,
                      kind="sigmoid")
    before = E.embedding_accuracy(m, x, y, xv, yv, 3)
    res = E.train_embedder(m, x, y, xv, yv, 6, batch_size=12, lr=0.01,
                           seed=1, n_classes=3, select_from=2)
    acc = res.history.epoch["accuracy"]
    best = max(acc[1:])
    assert res.best_epoch == acc.index(best, 1) + 1 >= 2
    assert res.best_accuracy == best
    # the model holds the selected epoch: re-scoring it gives its accuracy
    assert E.embedding_accuracy(m, x, y, xv, yv, 3) == best
    assert best > before and best >= 0.9     # three separable classes


def test_fit_softmax_is_adam_on_the_cross_entropy():
    x, y = toy_classes(40, 7)
    xv, yv = toy_classes(20, 8)
    torch.manual_seed(18)
    ours = E.mlp(20, 8, 3)
    ref = E.mlp(20, 8, 3)
    ref.load_state_dict(ours.state_dict())
    res = E.fit_softmax(ours, x, y, xv, yv, 2, select_from=2, batch_size=8,
                        lr=0.02, weight_decay=0.0, seed=3)
    adam_by_hand(ref, x, y,
                 lambda m, a, b: torch.nn.functional.cross_entropy(m(a), b),
                 2, 3, 8, 0.02, 0.0)
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        want = float((ref(xv).argmax(1) == yv).float().mean())
    assert res.best_epoch == 2 and res.best_accuracy == pytest.approx(want)
    assert "sparsity" not in res.history.epoch


def test_fit_softmax_restores_the_best_epoch():
    x, y = toy_classes(60, 9, noise=1.5)
    xv, yv = toy_classes(30, 10, noise=1.5)
    torch.manual_seed(19)
    m = E.mlp(20, 8, 3)
    res = E.fit_softmax(m, x, y, xv, yv, 8, batch_size=10, lr=0.05, seed=2)
    acc = res.history.epoch["accuracy"]
    assert res.best_epoch == acc.index(max(acc)) + 1
    with torch.no_grad():
        now = float((m(xv).argmax(1) == yv).float().mean())
    assert now == pytest.approx(max(acc))


def test_training_helpers_reject_bad_arguments():
    x, y = toy_classes(20, 11)
    m = E.SDREmbedder(20, 16, 40, sparsity=0.1)
    with pytest.raises(ValueError, match="select_from"):
        E.train_embedder(m, x, y, x, y, 2, select_from=3)
    with pytest.raises(ValueError, match="n_epochs"):
        E.fit_softmax(E.mlp(20, 8, 3), x, y, x, y, 0)
    with pytest.raises(ValueError, match="y_val must hold one label"):
        E.train_embedder(m, x, y, x, y[:5], 1)
    with pytest.raises(TypeError, match="embed"):
        E.train_embedder(E.mlp(20, 8, 3), x, y, x, y, 1)
    with pytest.raises(ValueError, match="mining"):
        E.train_embedder(m, x, y, x, y, 1, mining="semi")
    with pytest.raises(ValueError, match="lr"):
        E.fit_softmax(E.mlp(20, 8, 3), x, y, x, y, 1, lr=0.0)
    with pytest.raises(TypeError, match="scheduler"):
        E.train_embedder(m, x, y, x, y, 1, scheduler="geometric")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        E.fit_softmax(lambda t: t, x, y, x, y, 1)
