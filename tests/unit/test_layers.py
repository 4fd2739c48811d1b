"""sparselib.layers: NdLinear against its Kronecker algebra and the ndlinear
package; the nearest Kronecker product against the SVD identity; TopK against
a sort."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselib.layers import (ConvDecoder, NdLinear, TopK, nearest_kronecker,
                              subpixel_to_transposed, topk_relu)

torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("in_shape,out_shape", [
    ((28, 28), (16, 16)), ((28, 28), (16, 8)), ((3, 4, 5), (2, 6, 1)),
    ((7,), (3,))])
def test_parameter_count_is_sum_of_axis_maps(in_shape, out_shape):
    layer = NdLinear(in_shape, out_shape)
    expected = sum(i * o + o for i, o in zip(in_shape, out_shape))
    assert sum(p.numel() for p in layer.parameters()) == expected


def test_ndlinear_readme_sizes():
    # (28,28)->(16,16)->(28,28) autoencoder: 928 + 952 parameters.
    enc, dec = NdLinear((28, 28), (16, 16)), NdLinear((16, 16), (28, 28))
    n = sum(p.numel() for m in (enc, dec) for p in m.parameters())
    assert n == (28 * 16 + 16) * 2 + (16 * 28 + 28) * 2 == 1880


def test_two_axes_equal_hand_derived_matrix_form():
    g = torch.Generator().manual_seed(0)
    layer = NdLinear((4, 5), (3, 2)).double()
    x = torch.randn(6, 4, 5, generator=g, dtype=torch.float64)
    W1, b1 = layer.maps[0].weight, layer.maps[0].bias
    W2, b2 = layer.maps[1].weight, layer.maps[1].bias
    # Y = W1 X W2^T + b1 (W2 1)^T + 1 b2^T, per example.
    expected = (W1 @ x @ W2.T + b1[:, None] * W2.sum(1)[None, :]
                + b2[None, :])
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("in_shape,out_shape", [
    ((4, 5), (3, 2)), ((3, 4, 2), (2, 3, 5)), ((6,), (4,))])
def test_forward_equals_kronecker_dense_layer(in_shape, out_shape):
    torch.manual_seed(1)
    layer = NdLinear(in_shape, out_shape).double()
    x = torch.randn(7, *in_shape, dtype=torch.float64)
    W, b = layer.dense_equivalent()
    assert W.shape == (math.prod(out_shape), math.prod(in_shape))
    # Oracle: numpy's Kronecker product of the per-axis weights.
    W_np = np.ones((1, 1))
    for lin in layer.maps:
        W_np = np.kron(W_np, lin.weight.detach().numpy())
    np.testing.assert_allclose(W.detach().numpy(), W_np, rtol=1e-12)
    torch.testing.assert_close(layer(x).flatten(1), x.flatten(1) @ W.T + b)


def test_matches_ndlinear_package():
    ndl = pytest.importorskip("ndlinear.ndlinear",
                              reason="the ndlinear package is not installed")
    torch.manual_seed(0)
    ref = ndl.NdLinear((28, 28), (16, 8))
    ours = NdLinear((28, 28), (16, 8))
    with torch.no_grad():
        for a, b in zip(ours.maps, ref.align_layers):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
    x = torch.rand(5, 28, 28)
    torch.testing.assert_close(ours(x), ref(x))
    assert sum(p.numel() for p in ours.parameters()) == \
        sum(p.numel() for p in ref.parameters()) == 696
    # With its mirror as decoder: FACTS' 1,424 for (28,28)->(16,8)->(28,28).
    assert 696 + sum(p.numel() for p in NdLinear((16, 8), (28, 28))
                     .parameters()) == 1424


def test_ndlinear_bad_input():
    with pytest.raises(ValueError, match="same number of axes"):
        NdLinear((28, 28), (16,))
    with pytest.raises(ValueError, match=r"in_shape\[1\]"):
        NdLinear((28, 0), (16, 16))
    with pytest.raises(TypeError, match="in_shape"):
        NdLinear((28, 2.5), (16, 16))
    with pytest.raises(ValueError,
                       match=r"x must have shape \(batch, 28, 28\)"):
        NdLinear((28, 28), (16, 16))(torch.zeros(3, 784))


def test_nearest_kronecker_recovers_exact_product():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 4, generator=g, dtype=torch.float64)
    B = torch.randn(5, 2, generator=g, dtype=torch.float64)
    A_, B_, share, sigma = nearest_kronecker(torch.kron(A, B), (3, 5), (4, 2))
    assert share == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(torch.kron(A_, B_), torch.kron(A, B))
    assert sigma[1:].abs().max() < 1e-10


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_nearest_kronecker_error_identity_and_optimality(seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(6, 12, generator=g, dtype=torch.float64)
    A, B, share, _ = nearest_kronecker(W, (2, 3), (3, 4))
    err = (W - torch.kron(A, B)).pow(2).sum() / W.pow(2).sum()
    assert float(err) == pytest.approx(1 - share, rel=1e-9, abs=1e-12)
    # No random Kronecker product, nor a perturbation of the optimum, is
    # closer to W.
    for _ in range(5):
        P = torch.kron(A + 0.05 * torch.randn(2, 3, generator=g,
                                              dtype=torch.float64),
                       B + 0.05 * torch.randn(3, 4, generator=g,
                                              dtype=torch.float64))
        assert (W - P).pow(2).sum() >= (W - torch.kron(A, B)).pow(2).sum()


def test_nearest_kronecker_bad_shape():
    with pytest.raises(ValueError, match=r"W must have shape \(6, 12\)"):
        nearest_kronecker(torch.zeros(5, 12), (2, 3), (3, 4))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 20), st.integers(0, 10_000))
def test_topk_relu_against_sort(batch, width, seed):
    k = seed % width + 1
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, width, generator=g)
    out = topk_relu(z, k)
    zn = z.numpy()
    for row, o in zip(zn, out.numpy()):
        keep = np.argsort(-row, kind="stable")[:k]
        expected = np.zeros_like(row)
        expected[keep] = np.maximum(row[keep], 0)
        np.testing.assert_array_equal(o, expected)
        assert (o != 0).sum() == min(k, (row > 0).sum())


def test_topk_exact_l0_when_enough_positive():
    z = torch.rand(50, 64) + 0.1
    assert ((topk_relu(z, 8) != 0).sum(dim=1) == 8).all()


def test_topk_gradient_only_to_winners():
    z = torch.tensor([[3.0, -1.0, 2.0, 0.5]], requires_grad=True)
    topk_relu(z, 2).sum().backward()
    assert z.grad.tolist() == [[1.0, 0.0, 1.0, 0.0]]


def test_topk_bad_k():
    with pytest.raises(ValueError, match="k must be <= 4"):
        topk_relu(torch.zeros(2, 4), 5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        TopK(0)
    with pytest.raises(ValueError, match="2-d"):
        topk_relu(torch.zeros(4), 1)
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        topk_relu([[1.0, 2.0]], 1)
    with pytest.raises(TypeError, match="k must be an integer"):
        topk_relu(torch.zeros(2, 4), 2.0)


def test_shape_arguments_take_numpy_integers_and_reject_strings():
    assert NdLinear(np.int64(6), (np.int32(3),)).out_shape == (3,)
    with pytest.raises(TypeError, match="in_shape must be a tuple"):
        NdLinear("28", (16,))
    with pytest.raises(TypeError, match=r"in_shape\[0\] must be an integer"):
        NdLinear((True, 2), (1, 1))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(kind="pixel"), ValueError,
     "kind must be one of 'subpixel', 'transposed'; got 'pixel'"),
    (dict(kind=None), TypeError, "kind must be a string"),
    (dict(max_norm=0.0), ValueError,
     r"max_norm must be a real number > 0, got 0\.0"),
    (dict(max_norm=float("inf")), ValueError, "max_norm must be a finite"),
    (dict(max_norm=float("nan")), ValueError, "max_norm.*NaN"),
    (dict(max_norm="1"), TypeError, "max_norm must be a real number"),
    (dict(max_norm=True), TypeError, "max_norm must be a real number"),
    (dict(upscale=0), ValueError, "upscale must be >= 1"),
])
def test_conv_decoder_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ConvDecoder(4, **kwargs)


def test_conv_decoder_accepts_numpy_max_norm():
    dec = ConvDecoder(4, max_norm=np.float32(0.5))
    assert dec.max_norm == 0.5 and type(dec.max_norm) is float


def test_conv_decoder_and_subpixel_bad_tensors():
    dec = ConvDecoder(4)
    with pytest.raises(TypeError, match="h must be a torch.Tensor"):
        dec(np.zeros((1, 4, 3, 3)))
    with pytest.raises(ValueError, match=r"h must have shape \(batch, 4"):
        dec(torch.zeros(1, 3, 3, 3))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        subpixel_to_transposed(np.zeros((4, 1, 3, 3)), 2)
    with pytest.raises(ValueError, match="weight must be 4-d"):
        subpixel_to_transposed(torch.zeros(4, 3, 3), 2)
