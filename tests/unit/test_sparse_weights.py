"""sparselib.sparse_weights against hand counts, F.linear / F.conv2d,
dense twins, finite differences and a binomial test.

Semantics (nupic.torch's SparseWeights, Ahmad and Scheinkman 2019): every
output unit keeps exactly ``round((1 - sparsity) * fan_in)`` random inputs;
the expected counts below are worked out by hand. The zeros must survive
any standard optimiser loop with no call from the user (the trap of the
reference, shown on a plain layer zeroed once at the start); the gradient
of the stored weight is the dense layer's gradient times the mask; forward
is ``F.linear`` / ``F.conv2d`` with the masked weight.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from sparselib import sparse_weights as sw


def gen(seed):
    return torch.Generator().manual_seed(seed)


def linear(n_in, n_out, sparsity, seed=0, bias=True, dtype=torch.float64):
    torch.manual_seed(seed + 100)
    return sw.SparseWeights(nn.Linear(n_in, n_out, bias=bias, dtype=dtype),
                            sparsity, generator=gen(seed))


def conv(c_in, c_out, k, sparsity, seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed + 100)
    return sw.SparseWeights2d(nn.Conv2d(c_in, c_out, k, dtype=dtype, **kw),
                              sparsity, generator=gen(seed))


# --------------------------------------------------------------------------
# exact fan-in per unit

# fan_in 40: (1 - s) * 40 = 40, 30, 20, 12, 4
LINEAR_CASES = [(0.0, 40), (0.25, 30), (0.5, 20), (0.7, 12), (0.9, 4)]
# fan_in 3 * 3 * 3 = 27: 27, 18, 8.1 -> 8, 2.7 -> 3
CONV_CASES = [(0.0, 27), (1 / 3, 18), (0.7, 8), (0.9, 3)]


@pytest.mark.parametrize("sparsity,n_keep", LINEAR_CASES)
def test_linear_rows_keep_exactly_n_inputs(sparsity, n_keep):
    layer = linear(40, 25, sparsity)
    w = layer.weight.detach()
    assert w.shape == (25, 40)
    assert torch.all((w != 0).sum(1) == n_keep)
    assert torch.all(layer.mask.sum(1) == n_keep)
    assert torch.equal(w != 0, layer.mask)
    assert layer.n_keep == n_keep and layer.fan_in == 40
    assert layer.nonzero_count() == 25 * n_keep
    assert layer.weight_density == pytest.approx(n_keep / 40)


@pytest.mark.parametrize("sparsity,n_keep", CONV_CASES)
def test_conv_channels_keep_exactly_n_inputs(sparsity, n_keep):
    layer = conv(3, 16, 3, sparsity)
    w = layer.weight.detach()
    assert w.shape == (16, 3, 3, 3)
    assert torch.all((w != 0).reshape(16, -1).sum(1) == n_keep)
    assert layer.mask.shape == w.shape
    assert layer.fan_in == 27
    assert layer.nonzero_count() == 16 * n_keep


def test_conv_fan_in_counts_groups():
    # groups=2: each output channel sees 4 / 2 * 2 * 2 = 8 weights; 0.5 -> 4
    layer = conv(4, 6, 2, 0.5, groups=2)
    assert layer.fan_in == 8
    assert torch.all(layer.weight.detach().reshape(6, -1).ne(0).sum(1) == 4)


def test_stored_masked_entries_are_zero_at_construction():
    layer = linear(30, 10, 0.6)
    orig = layer.weight_orig.detach()
    assert torch.all(orig[~layer.mask] == 0)
    assert torch.all(orig[layer.mask] != 0)


def test_mask_function_counts_and_device():
    m = sw.sparse_weight_mask(7, 10, 0.35, generator=gen(0))  # 6.5 -> 6
    assert m.dtype == torch.bool and m.shape == (7, 10)
    assert torch.all(m.sum(1) == 6)
    assert sw.sparse_weight_mask(3, 5, 0.0).all()
    assert sw.sparse_weight_mask(3, 5, 0.5, device="meta").device.type == \
        "meta"


# --------------------------------------------------------------------------
# zeros survive optimisers without any call from the user

OPTIMISERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9,
                                     weight_decay=1e-2),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adam_wd": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
}


def regress(model, opt, x, y, steps=50):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses)


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_linear_stays_sparse_under_optimiser(name):
    layer = linear(20, 8, 0.7, dtype=torch.float32)
    mask = layer.mask.clone()
    before = layer.weight.detach().clone()
    g = gen(1)
    x, y = torch.randn(64, 20, generator=g), torch.randn(64, 8, generator=g)
    losses = regress(layer, OPTIMISERS[name](layer.parameters()), x, y)
    w = layer.weight.detach()
    assert torch.equal(layer.mask, mask)
    assert torch.all(w[~mask] == 0)                        # exact zeros
    assert torch.all(layer.weight_orig.detach()[~mask] == 0)
    assert torch.all(w[mask] != before[mask])              # it did train
    assert losses[-1] < losses[0]
    assert torch.all((w != 0).sum(1) == 6)                 # round(0.3 * 20)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_conv_stays_sparse_under_optimiser(name):
    layer = conv(2, 4, 3, 0.5, dtype=torch.float32, padding=1)
    mask = layer.mask.clone()
    g = gen(2)
    x = torch.randn(8, 2, 6, 6, generator=g)
    y = torch.randn(8, 4, 6, 6, generator=g)
    regress(layer, OPTIMISERS[name](layer.parameters()), x, y)
    assert torch.all(layer.weight.detach()[~mask] == 0)
    assert torch.all(layer.weight_orig.detach()[~mask] == 0)


def test_the_trap_a_plain_layer_zeroed_once_regrows():
    """The reference's behaviour without rezero_weights: the test above
    would fail for a layer whose zeros are only set at the start."""
    torch.manual_seed(0)
    plain = nn.Linear(20, 8)
    mask = sw.sparse_weight_mask(8, 20, 0.7, generator=gen(0))
    with torch.no_grad():
        plain.weight.masked_fill_(~mask, 0)
    g = gen(1)
    x, y = torch.randn(64, 20, generator=g), torch.randn(64, 8, generator=g)
    regress(plain, OPTIMISERS["sgd"](plain.parameters()), x, y)
    assert torch.all(plain.weight.detach()[~mask] != 0)


# --------------------------------------------------------------------------
# forward and gradient


def test_linear_forward_is_f_linear_with_masked_weight():
    layer = linear(12, 5, 0.5)
    with torch.no_grad():   # garbage in the stored masked entries
        layer.weight_orig.masked_fill_(~layer.mask, 100.0)
    orig = layer.weight_orig.detach()
    w_hand = torch.where(layer.mask, orig, torch.zeros_like(orig))
    x = torch.randn(9, 12, dtype=torch.float64, generator=gen(3))
    want = F.linear(x, w_hand, layer.bias.detach())
    torch.testing.assert_close(layer(x), want, rtol=0, atol=0)
    assert not torch.allclose(F.linear(x, orig, layer.bias.detach()), want)
    assert torch.all(layer.weight.detach()[~layer.mask] == 0)


def test_conv_forward_is_f_conv2d_with_masked_weight():
    layer = conv(3, 5, 3, 0.6, stride=2, padding=1)
    orig = layer.weight_orig.detach()
    w_hand = orig * layer.mask.to(orig.dtype)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64, generator=gen(4))
    want = F.conv2d(x, w_hand, layer.bias.detach(), stride=2, padding=1)
    torch.testing.assert_close(layer(x), want, rtol=0, atol=0)


def test_linear_without_bias_and_batch_dims():
    layer = linear(6, 3, 0.5, bias=False)
    assert layer.bias is None
    x = torch.randn(2, 4, 6, dtype=torch.float64, generator=gen(5))
    w = layer.weight_orig.detach() * layer.mask
    torch.testing.assert_close(layer(x), x @ w.T)


def test_gradient_is_dense_twin_gradient_times_mask():
    layer = linear(10, 4, 0.6)
    twin = nn.Linear(10, 4, dtype=torch.float64)
    with torch.no_grad():
        twin.weight.copy_(layer.weight_orig)   # stored zeros: same function
        twin.bias.copy_(layer.bias)
    x = torch.randn(16, 10, dtype=torch.float64, generator=gen(6))
    t = torch.randn(16, 4, dtype=torch.float64, generator=gen(7))
    (layer(x) - t).pow(3).sum().backward()
    (twin(x) - t).pow(3).sum().backward()
    dense = twin.weight.grad
    assert torch.any(dense[~layer.mask] != 0)   # the dense twin would grow
    torch.testing.assert_close(layer.weight_orig.grad,
                               dense * layer.mask, rtol=1e-12, atol=0)
    torch.testing.assert_close(layer.bias.grad, twin.bias.grad)


def test_gradient_matches_finite_differences():
    layer = conv(2, 3, 2, 0.5)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, generator=gen(8))

    def loss():
        return layer(x).sin().sum()

    loss().backward()
    grad = layer.weight_orig.grad.clone()
    flat = layer.weight_orig.data.view(-1)
    eps = 1e-6
    for i in range(flat.numel()):
        old = flat[i].item()
        with torch.no_grad():
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
        fd = (up - down) / (2 * eps)
        if layer.mask.view(-1)[i]:
            assert fd.item() == pytest.approx(grad.view(-1)[i].item(),
                                              rel=1e-6, abs=1e-8)
        else:
            assert up.item() == down.item() and grad.view(-1)[i] == 0


def test_gradcheck_through_input_and_weight():
    layer = linear(5, 3, 0.4)
    x = torch.randn(4, 5, dtype=torch.float64, generator=gen(9),
                    requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_no_grad_forward_and_construction():
    with torch.no_grad():
        layer = linear(8, 4, 0.5)
        x = torch.randn(3, 8, dtype=torch.float64, generator=gen(10))
        y = layer(x)
    assert not y.requires_grad
    w = layer.weight_orig.detach() * layer.mask
    torch.testing.assert_close(y, F.linear(x, w, layer.bias.detach()))
    assert layer.weight_orig.requires_grad


# --------------------------------------------------------------------------
# state dict, rezero_weights, randomness


def test_state_dict_round_trip_and_rezero_is_a_no_op():
    a = nn.Sequential(linear(10, 6, 0.5, seed=0), nn.ReLU(),
                      conv(1, 2, 3, 0.5, seed=0))
    b = nn.Sequential(linear(10, 6, 0.5, seed=1), nn.ReLU(),
                      conv(1, 2, 3, 0.5, seed=1))
    assert not torch.equal(a[0].mask, b[0].mask)
    keys = set(a.state_dict())
    assert "0.module.parametrizations.weight.0.mask" in keys
    b.load_state_dict(a.state_dict())
    for la, lb in [(a[0], b[0]), (a[2], b[2])]:
        assert torch.equal(la.mask, lb.mask)
        assert torch.equal(la.weight, lb.weight)
        assert torch.equal(la.bias, lb.bias)
    x = torch.randn(3, 10, dtype=torch.float64, generator=gen(11))
    torch.testing.assert_close(b[0](x), a[0](x), rtol=0, atol=0)
    before = copy.deepcopy(b.state_dict())
    b.apply(sw.rezero_weights)
    after = b.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_rezero_weights_zeroes_corrupted_stored_entries():
    layer = linear(8, 4, 0.5)
    with torch.no_grad():
        layer.weight_orig.add_(1.0)
    assert torch.any(layer.weight_orig.detach()[~layer.mask] != 0)
    sw.rezero_weights(nn.ReLU())          # no-op on other modules
    nn.Sequential(layer).apply(sw.rezero_weights)
    assert torch.all(layer.weight_orig.detach()[~layer.mask] == 0)


def test_assigning_a_dense_weight_stores_it_masked():
    layer = linear(6, 3, 0.5)
    layer.module.weight = torch.ones(3, 6, dtype=torch.float64)
    assert torch.equal(layer.weight_orig.detach(),
                       layer.mask.to(torch.float64))


def test_seeded_masks_reproducible_and_units_differ():
    m1 = linear(30, 40, 0.8, seed=5).mask
    m2 = linear(30, 40, 0.8, seed=5).mask
    m3 = linear(30, 40, 0.8, seed=6).mask
    assert torch.equal(m1, m2)
    assert not torch.equal(m1, m3)
    assert len({tuple(r.tolist()) for r in m1}) > 35   # rows differ


def test_kept_inputs_are_uniform():
    """Each input is kept by Binomial(n_units, n_keep / fan_in) units."""
    n_units, fan_in, n_keep = 4000, 10, 3
    m = sw.sparse_weight_mask(n_units, fan_in, 0.7, generator=gen(12))
    counts = m.sum(0).numpy()
    expected = np.full(fan_in, n_units * n_keep / fan_in)
    # columns sum to n_units * n_keep, so fan_in - 1 degrees of freedom
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, fan_in - 1) > 1e-3
    # pairs of inputs: P(both kept) = n_keep (n_keep - 1) / (fan_in (fan_in-1))
    both = (m[:, 0] & m[:, 1]).sum().item()
    p = n_keep * (n_keep - 1) / (fan_in * (fan_in - 1))
    assert stats.binomtest(both, n_units, p).pvalue > 1e-3


def test_repr_and_properties():
    layer = linear(10, 2, 0.7)
    assert "sparsity=0.7" in repr(layer) and "n_keep=3" in repr(layer)
    assert layer.sparsity == 0.7
    assert isinstance(layer.nonzero_count(), int)


# --------------------------------------------------------------------------
# validation


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, float("nan")])
def test_bad_sparsity_value(bad):
    with pytest.raises(ValueError, match="sparsity"):
        sw.SparseWeights(nn.Linear(4, 2), bad)


@pytest.mark.parametrize("bad", ["0.5", None, True])
def test_bad_sparsity_type(bad):
    with pytest.raises(TypeError, match="sparsity"):
        sw.SparseWeights(nn.Linear(4, 2), bad)


def test_sparsity_that_keeps_nothing():
    with pytest.raises(ValueError, match="sparsity"):
        sw.SparseWeights(nn.Linear(3, 2), 0.9)   # round(0.3) = 0


def test_wrong_module_types():
    with pytest.raises(TypeError, match="module.*nn.Linear.*Conv2d"):
        sw.SparseWeights(nn.Conv2d(1, 2, 3), 0.5)
    with pytest.raises(TypeError, match="module.*nn.Conv2d.*Linear"):
        sw.SparseWeights2d(nn.Linear(4, 2), 0.5)
    with pytest.raises(TypeError, match="module"):
        sw.SparseWeights2d(nn.Conv1d(1, 2, 3), 0.5)


def test_lazy_and_already_wrapped_modules():
    with pytest.raises(ValueError, match="module"):
        sw.SparseWeights(nn.LazyLinear(3), 0.5)
    lin = nn.Linear(8, 2)
    sw.SparseWeights(lin, 0.5)
    with pytest.raises(ValueError, match="module.*parametrised"):
        sw.SparseWeights(lin, 0.5)


def test_bad_generator_and_mask_sizes():
    with pytest.raises(TypeError, match="generator"):
        sw.SparseWeights(nn.Linear(4, 2), 0.5, generator=0)
    with pytest.raises(ValueError, match="n_units"):
        sw.sparse_weight_mask(0, 4, 0.5)
    with pytest.raises(TypeError, match="fan_in"):
        sw.sparse_weight_mask(2, 4.0, 0.5)


# --------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
def test_cuda_matches_cpu():
    cpu = nn.Sequential(conv(2, 4, 3, 0.5, padding=1), nn.Flatten(),
                        linear(4 * 5 * 5, 3, 0.7))
    gpu = copy.deepcopy(cpu).to("cuda")
    g = gen(13)
    x = torch.randn(16, 2, 5, 5, dtype=torch.float64, generator=g)
    y = torch.randn(16, 3, dtype=torch.float64, generator=g)
    for model, dev in [(cpu, "cpu"), (gpu, "cuda")]:
        opt = OPTIMISERS["sgd"](model.parameters())
        regress(model, opt, x.to(dev), y.to(dev), steps=20)
    for a, b in [(cpu[0], gpu[0]), (cpu[2], gpu[2])]:
        assert b.mask.device.type == "cuda"
        assert torch.equal(a.mask, b.mask.cpu())
        assert torch.all(b.weight.detach()[~b.mask] == 0)
        torch.testing.assert_close(b.weight.detach().cpu(), a.weight.detach())
    torch.testing.assert_close(gpu(x.cuda()).detach().cpu(),
                               cpu(x).detach())
    gcuda = torch.Generator(device="cuda").manual_seed(0)
    m = sw.sparse_weight_mask(50, 20, 0.75, generator=gcuda)
    assert m.device.type == "cuda" and torch.all(m.sum(1) == 5)
    layer = sw.SparseWeights(nn.Linear(20, 50, device="cuda"), 0.75,
                             generator=gcuda)
    assert layer.mask.device.type == "cuda" and layer.nonzero_count() == 250
