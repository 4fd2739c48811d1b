"""sparselib.classifiers and the conv decoders, against independent oracles.

* the models' loss equals cross-entropy + L1 (+ reconstruction) written out
  by hand, and its gradient equals finite differences;
* the penalty of seed 001 (a sum over a batch of 100) is our mean-over-batch
  penalty with ``lam = 100 c``;
* the convolution is a patch matrix product (``unfold``), so the maps can
  be checked without ``conv2d``;
* the sub-pixel decoder equals a loop over output pixels written from Shi et
  al.'s definition, and equals a transposed convolution with the kernel of
  :func:`subpixel_to_transposed`;
* streamed activity statistics equal sparselib.metrics on the whole matrix;
* bad input gets a clear error.
"""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import sparselib as sl
from sparselib.classifiers import (SparseConvNet, SparseMLP, activity_stats,
                                   normal_init_, steps_to_reach)
from sparselib.layers import ConvDecoder, subpixel_to_transposed


def data(n=8, seed=0, shape=(784,)):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g, dtype=torch.float64),
            torch.randint(0, 10, (n,), generator=g))


# --- the fully connected model --------------------------------------------

def test_mlp_loss_equals_hand_written_objective():
    torch.manual_seed(0)
    m = SparseMLP(lam=0.03).double()
    x, y = data()
    W, b = m.encoder.weight, m.encoder.bias
    h = np.maximum(x.numpy() @ W.detach().numpy().T + b.detach().numpy(), 0)
    z = h @ m.out.weight.detach().numpy().T + m.out.bias.detach().numpy()
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    ce = -logp[np.arange(len(y)), y.numpy()].mean()
    expected = ce + 0.03 * h.sum(axis=1).mean()
    total, logs = m.loss(x, y)
    assert total.item() == pytest.approx(expected, rel=1e-12)
    assert logs["avr"] == pytest.approx((h > 0).sum(axis=1).mean())
    assert logs["l1"] == pytest.approx(h.sum(axis=1).mean())


def test_seed_penalty_is_ours_times_batch_size():
    # seed 001: c * sum over the whole batch of 100; ours: lam * mean.
    torch.manual_seed(0)
    m = SparseMLP(lam=0.0).double()
    x, y = data(n=100)
    c = 2.7e-3
    h = m.hidden(x)
    seed_penalty = c * h.sum()
    ours = SparseMLP(lam=100 * c).double()
    ours.load_state_dict(m.state_dict())
    diff = ours.loss(x, y)[0] - m.loss(x, y)[0]
    assert diff.item() == pytest.approx(seed_penalty.item(), rel=1e-12)


