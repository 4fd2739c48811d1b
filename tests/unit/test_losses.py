"""sparselib.losses: closed forms, scipy, finite differences."""

import math

import numpy as np
import pytest
import torch
from scipy.special import rel_entr

from sparselib import losses


def test_reconstruction_loss_kinds():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 6, generator=g), torch.rand(4, 6, generator=g)
    torch.testing.assert_close(losses.reconstruction_loss(x, y, "mse"),
                               torch.nn.functional.mse_loss(x, y))
    hand = sum(0.5 * sum((a - b) ** 2 for a, b in zip(r, s))
               for r, s in zip(x.tolist(), y.tolist())) / 4
    assert float(losses.reconstruction_loss(x, y, "half_sum")) == \
        pytest.approx(hand, rel=1e-6)
    assert float(losses.reconstruction_loss(x, y, "sum")) == \
        pytest.approx(2 * hand, rel=1e-6)
    with pytest.raises(ValueError, match="must match"):
        losses.reconstruction_loss(x, y[:, :5])
    with pytest.raises(ValueError,
                       match="kind must be one of 'mse', 'half_sum', 'sum'; "
                             "got 'l1'"):
        losses.reconstruction_loss(x, y, "l1")
    with pytest.raises(TypeError, match="kind must be a string"):
        losses.reconstruction_loss(x, y, None)
    with pytest.raises(TypeError, match="x_hat must be a torch.Tensor"):
        losses.reconstruction_loss(x.numpy(), y)
    with pytest.raises(TypeError, match="x_hat and x must have the same "
                                        "dtype"):
        losses.reconstruction_loss(x.double(), y)


def test_normalized_mse_hand_cases():
    x = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    mean = x.mean(0, keepdim=True).expand_as(x)
    assert float(losses.normalized_mse(mean, x)) == pytest.approx(1.0)
    assert float(losses.normalized_mse(x, x)) == 0.0
    # errors 1 and 1 over variance sum 4.
    assert float(losses.normalized_mse(x + torch.tensor([[1.0, 0], [0, 1.0]]),
                                       x)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="variance of x is 0"):
        losses.normalized_mse(x[:1], x[:1])


def test_unchecked_normalized_mse_same_value_and_zero_for_no_variance():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 5, generator=g), torch.rand(6, 5, generator=g)
    y.requires_grad_(True)
    checked = losses.normalized_mse(y, x)
    unchecked = losses._normalized_mse(y, x)
    assert torch.equal(checked, unchecked)
    (g1,) = torch.autograd.grad(checked, y)
    (g2,) = torch.autograd.grad(unchecked, y)
    assert torch.equal(g1, g2)
    one = torch.tensor([[1.0, 2.0]], requires_grad=True)
    out = losses._normalized_mse(one, torch.tensor([[0.0, 0.0]]))
    assert float(out.detach()) == 0.0
    (g3,) = torch.autograd.grad(out, one)
    assert torch.equal(g3, torch.zeros_like(one))  # finite, no NaN


def test_l1_activity_and_weight_decay():
    h = torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]])
    assert float(losses.l1_activity(h)) == 3.0
    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.fill_(2.0)
        lin.bias.fill_(100.0)
    assert float(losses.weight_decay(lin).detach()) == 0.5 * 6 * 4


@pytest.mark.parametrize("rho", [0.01, 0.05, 0.1, 0.5])
def test_kl_bernoulli_equals_scipy(rho):
    r = torch.linspace(0.001, 0.999, 50, dtype=torch.float64)
    expected = rel_entr(rho, r.numpy()) + rel_entr(1 - rho, 1 - r.numpy())
    np.testing.assert_allclose(losses.kl_bernoulli(rho, r).numpy(), expected,
                               rtol=1e-10)
    assert float(losses.kl_bernoulli(rho, torch.tensor(rho))) == \
        pytest.approx(0.0, abs=1e-7)


def test_kl_gradient_closed_form_and_finite_differences():
    rho = 0.05
    r = torch.tensor([0.01, 0.05, 0.3, 0.9], dtype=torch.float64,
                     requires_grad=True)
    losses.kl_bernoulli(rho, r).sum().backward()
    closed = -rho / r.detach() + (1 - rho) / (1 - r.detach())
    torch.testing.assert_close(r.grad, closed)
    g = torch.Generator().manual_seed(0)
    h = torch.rand(8, 5, generator=g, dtype=torch.float64).mul(0.9).add(0.05)
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: losses.kl_sparsity(t, 0.1), (h,))


def test_kl_bad_input():
    for bad in (0.0, 1.0, 1.5, -0.1, math.nan):
        with pytest.raises(ValueError,
                           match=r"rho must be a real number in \(0, 1\)"):
            losses.kl_sparsity(torch.full((2, 3), 0.2), bad)
    with pytest.raises(ValueError, match=r"rho_hat must lie in \[0, 1\]"):
        losses.kl_sparsity(torch.full((2, 3), 1.5), 0.1)
    with pytest.raises(ValueError, match=r"rho_hat must lie in \[0, 1\]"):
        losses.kl_bernoulli(0.1, torch.tensor([0.5, math.nan]))
    with pytest.raises(ValueError, match="batch, n_units"):
        losses.kl_sparsity(torch.full((3,), 0.2), 0.1)
    with pytest.raises(TypeError, match="rho must be a real number"):
        losses.kl_sparsity(torch.full((2, 3), 0.2), "0.1")
    with pytest.raises(TypeError, match="h must be a torch.Tensor"):
        losses.kl_sparsity([[0.2]], 0.1)
    # NumPy scalars are numbers like any other
    assert torch.equal(losses.kl_sparsity(torch.full((2, 3), 0.2),
                                          np.float32(0.25)),
                       losses.kl_sparsity(torch.full((2, 3), 0.2), 0.25))


def test_kl_saturated_units_stay_finite():
    h = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert torch.isfinite(losses.kl_sparsity(h, 0.1))
