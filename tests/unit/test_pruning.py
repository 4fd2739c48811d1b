"""sparselib.pruning against hand-made cases and sorted-magnitude oracles.

* magnitude pruning prunes exactly the weights a NumPy sort of the
  magnitudes names, globally or per layer, reaches the target count on
  repeated calls, ranks fresh weights (not the copy cached at the last
  forward) and keeps pruned weights at zero under SGD and Adam;
* rewinding restores the snapshot values and keeps the masks; the lottery
  ticket loop prunes, rewinds, trains and records in that order;
* ERK layer counts by hand; SET and RigL drop the k smallest magnitudes,
  regrow k other entries (RigL: where a known gradient is largest, at zero,
  with zero optimiser state), keep the sparsity exact and leave the masks
  alone between updates; the cosine schedule by hand.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

import sparselib as sl
from sparselib import pruning as P


def distinct_mlp(sizes=((3, 7), (7, 2)), seed=0, bias=True):
    """A two-layer MLP whose weights have distinct magnitudes."""
    model = nn.Sequential(nn.Linear(*sizes[0], bias=bias), nn.ReLU(),
                          nn.Linear(*sizes[1], bias=bias))
    g = torch.Generator().manual_seed(seed)
    layers = [model[0], model[2]]
    n = sum(m.weight.numel() for m in layers)
    mags = (torch.randperm(n, generator=g).double() + 1) / n
    signs = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    values = (mags * signs).float()
    pos = 0
    with torch.no_grad():
        for m in layers:
            k = m.weight.numel()
            m.weight.copy_(values[pos:pos + k].view(m.weight.shape))
            pos += k
    return model


def effective(model):
    return [P._effective(m).clone() for m, _ in P.prunable(model)]


def smallest(values, k):
    """Boolean array: True at the k smallest |values| (NumPy oracle)."""
    flat = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    out = np.zeros(flat.size, dtype=bool)
    out[np.argsort(flat, kind="stable")[:k]] = True
    return out


# --------------------------------------------------------------------------
# which weights, how sparse


def test_prunable_finds_linear_and_conv_weights_only():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2),
                          nn.Flatten(), nn.Linear(8, 3))
    pairs = P.prunable(model)
    assert pairs == [(model[0], "weight"), (model[3], "weight")]
    assert P.prunable(model, (nn.Linear,)) == [(model[3], "weight")]
    assert P.prunable(nn.Linear(2, 2))[0][1] == "weight"
    assert P.prunable(nn.ReLU()) == []
    with pytest.raises(TypeError, match="types"):
        P.prunable(model, ("Linear",))
    with pytest.raises(TypeError, match="model"):
        P.prunable("model")


def test_sparsities_count_zeros_by_hand():
    model = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 5))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0., 1, 0, 2], [3, 0, 0, 4]]))
        model[1].weight.fill_(1.0)
        model[1].weight[0, 0] = 0
        model[0].bias.zero_()  # biases are not counted
    assert P.layer_sparsities(model) == {"0.weight": 4 / 8,
                                         "1.weight": 1 / 10}
    assert P.weight_sparsity(model) == 5 / 18
    assert P.layer_sparsities(nn.Linear(2, 2)).keys() == {"weight"}
    with pytest.raises(ValueError, match="no prunable layer"):
        P.weight_sparsity(nn.ReLU())


# --------------------------------------------------------------------------
# magnitude pruning


def test_global_prune_matches_the_sorted_magnitudes_and_continues():
    model = distinct_mlp()
    before = torch.cat([w.flatten() for w in effective(model)]).numpy()
    n = before.size  # 21 + 14 = 35
    reached = P.magnitude_prune(model, 0.37)
    k = round(0.37 * n)  # 15
    assert reached == k / n
    zero = torch.cat([w.flatten() == 0 for w in effective(model)]).numpy()
    np.testing.assert_array_equal(zero, smallest(before, k))
    assert P.weight_sparsity(model) == k / n
    # a second call continues from the mask, to the new total
    P.magnitude_prune(model, 0.8)
    zero2 = torch.cat([w.flatten() == 0 for w in effective(model)]).numpy()
    np.testing.assert_array_equal(zero2, smallest(before, round(0.8 * n)))
    assert zero2[zero].all()
    assert P.magnitude_prune(model, 0.8) == round(0.8 * n) / n  # no-op
    with pytest.raises(ValueError, match="sparsity=0.5 .*pruned already"):
        P.magnitude_prune(model, 0.5)


def test_layer_prune_matches_each_layers_sorted_magnitudes():
    model = distinct_mlp()
    before = [w.numpy().copy() for w in effective(model)]
    for target in (0.3, 0.55, 0.9):
        reached = P.magnitude_prune(model, target, scope="layer")
        ks = [round(target * w.size) for w in before]
        assert reached == sum(ks) / sum(w.size for w in before)
        for w0, w, k in zip(before, effective(model), ks):
            np.testing.assert_array_equal(
                (w == 0).flatten().numpy(), smallest(w0, k))
        fractions = P.layer_sparsities(model)
        assert list(fractions.values()) == [k / w.size
                                            for k, w in zip(ks, before)]


def test_prune_ranks_the_current_weights_not_the_cached_copy():
    # torch's pruning hook refreshes module.weight only in a forward; after
    # an optimiser step the cached copy is stale, and the ranking must not
    # use it
    model = distinct_mlp()
    P.magnitude_prune(model, 0.2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    g = torch.Generator().manual_seed(1)
    model(torch.randn(6, 3, generator=g)).pow(2).sum().backward()
    with torch.no_grad():  # make the step reorder the magnitudes
        for m, _ in P.prunable(model):
            m.weight_orig.grad = torch.randn(m.weight_orig.shape,
                                             generator=g)
    opt.step()
    fresh = torch.cat([(m.weight_orig * m.weight_mask).flatten()
                       for m, _ in P.prunable(model)]).detach().numpy()
    P.magnitude_prune(model, 0.6)
    zero = torch.cat([w.flatten() == 0 for w in effective(model)]).numpy()
    np.testing.assert_array_equal(zero, smallest(fresh, round(0.6 * 35)))


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: torch.optim.Adam(ps, lr=0.05)])
def test_pruned_weights_stay_zero_under_optimisers(make_opt):
    torch.manual_seed(0)
    model = distinct_mlp()
    opt = make_opt(model.parameters())  # built before pruning
    x = torch.randn(16, 3)
    for _ in range(3):  # momentum and moments in every entry
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    P.magnitude_prune(model, 0.7)
    masks = [m.weight_mask.clone() for m, _ in P.prunable(model)]
    for _ in range(5):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    model(x)  # refresh the cached weight
    for (m, _), mask in zip(P.prunable(model), masks):
        assert torch.all(m.weight[mask == 0] == 0)
        assert torch.all(m.weight[mask == 1] != 0)
    assert P.weight_sparsity(model) == round(0.7 * 35) / 35
    P.make_permanent(model)
    for (m, _), mask in zip(P.prunable(model), masks):
        assert isinstance(m.weight, nn.Parameter)
        assert not hasattr(m, "weight_mask")
        assert torch.all(m.weight[mask == 0] == 0)
    assert any(p is model[0].weight for p in opt.param_groups[0]["params"])


def test_magnitude_prune_bad_inputs():
    model = distinct_mlp()
    with pytest.raises(ValueError, match="sparsity"):
        P.magnitude_prune(model, 1.5)
    with pytest.raises(TypeError, match="sparsity"):
        P.magnitude_prune(model, "half")
    with pytest.raises(ValueError, match="scope"):
        P.magnitude_prune(model, 0.5, scope="row")
    with pytest.raises(ValueError, match="no prunable layer"):
        P.magnitude_prune(nn.ReLU(), 0.5)
    sparse = nn.Sequential(sl.sparse_weights.SparseWeights(nn.Linear(4, 4),
                                                           0.5))
    with pytest.raises(ValueError, match="parametrised"):
        P.magnitude_prune(sparse, 0.5)
    P.magnitude_prune(model, 0.9, scope="global")
    with pytest.raises(ValueError, match="pruned already"):
        P.magnitude_prune(model, 0.5, scope="layer")


def test_iterative_sparsities_by_hand():
    assert P.iterative_sparsities(0.875, 3) == pytest.approx(
        [0.5, 0.75, 0.875], abs=1e-15)
    s = P.iterative_sparsities(0.99, 7)
    assert s[-1] == 0.99 and all(a < b for a, b in zip(s, s[1:]))
    kept = [1.0] + [1 - v for v in s]
    ratios = [b / a for a, b in zip(kept, kept[1:])]
    assert ratios == pytest.approx([0.01 ** (1 / 7)] * 7)
    assert P.iterative_sparsities(0.3, 1) == [0.3]
    with pytest.raises(ValueError, match="final"):
        P.iterative_sparsities(1.0, 3)
    with pytest.raises(ValueError, match="n_rounds"):
        P.iterative_sparsities(0.5, 0)


# --------------------------------------------------------------------------
# rewinding and lottery tickets


def bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.ReLU(),
                         nn.Linear(6, 2))


def train_a_little(model, steps=4, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(steps)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(8, 3, generator=g)).pow(2).mean().backward()
        opt.step()


def test_rewind_restores_snapshot_values_and_keeps_masks():
    model = bn_model()
    snap = P.snapshot(model)
    assert set(snap) == {"0.weight", "0.bias", "1.weight", "1.bias",
                         "1.running_mean", "1.running_var",
                         "1.num_batches_tracked", "3.weight", "3.bias"}
    train_a_little(model)
    P.magnitude_prune(model, 0.5)
    masks = [m.weight_mask.clone() for m, _ in P.prunable(model)]
    train_a_little(model)
    assert not torch.equal(model[3].bias, snap["3.bias"])
    P.rewind(model, snap)
    for (m, _), mask, key in zip(P.prunable(model), masks,
                                 ("0.weight", "3.weight")):
        torch.testing.assert_close(m.weight_mask, mask, rtol=0, atol=0)
        expect = snap[key] * mask
        torch.testing.assert_close(m.weight_orig.detach(), expect)
        torch.testing.assert_close(m.weight.detach(), expect)
    for key in ("0.bias", "3.bias", "1.weight", "1.running_mean"):
        torch.testing.assert_close(P._tensors(model)[key].detach(),
                                   snap[key], rtol=0, atol=0)
    assert P.weight_sparsity(model) == 0.5
    # the snapshot is a copy: training does not change it
    train_a_little(model)
    assert not torch.equal(model[3].bias.detach(), snap["3.bias"])


def test_rewind_bad_snapshots():
    model = bn_model()
    snap = P.snapshot(model)
    with pytest.raises(TypeError, match="snap"):
        P.rewind(model, [1, 2])
    with pytest.raises(ValueError, match="missing .*0.bias"):
        P.rewind(model, {k: v for k, v in snap.items() if k != "0.bias"})
    bad = dict(snap, **{"0.bias": torch.zeros(5)})
    with pytest.raises(ValueError, match=r"snap\['0.bias'\] .*shape"):
        P.rewind(model, bad)


def test_lottery_ticket_prunes_rewinds_trains_and_records():
    model = bn_model()
    init = P.snapshot(model)
    train_a_little(model)
    seen = []

    def train_fn(m):
        # at the start of each round: survivors hold their initial values
        w = m[0].weight_orig.detach()
        mask = m[0].weight_mask
        torch.testing.assert_close(w, init["0.weight"] * mask)
        seen.append(P.weight_sparsity(m))
        train_a_little(m)

    targets = P.iterative_sparsities(0.875, 3)
    records = P.lottery_ticket(model, train_fn, targets, rewind_to=init,
                               eval_fn=lambda m: len(seen) * 10)
    n = 18 + 12
    reached = [round(t * n) / n for t in targets]
    assert seen == reached
    assert [r["round"] for r in records] == [1, 2, 3]
    assert [r["target"] for r in records] == targets
    assert [r["sparsity"] for r in records] == reached
    assert [r["eval"] for r in records] == [10, 20, 30]
    one = P.lottery_ticket(bn_model(), lambda m: None, [0.5],
                           rewind_to=P.snapshot(bn_model()), scope="layer")
    assert one[0]["eval"] is None and one[0]["sparsity"] == 0.5


def test_lottery_ticket_bad_inputs():
    model = bn_model()
    snap = P.snapshot(model)
    with pytest.raises(TypeError, match="train_fn"):
        P.lottery_ticket(model, None, [0.5], rewind_to=snap)
    with pytest.raises(TypeError, match="eval_fn"):
        P.lottery_ticket(model, print, [0.5], rewind_to=snap, eval_fn=3)
    with pytest.raises(ValueError, match="non-decreasing"):
        P.lottery_ticket(model, print, [0.5, 0.2], rewind_to=snap)
    with pytest.raises(ValueError, match=r"sparsities\[1\]"):
        P.lottery_ticket(model, print, [0.5, 2.0], rewind_to=snap)
    with pytest.raises(ValueError, match="empty"):
        P.lottery_ticket(model, print, [], rewind_to=snap)
    with pytest.raises(ValueError, match="rewind_to does not match"):
        P.lottery_ticket(model, print, [0.5], rewind_to={})
    assert P.weight_sparsity(model) == 0  # nothing pruned on bad input


# --------------------------------------------------------------------------
# layer counts


def test_erk_counts_by_hand():
    # raw densities (10+20)/200 = 0.15 and (10+10)/100 = 0.2; at sparsity
    # 0.5, eps * (0.15 * 200 + 0.2 * 100) = 150 gives eps = 3
    shapes = [(10, 20), (10, 10)]
    assert P.layer_keep_counts(shapes, 0.5, "erk") == [90, 60]
    # at 0.1, eps = 270 / 50 = 5.4 makes layer 2 denser than 1: it is kept
    # dense and layer 1 gets the remaining 170
    assert P.layer_keep_counts(shapes, 0.1, "erk") == [170, 100]
    assert P.layer_keep_counts(shapes, 0.5) == [100, 50]
    assert P.layer_keep_counts(shapes, 0.0, "erk") == [200, 100]
    # a convolution's kernel sizes count: (4+2+3+3)/72 vs (8+36)/288
    conv = [(4, 2, 3, 3), (8, 36)]
    eps = 0.8 * 360 / (12 + 44)
    expect = [eps * 12, eps * 44]
    counts = P.layer_keep_counts(conv, 0.2, "erk")
    assert sum(counts) == 288
    assert all(abs(c - e) < 1 for c, e in zip(counts, expect))


def test_erk_totals_are_exact():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        shapes = [tuple(int(v) for v in torch.randint(1, 30, (2,),
                                                      generator=g))
                  for _ in range(4)]
        s = float(torch.rand((), generator=g)) * 0.99
        n = sum(math.prod(sh) for sh in shapes)
        counts = P.layer_keep_counts(shapes, s, "erk")
        assert sum(counts) == round((1 - s) * n)
        assert all(0 <= c <= math.prod(sh)
                   for c, sh in zip(counts, shapes))


def test_layer_keep_counts_bad_inputs():
    with pytest.raises(ValueError, match="sparsity"):
        P.layer_keep_counts([(2, 2)], 1.0)
    with pytest.raises(ValueError, match="distribution"):
        P.layer_keep_counts([(2, 2)], 0.5, "normal")
    with pytest.raises(ValueError, match=r"shapes\[0\]\[1\]"):
        P.layer_keep_counts([(2, 0)], 0.5)
    with pytest.raises(ValueError, match="empty"):
        P.layer_keep_counts([], 0.5)


# --------------------------------------------------------------------------
# SET and RigL


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))


def run_steps(model, opt, ds, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        opt.zero_grad()
        model(torch.randn(8, 10, generator=g)).pow(2).mean().backward()
        opt.step()
        ds.step()


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_updates_change_k_entries_and_keep_sparsity_exact(method):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ds = P.DynamicSparsity(model, 0.7, optimizer=opt, method=method,
                           update_every=3, stop_step=30, seed=1)
    assert ds.n_active == [60, 30]  # round(0.3 * 200), round(0.3 * 100)
    for t in range(1, 31):
        before = [m.clone() for m in ds.masks]
        run_steps(model, opt, ds, 1, seed=t)
        after = ds.masks
        if t % 3 == 0 and t < 30:
            f = 0.3 if method == "set" else \
                0.15 * (1 + math.cos(math.pi * t / 30))
            ks = [round(f * 60), round(f * 30)]
            assert ds.updates[-1] == {"step": t, "drop_fraction": f,
                                      "k": ks}
            for b, a, k in zip(before, after, ks):
                assert int((b & ~a).sum()) == k  # dropped
                assert int((a & ~b).sum()) == k  # regrown, none re-grown
        else:
            for b, a in zip(before, after):
                assert torch.equal(a, b)
        assert [int(m.sum()) for m in after] == [60, 30]
        if method == "set":
            assert P.weight_sparsity(model) == 0.7
        else:  # regrown at zero: some stay zero (dead units, no gradient)
            assert P.weight_sparsity(model) >= 0.7
        for w, m in zip(ds.weights, after):
            assert torch.all(w[~m] == 0)  # stored weights too
    assert [u["step"] for u in ds.updates] == list(range(3, 30, 3))


def test_drop_takes_the_k_smallest_active_magnitudes():
    layer = nn.Linear(6, 5, bias=False)
    opt = torch.optim.SGD(layer.parameters(), lr=0.0)
    ds = P.DynamicSparsity(layer, 0.4, optimizer=opt, method="set",
                           drop_fraction=0.25, update_every=1)
    mask = ds.masks[0].clone()
    with torch.no_grad():  # distinct magnitudes on the 18 active entries
        w = ds.weights[0]
        vals = torch.randperm(30, generator=torch.Generator().manual_seed(3))
        vals = ((vals.float() + 1) * (-1) ** vals).view(5, 6)
        w.copy_(torch.where(mask, vals, 0.))
    stored = w.detach().clone()
    layer(torch.randn(2, 6)).sum().backward()
    opt.step()  # lr 0: no change
    ds.step()
    k = round(0.25 * 18)
    active = stored[mask]
    gone = mask & ~ds.masks[0]
    expect = smallest(active.numpy(), k)
    np.testing.assert_array_equal(gone[mask].numpy(), expect)
    # SET's regrown weights: nonzero draws within the default-init bound
    new = ds.masks[0] & ~mask
    grown = ds.weights[0][new]
    assert grown.numel() == k and torch.all(grown != 0)
    assert torch.all(grown.abs() <= 1 / math.sqrt(6))


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_rigl_grows_where_the_dense_gradient_is_largest(opt_name):
    layer = nn.Linear(4, 6, bias=False)
    params = layer.parameters()
    opt = torch.optim.SGD(params, lr=0.0, momentum=0.9) \
        if opt_name == "sgd" else torch.optim.Adam(params, lr=0.0)
    ds = P.DynamicSparsity(layer, 0.5, optimizer=opt, method="rigl",
                           drop_fraction=0.5, update_every=2, stop_step=6)
    g = torch.Generator().manual_seed(0)
    C = torch.randn(4, 6, generator=g)  # loss = sum(C * layer(I))
    for _ in range(2):
        before = ds.masks[0].clone()
        w0 = ds.weights[0].detach().clone()
        y = layer(torch.eye(4))  # = W^T, so dL/dW = C^T
        (y * C).sum().backward()
        opt.step()  # lr 0: the weights do not move, the state fills
        ds.step()
    # the second step updated: f = 0.25 * (1 + cos(pi / 3)) = 0.375
    k = round(0.375 * 12)
    assert ds.updates == [{"step": 2, "drop_fraction": 0.375, "k": [k]}]
    grad = C.T.abs()
    after = ds.masks[0]
    grown = after & ~before
    expect = np.zeros(24, dtype=bool)
    cand = np.flatnonzero(~before.flatten().numpy())
    order = np.argsort(-grad.flatten().numpy()[cand], kind="stable")
    expect[cand[order[:k]]] = True
    np.testing.assert_array_equal(grown.flatten().numpy(), expect)
    dropped = before & ~after
    np.testing.assert_array_equal(dropped[before].numpy(),
                                  smallest(w0[before].numpy(), k))
    w = ds.weights[0]
    assert torch.all(w[grown] == 0) and torch.all(w[dropped] == 0)
    state = opt.state[w]
    bufs = [v for v in state.values() if torch.is_tensor(v) and
            v.shape == w.shape]
    assert bufs  # momentum, or Adam's two moments
    for v in bufs:
        assert torch.all(v[grown | dropped] == 0)
        assert torch.any(v[after & before] != 0)


def test_rigl_needs_a_backward_before_the_update():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ds = P.DynamicSparsity(model, 0.8, optimizer=opt, method="rigl",
                           update_every=2, stop_step=10)
    ds.step()
    with pytest.raises(RuntimeError, match="no gradient was recorded"):
        ds.step()


def test_cosine_schedule_by_hand():
    ds = P.DynamicSparsity(mlp(), 0.8, optimizer=None, method="rigl",
                           drop_fraction=0.4, update_every=25,
                           stop_step=100)
    assert ds.drop_fraction_at(0) == pytest.approx(0.4)
    assert ds.drop_fraction_at(25) == pytest.approx(0.2 * (1 + 0.5 ** 0.5))
    assert ds.drop_fraction_at(50) == pytest.approx(0.2)
    assert ds.drop_fraction_at(75) == pytest.approx(0.2 * (1 - 0.5 ** 0.5))
    assert ds.drop_fraction_at(100) == 0.0
    assert [t for t in range(1, 130) if ds.is_update_step(t)] == [25, 50,
                                                                 75]
    const = P.DynamicSparsity(mlp(), 0.8, optimizer=None, update_every=10)
    assert const.schedule == "constant" and const.grow_init == "uniform"
    assert const.drop_fraction_at(10 ** 6) == 0.3


def test_erk_masks_and_seeded_draws():
    model = mlp()
    a = P.DynamicSparsity(model, 0.9, optimizer=None, distribution="erk",
                          seed=4)
    shapes = [(20, 10), (5, 20)]
    assert a.n_active == P.layer_keep_counts(shapes, 0.9, "erk")
    assert [int(m.sum()) for m in a.masks] == a.n_active
    assert a.sparsity == pytest.approx(0.9)
    assert P.weight_sparsity(model) == 1 - sum(a.n_active) / 300
    b = P.DynamicSparsity(mlp(), 0.9, optimizer=None, distribution="erk",
                          seed=4)
    c = P.DynamicSparsity(mlp(), 0.9, optimizer=None, distribution="erk",
                          seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.masks, b.masks))
    assert not all(torch.equal(x, y) for x, y in zip(a.masks, c.masks))


def test_dynamic_sparsity_with_fit_and_adam_keeps_zeros():
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.1)
    ds = P.DynamicSparsity(model, 0.8, optimizer=opt, method="rigl",
                           update_every=4, stop_step=20)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 10, generator=g), torch.randn(64, 5, generator=g)
    # called after every optimiser step, as chapter 7.2 does
    opt.register_step_post_hook(lambda *args: ds.step())
    sl.train.fit(model, sl.data.loader(x, y, batch_size=8),
                 lambda m, a, b: (m(a) - b).pow(2).mean(), opt, 3,
                 progress=False)
    assert ds.step_count == 24
    assert [u["step"] for u in ds.updates] == [4, 8, 12, 16]
    assert P.weight_sparsity(model) == ds.sparsity == 0.8
    for w, m in zip(ds.weights, ds.masks):
        assert torch.all(w[~m] == 0) and torch.all(w[m] != 0)
    ds.remove()
    assert isinstance(model[0].weight, nn.Parameter)
    assert P.weight_sparsity(model) == 0.8


def test_dynamic_sparsity_bad_inputs():
    def make(**kw):
        model = kw.pop("model", None) or mlp()
        return P.DynamicSparsity(model, kw.pop("sparsity", 0.8),
                                 optimizer=kw.pop("optimizer", None), **kw)

    with pytest.raises(ValueError, match="method"):
        make(method="snip")
    with pytest.raises(ValueError, match="drop_fraction"):
        make(drop_fraction=1.5)
    with pytest.raises(ValueError, match="update_every"):
        make(update_every=0)
    with pytest.raises(ValueError, match="stop_step must be given"):
        make(method="rigl")
    with pytest.raises(ValueError, match="sparsity"):
        make(sparsity=1.0)
    with pytest.raises(ValueError, match="distribution"):
        make(distribution="er")
    with pytest.raises(ValueError, match="grow_init"):
        make(grow_init="normal")
    with pytest.raises(TypeError, match="optimizer"):
        make(optimizer="sgd")
    other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not a parameter of optimizer"):
        make(optimizer=other)
    with pytest.raises(ValueError, match="leaves no active weight"):
        make(sparsity=0.999)
    pruned = mlp()
    P.magnitude_prune(pruned, 0.5)
    with pytest.raises(ValueError, match="already pruned"):
        make(model=pruned)
    with pytest.raises(ValueError, match="no prunable layer"):
        make(model=nn.ReLU())


# --------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
def test_pruning_on_cuda_matches_cpu_and_steps_without_sync():
    cpu = distinct_mlp()
    gpu = distinct_mlp().cuda()
    P.magnitude_prune(cpu, 0.6)
    P.magnitude_prune(gpu, 0.6)
    for (a, _), (b, _) in zip(P.prunable(cpu), P.prunable(gpu)):
        assert torch.equal(a.weight_mask, b.weight_mask.cpu())
    assert P.weight_sparsity(gpu) == P.weight_sparsity(cpu)
    snap = P.snapshot(gpu)
    assert all(v.device.type == "cuda" for v in snap.values())
    P.rewind(gpu, snap)

    model = mlp().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ds = P.DynamicSparsity(model, 0.8, optimizer=opt, method="rigl",
                           update_every=2, stop_step=10,
                           distribution="erk")
    assert all(m.device.type == "cuda" for m in ds.masks)
    x = torch.randn(8, 10, device="cuda")
    for _ in range(10):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        torch.cuda.set_sync_debug_mode("error")
        try:
            ds.step()  # update steps included: nothing is read back
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert len(ds.updates) == 4
    assert P.weight_sparsity(model) == ds.sparsity
    for w, m in zip(ds.weights, ds.masks):
        assert torch.all(w[~m] == 0)
    s = P.DynamicSparsity(mlp().cuda(), 0.8, optimizer=None, method="set",
                          update_every=1)
    s.step()
    assert [int(m.sum()) for m in s.masks] == s.n_active


def test_update_count_is_capped_by_the_inactive_weights():
    """A nearly dense layer can regrow only weights that were inactive:
    Linear(10, 10) at 20 % zeros has 80 active and 20 inactive weights, so
    a drop fraction of 0.5 (40 by the rule) updates 20 of each."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ds = P.DynamicSparsity(net, 0.2, optimizer=opt, method="set",
                           drop_fraction=0.5, update_every=1, seed=0)
    before = ds.masks[0].clone()
    loss = net(torch.randn(4, 10)).sum()
    loss.backward()
    opt.step()
    ds.step()
    after = ds.masks[0]
    assert int(before.sum()) == int(after.sum()) == 80
    assert int((before & ~after).sum()) == 20     # dropped
    assert int((~before & after).sum()) == 20     # regrown
    assert ds.updates[-1]["k"] == [20]