class LossOf(torch.nn.Module):
    """The model's total loss as a module, for functional_call + gradcheck."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y):
        return self.model.loss(x, y)[0]


def gradcheck_loss(model, x, y):
    wrapper = LossOf(model)
    names = [n for n, _ in wrapper.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True)
                   for p in wrapper.parameters())

    def f(*ps):
        return torch.func.functional_call(wrapper, dict(zip(names, ps)),
                                          (x, y))

    return torch.autograd.gradcheck(f, params)


def test_mlp_gradient_matches_finite_differences():
    torch.manual_seed(1)
    m = SparseMLP(n_inputs=6, n_hidden=5, n_classes=3, lam=0.2,
                  init="default").double()
    x = torch.randn(7, 6, dtype=torch.float64)
    assert gradcheck_loss(m, x, torch.randint(0, 3, (7,)))


def test_normal_init_is_seed_001s():
    torch.manual_seed(0)
    m = SparseMLP()
    w = m.encoder.weight.detach()
    assert w.std().item() == pytest.approx(0.1, rel=0.01)
    assert abs(w.mean().item()) < 1e-3
    assert torch.all(m.encoder.bias == 0.1) and torch.all(m.out.bias == 0.1)
    c = SparseConvNet(decoder="subpixel")
    assert torch.all(c.decoder.bias == 0.1)
    d = SparseMLP(init="default")
    assert d.encoder.weight.abs().max() <= 1 / math.sqrt(784) + 1e-9


# --- the convolutional model ----------------------------------------------

def test_conv_maps_equal_patch_products_and_shapes():
    torch.manual_seed(0)
    m = SparseConvNet().double()
    assert m.n_units == 39_200 and m.map_shape == (14, 14)
    x, y = data(n=3)
    h = m.hidden(x)
    assert h.shape == (3, 200, 14, 14)
    # unfold: every 3x3 patch at stride 2 with padding 1, as a column
    cols = F.unfold(x.view(3, 1, 28, 28), 3, padding=1, stride=2)  # 9 x 196
    w = m.conv.weight.view(200, 9)
    expected = torch.relu(w @ cols + m.conv.bias.view(1, 200, 1))
    torch.testing.assert_close(h.flatten(2), expected)
    assert m.units(x).shape == (3, 39_200)
    # the three input layouts agree
    for shaped in (x.view(3, 28, 28), x.view(3, 1, 28, 28)):
        torch.testing.assert_close(m(shaped), m(x))


@pytest.mark.parametrize("decoder", ["subpixel", "transposed"])
def test_joint_loss_is_ce_plus_sum_of_squares_plus_l1(decoder):
    torch.manual_seed(0)
    m = SparseConvNet(n_maps=6, lam=0.01, decoder=decoder,
                      recon_weight=0.5).double()
    x, y = data(n=4)
    h = m.hidden(x)
    x_hat = m.decoder(h)
    expected = (F.cross_entropy(m.out(h.flatten(1)), y)
                + 0.5 * ((x_hat - x.view(4, 1, 28, 28)) ** 2)
                .sum((1, 2, 3)).mean()
                + 0.01 * h.sum((1, 2, 3)).mean())
    total, logs = m.loss(x, y)
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)
    assert logs["recon"] == pytest.approx(
        ((x_hat - x.view(4, 1, 28, 28)) ** 2).mean().item())
    assert m.reconstruct(x).shape == (4, 1, 28, 28)


@pytest.mark.parametrize("decoder", ["subpixel", "transposed"])
def test_joint_gradient_matches_finite_differences(decoder):
    torch.manual_seed(0)
    m = SparseConvNet(image_shape=(6, 6), n_maps=3, n_classes=3, lam=0.1,
                      decoder=decoder, max_norm=0.5).double()
    x = torch.rand(2, 36, dtype=torch.float64)
    assert gradcheck_loss(m, x, torch.tensor([0, 2]))


def test_no_decoder_means_no_reconstruction():
    m = SparseConvNet(n_maps=4)
    with pytest.raises(RuntimeError, match="no decoder"):
        m.reconstruct(torch.rand(2, 784))
    assert "recon" not in m.loss(torch.rand(2, 784),
                                 torch.tensor([1, 2]))[1]


# --- decoders -------------------------------------------------------------

def subpixel_by_definition(h, weight, bias, r):
    """Shi et al. (2016), written as loops: numpy, no conv, no pixel_shuffle."""
    h, w, b = h.numpy(), weight.numpy(), bias.numpy()
    n, C, H, W = h.shape
    oc, _, k, _ = w.shape
    c, p = oc // (r * r), k // 2
    hp = np.pad(h, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((n, c, r * H, r * W))
    for co in range(c):
        for i in range(r):
            for j in range(r):
                kern = w[co * r * r + i * r + j]  # (C, k, k)
                for y in range(H):
                    for x in range(W):
                        patch = hp[:, :, y:y + k, x:x + k]
                        out[:, co, r * y + i, r * x + j] = (
                            patch * kern).sum(axis=(1, 2, 3))
    return out + b.reshape(1, c, 1, 1)


@pytest.mark.parametrize("r,k,c,C", [(2, 3, 1, 4), (3, 1, 2, 2),
                                     (2, 5, 1, 3)])
def test_subpixel_decoder_equals_its_definition(r, k, c, C):
    torch.manual_seed(0)
    d = ConvDecoder(C, c, r, "subpixel", k).double()
    h = torch.randn(2, C, 4, 5, dtype=torch.float64)
    out = d(h)
    assert out.shape == (2, c, 4 * r, 5 * r)
    np.testing.assert_allclose(out.detach().numpy(), subpixel_by_definition(
        h, d.weight.detach(), d.bias.detach(), r), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("r,k,c,C", [(2, 3, 1, 4), (3, 3, 2, 3),
                                     (2, 1, 1, 2), (2, 5, 2, 2)])
def test_subpixel_is_a_transposed_convolution(r, k, c, C):
    torch.manual_seed(0)
    sub = ConvDecoder(C, c, r, "subpixel", k).double()
    tr = ConvDecoder(C, c, r, "transposed", r * k).double()
    with torch.no_grad():
        tr.weight.copy_(subpixel_to_transposed(sub.weight, r))
        tr.bias.copy_(sub.bias)
    h = torch.randn(3, C, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(tr(h), sub(h), rtol=1e-12, atol=1e-12)
    assert sum(p.numel() for p in tr.parameters()) == \
        sum(p.numel() for p in sub.parameters())


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("r", [2, 3])
def test_transposed_decoder_output_is_exactly_r_times(k, r):
    if k < r and (2 * max(0, -(-(k - r) // 2)) + r - k) >= r:
        pytest.skip("no padding gives r times")
    d = ConvDecoder(3, 2, r, "transposed", k)
    assert d(torch.randn(2, 3, 7, 5)).shape == (2, 2, 7 * r, 5 * r)


@pytest.mark.parametrize("kind", ["subpixel", "transposed"])
def test_max_norm_bounds_every_atom_and_leaves_small_ones(kind):
    torch.manual_seed(0)
    d = ConvDecoder(5, 1, 2, kind, 3, max_norm=1.0)
    with torch.no_grad():
        d.weight.mul_(10)
        if kind == "subpixel":
            d.weight[:, 0] *= 1e-3  # a small atom stays as it is
        else:
            d.weight[0] *= 1e-3
    w = d.effective_weight()
    dims = (0, 2, 3) if kind == "subpixel" else (1, 2, 3)
    norms = torch.linalg.vector_norm(w, dim=dims)
    assert norms.max() <= 1 + 1e-6
    assert torch.allclose(norms[1:], torch.ones(4), atol=1e-6)
    small = (d.weight[:, 0] if kind == "subpixel" else d.weight[0])
    torch.testing.assert_close(w[:, 0] if kind == "subpixel" else w[0],
                               small)


def test_decoder_bad_input():
    with pytest.raises(ValueError, match="kind"):
        ConvDecoder(3, kind="bilinear")
    with pytest.raises(ValueError, match="odd"):
        ConvDecoder(3, kind="subpixel", kernel_size=4)
    with pytest.raises(ValueError, match="max_norm"):
        ConvDecoder(3, max_norm=0)
    with pytest.raises(ValueError, match="max_norm"):
        ConvDecoder(3, max_norm=float("nan"))
    with pytest.raises(ValueError, match="in_channels"):
        ConvDecoder(0)
    with pytest.raises(ValueError, match=r"h must have shape \(batch, 3"):
        ConvDecoder(3)(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match="upscale"):
        subpixel_to_transposed(torch.randn(3, 2, 3, 3), 2)
    with pytest.raises(ValueError, match="odd"):
        subpixel_to_transposed(torch.randn(4, 2, 2, 2), 2)


# --- activity statistics ------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_streamed_stats_equal_metrics_on_the_whole_matrix(batch_size):
    g = torch.Generator().manual_seed(0)
    h = torch.relu(torch.randn(50, 30, generator=g) - 0.8)
    h[:, 3] = 0  # a dead unit
    s = activity_stats(lambda a: a, h, batch_size=batch_size)
    torch.testing.assert_close(s.l0, sl.metrics.l0(h))
    torch.testing.assert_close(s.population,
                               sl.metrics.population_sparsity(h),
                               equal_nan=True)
    torch.testing.assert_close(s.duty, sl.metrics.duty_cycle(h))
    torch.testing.assert_close(s.lifetime, sl.metrics.lifetime_sparsity(h),
                               equal_nan=True, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.dead, sl.metrics.dead_units(h))
    assert s.avr == pytest.approx(sl.metrics.avr(h))
    assert s.activity_ratio == pytest.approx(sl.metrics.activity_ratio(h))
    assert s.dead_share == pytest.approx(1 / 30)
    summ = s.summary()
    assert summ["l0_max"] == sl.metrics.l0(h).max().item()
    assert summ["lifetime"] == pytest.approx(
        float(np.nanmean(sl.metrics.lifetime_sparsity(h).numpy())),
        rel=1e-5)


def test_stats_hand_case():
    # two inputs, three units: unit 0 fires on both, unit 1 on one, unit 2
    # never.
    h = torch.tensor([[1.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    s = activity_stats(lambda a: a, h, batch_size=1)
    assert s.l0.tolist() == [2, 1] and s.avr == 1.5
    assert s.duty.tolist() == [1.0, 0.5, 0.0]
    assert s.lifetime[0].item() == pytest.approx(0.0)   # equal responses
    assert s.lifetime[1].item() == pytest.approx(1.0)   # one input only
    assert math.isnan(s.lifetime[2].item())
    assert s.dead.tolist() == [False, False, True]


def test_stats_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        activity_stats(lambda a: a, torch.ones(4, 2), batch_size=0)
    with pytest.raises(ValueError, match="eps"):
        activity_stats(lambda a: a, torch.ones(4, 2), eps=-1)
    with pytest.raises(ValueError, match=r"\(batch, n_units\)"):
        activity_stats(lambda a: a.view(4, 1, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        activity_stats(lambda a: a * float("nan"), torch.ones(4, 2))


def test_steps_to_reach():
    hist = sl.train.History()
    hist.eval["step"] += [100, 200, 300]
    hist.eval["acc"] += [0.5, 0.97, 0.99]
    assert steps_to_reach(hist, "acc", 0.97) == 200
    assert steps_to_reach(hist, "acc", 0.995) is None
    with pytest.raises(KeyError, match="eval_every"):
        steps_to_reach(hist, "loss", 1.0)


# --- bad input for the models --------------------------------------------

def test_models_bad_input():
    with pytest.raises(ValueError, match="lam"):
        SparseMLP(lam=-1e-3)
    with pytest.raises(ValueError, match="lam"):
        SparseConvNet(lam=float("nan"))
    with pytest.raises(ValueError, match="init"):
        SparseMLP(init="xavier")
    with pytest.raises(ValueError, match="divisible by stride"):
        SparseConvNet(image_shape=(27, 28))
    with pytest.raises(TypeError, match="image_shape"):
        SparseConvNet(image_shape=28)
    with pytest.raises(ValueError, match="recon_weight"):
        SparseConvNet(decoder="subpixel", recon_weight=0)
    with pytest.raises(ValueError, match="exactly 1/2"):
        SparseConvNet(kernel_size=2, decoder="subpixel")
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 784\)"):
        SparseMLP().hidden(torch.rand(3, 100))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 784\)"):
        SparseConvNet().hidden(torch.rand(3, 2, 28, 28))
    m = SparseMLP()
    with pytest.raises(ValueError, match="y must"):
        m.loss(torch.rand(3, 784), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 10\)"):
        m.loss(torch.rand(2, 784), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="integer"):
        m.loss(torch.rand(2, 784), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="std"):
        normal_init_(m, std=0)


def test_train_steps_runs_the_seed_protocol():
    # a separable toy problem: the protocol must learn it, stop after
    # n_steps and evaluate every eval_every steps
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (300,), generator=g)
    x = 0.5 * torch.rand(300, 784, generator=g)
    x[:, :50] += 0.5 * y[:, None]   # class 1 is brighter in 50 pixels
    torch.manual_seed(0)
    m = SparseMLP(n_hidden=32, lam=1e-4, init="default")
    hist = sl.classifiers.train_steps(
        m, x, y, 70, eval_every=20, batch_size=50, lr=1e-2, progress=False,
        evaluate=lambda mod: {"acc": sl.train.accuracy(mod, x, y)})
    assert len(hist.step["loss"]) == 70          # 70 steps over 12 epochs
    assert hist.eval["step"] == [20, 40, 60]
    assert hist.eval["acc"][-1] > 0.9
    with pytest.raises(ValueError, match="lr"):
        sl.classifiers.train_steps(m, x, y, 1, evaluate=dict, lr=0)
    with pytest.raises(ValueError, match="n_steps"):
        sl.classifiers.train_steps(m, x, y, 0, evaluate=dict)
