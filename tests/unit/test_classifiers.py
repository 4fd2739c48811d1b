"""sparselib.classifiers and the conv decoders, against independent oracles.

* the models' loss equals cross-entropy + L1 (+ reconstruction) written out
  by hand, and its gradient equals finite differences;
* the penalty of the source, "Sparse coding: a simple exploration" (a sum
  over a batch of 100), is our mean-over-batch penalty with ``lam = 100 c``;
* the convolution is a patch matrix product (``unfold``), so the maps can
  be checked without ``conv2d``;
* the sub-pixel decoder equals a loop over output pixels written from Shi et
  al.'s definition, and equals a transposed convolution with the kernel of
  :func:`subpixel_to_transposed`;
* the logs of ``loss`` are detached 0-d tensors (nothing read to the host);
* bad input gets a clear error.

The training protocol and the streamed activity statistics are tested in
test_train.py and test_metrics.py.
"""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sparselib.classifiers import SparseConvNet, SparseMLP, normal_init_
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
    assert float(logs["avr"]) == pytest.approx((h > 0).sum(axis=1).mean())
    assert float(logs["l1"]) == pytest.approx(h.sum(axis=1).mean())
    assert float(logs["ce"]) == pytest.approx(ce, rel=1e-12)


@pytest.mark.parametrize("decoder", [None, "subpixel"])
def test_loss_logs_are_detached_scalar_tensors(decoder):
    # nothing in the logs is read back to the host, nor keeps the graph
    torch.manual_seed(0)
    m = (SparseMLP(n_hidden=8, lam=0.1) if decoder is None else
         SparseConvNet(n_maps=4, lam=0.1, decoder=decoder))
    total, logs = m.loss(torch.rand(3, 784), torch.tensor([0, 5, 9]))
    assert total.requires_grad
    assert set(logs) == ({"ce", "l1", "avr"} if decoder is None else
                         {"ce", "l1", "avr", "recon"})
    for v in logs.values():
        assert isinstance(v, torch.Tensor) and v.ndim == 0
        assert not v.requires_grad and v.grad_fn is None


def test_source_penalty_is_ours_times_batch_size():
    # the source: c * sum over the whole batch of 100; ours: lam * mean.
    torch.manual_seed(0)
    m = SparseMLP(lam=0.0).double()
    x, y = data(n=100)
    c = 2.7e-3
    h = m.hidden(x)
    source_penalty = c * h.sum()
    ours = SparseMLP(lam=100 * c).double()
    ours.load_state_dict(m.state_dict())
    diff = ours.loss(x, y)[0] - m.loss(x, y)[0]
    assert diff.item() == pytest.approx(source_penalty.item(),
                                       rel=1e-12)


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


def test_normal_init_is_the_sources():
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
    assert float(logs["recon"]) == pytest.approx(
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
    """Shi et al. (2016) written as loops: numpy, no conv, no pixel_shuffle."""
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
    with pytest.raises(ValueError, match="y must hold one label per input"):
        m.loss(torch.rand(3, 784), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="y must be 1-d"):
        m.loss(torch.rand(2, 784), torch.tensor([[0, 1]]))
    with pytest.raises(TypeError, match="integer class labels"):
        m.loss(torch.rand(2, 784), torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        m.loss(torch.rand(2, 784), [0, 1])
    with pytest.raises(ValueError, match="std must be a real number > 0"):
        normal_init_(m, std=0)
    with pytest.raises(ValueError, match="bias"):
        normal_init_(m, bias=float("inf"))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(lam=-1e-3), ValueError, r"lam must be a real number >= 0, got"),
    (dict(lam=float("inf")), ValueError, "lam must be a finite"),
    (dict(lam="0.1"), TypeError, "lam must be a real number"),
    (dict(lam=True), TypeError, "lam"),
    (dict(init=None), TypeError, "init must be a string"),
    (dict(n_hidden=2.0), TypeError, "n_hidden must be an integer"),
])
def test_checks_name_the_argument_and_its_kind(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SparseMLP(**kwargs)
