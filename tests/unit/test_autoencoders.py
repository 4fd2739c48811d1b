"""sparselib.autoencoders: UFLDL's hand-derived backpropagation, exact TopK
L0, parameter counts, dead latents and bad input."""

import math

import numpy as np
import pytest
import torch

from sparselib.autoencoders import SparseAutoencoder


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_kl_objective_gradient_equals_ufldl_backprop():
    # UFLDL's sparse autoencoder exercise, written out in numpy:
    # delta3 = -(x - a3) a3 (1 - a3);
    # delta2 = (W2^T delta3 + beta (-rho/rho_hat + (1-rho)/(1-rho_hat)))
    #          a2 (1 - a2);
    # dW1 = delta2 x^T / m + lambda W1, dW2 = delta3 a2^T / m + lambda W2.
    torch.manual_seed(0)
    rho, beta, lam = 0.1, 3.0, 3e-3
    m = SparseAutoencoder(12, 5, sparsity="kl", rho=rho, beta=beta,
                          weight_decay=lam, recon="half_sum").double()
    x = torch.rand(20, 12, dtype=torch.float64)
    total, _ = m.loss(x)
    total.backward()
    W1, b1 = m.encoder.weight.detach().numpy(), m.encoder.bias.detach().numpy()
    W2, b2 = m.decoder.weight.detach().numpy(), m.decoder.bias.detach().numpy()
    X = x.numpy().T                                  # (n_in, m)
    a2 = sigmoid(W1 @ X + b1[:, None])
    a3 = sigmoid(W2 @ a2 + b2[:, None])
    rho_hat = a2.mean(axis=1)
    n = X.shape[1]
    J = (0.5 * ((a3 - X) ** 2).sum() / n
         + lam / 2 * ((W1 ** 2).sum() + (W2 ** 2).sum())
         + beta * (rho * np.log(rho / rho_hat)
                   + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))).sum())
    d3 = -(X - a3) * a3 * (1 - a3)
    sp = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
    d2 = (W2.T @ d3 + sp[:, None]) * a2 * (1 - a2)
    np.testing.assert_allclose(float(total.detach()), J, rtol=1e-12)
    np.testing.assert_allclose(m.encoder.weight.grad.numpy(),
                               d2 @ X.T / n + lam * W1, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.decoder.weight.grad.numpy(),
                               d3 @ a2.T / n + lam * W2, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(m.encoder.bias.grad.numpy(), d2.mean(axis=1),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sparsity,kw", [("kl", {}), ("l1", {"lam": 0.1}),
                                         ("none", {})])
def test_objective_gradient_finite_differences(sparsity, kw):
    torch.manual_seed(1)
    m = SparseAutoencoder((3, 4), (2, 3), layer="ndlinear", sparsity=sparsity,
                          weight_decay=1e-2, **kw).double()
    x = torch.rand(6, 3, 4, dtype=torch.float64)
    params = list(m.parameters())

    # Analytic gradient from autograd against central differences.
    total = m.loss(x)[0]
    grads = torch.autograd.grad(total, params)
    eps = 1e-6
    for p, g in zip(params, grads):
        flat = p.detach().view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 4)):
            old = float(flat[i])
            with torch.no_grad():
                flat[i] = old + eps
                up = float(m.loss(x)[0])
                flat[i] = old - eps
                down = float(m.loss(x)[0])
                flat[i] = old
            assert (up - down) / (2 * eps) == pytest.approx(
                float(g.view(-1)[i]), rel=1e-5, abs=1e-8)


def test_ndlinear_readme_parameter_counts():
    dense = SparseAutoencoder(784, 256)
    nd = SparseAutoencoder((28, 28), (16, 16), layer="ndlinear")
    assert dense.n_parameters() == 784 * 256 + 256 + 256 * 784 + 784 == 402448
    assert nd.n_parameters() == 2 * (28 * 16 + 16) + 2 * (16 * 28 + 28) == 1880


def test_shapes_flat_and_image_inputs():
    for layer, hid in (("linear", 64), ("ndlinear", (8, 8))):
        m = SparseAutoencoder((28, 28), hid, layer=layer)
        for x in (torch.rand(5, 784), torch.rand(5, 28, 28)):
            x_hat, h = m(x)
            assert x_hat.shape == x.shape and h.shape == (5, 64)
            assert ((h > 0) & (h < 1)).all()
        assert m.features("decoder").shape == (64, 28, 28)
        assert m.features("encoder").shape == (64, 28, 28)


def test_ndlinear_features_are_dense_equivalent_columns():
    torch.manual_seed(0)
    m = SparseAutoencoder((4, 5), (2, 3), layer="ndlinear", output=None)
    h = torch.zeros(1, 6)
    h[0, 4] = 1.0
    lin_part = m.decode(h) - m.decode(torch.zeros_like(h))
    torch.testing.assert_close(lin_part[0], m.features("decoder")[4])


def test_topk_l0_is_exactly_k():
    torch.manual_seed(0)
    m = SparseAutoencoder(784, 512, sparsity="topk", k=16, output=None)
    with torch.no_grad():
        m.encoder.bias.fill_(5.0)     # every pre-activation positive
    h = m.encode(torch.rand(200, 784))
    assert ((h != 0).sum(dim=1) == 16).all()
    _, logs = m.loss(torch.rand(10, 784))
    assert logs["l0"] == 16.0


def test_dead_latents_counted_and_auxk_uses_them():
    torch.manual_seed(0)
    m = SparseAutoencoder(20, 10, sparsity="topk", k=2, output=None,
                          aux_k=3, dead_after=50)
    with torch.no_grad():
        m.encoder.bias[:4] = -1e3          # units 0-3 can never win
        m.encoder.bias[4:] = 1e3
    x = torch.rand(30, 20)
    m.train()
    _, logs = m.loss(x)
    assert logs["aux"] == 0.0 and not m.dead_mask().any()
    m.loss(x)                               # 60 examples seen
    dead = m.dead_mask()
    assert dead[:4].all() and dead.sum() >= 4
    total, logs = m.loss(x)
    assert logs["aux"] > 0
    total.backward()
    assert m.encoder.weight.grad[:4].abs().sum() == 0  # ReLU(-1e3) = 0
    m.eval()
    before = m.since_fired.clone()
    m.loss(x)
    assert torch.equal(before, m.since_fired)   # no update in eval mode


def test_tied_init():
    m = SparseAutoencoder(30, 8, sparsity="topk", k=2, output=None,
                          tied_init=True)
    torch.testing.assert_close(m.decoder.weight, m.encoder.weight.T)


@pytest.mark.parametrize("kwargs,match", [
    (dict(sparsity="topk", k=300), "k must be <= 256"),
    (dict(sparsity="topk"), "needs k"),
    (dict(sparsity="kl", k=3), "only used with sparsity='topk'"),
    (dict(rho=0.0), r"rho must be a real number in \(0, 1\), got 0\.0"),
    (dict(rho=1.0), r"rho must be a real number in \(0, 1\)"),
    (dict(rho=1.5), r"rho must be a real number in \(0, 1\), got 1\.5"),
    (dict(beta=-1.0), r"beta must be a real number >= 0, got -1\.0"),
    (dict(lam=math.nan), "lam must be a real number >= 0, not NaN"),
    (dict(weight_decay=math.inf), "weight_decay must be a finite real"),
    (dict(aux_alpha=-0.5), "aux_alpha must be a real number >= 0"),
    (dict(sparsity="sparse"), "sparsity must be one of 'kl', 'l1'"),
    (dict(layer="conv"), "layer must be one of 'linear', 'ndlinear'"),
    (dict(output="relu"), "output must be one of 'sigmoid'"),
    (dict(recon="sum"), "recon must be one of 'mse', 'half_sum'"),
    (dict(aux_k=4), "aux_k .* needs sparsity='topk'"),
    (dict(sparsity="topk", k=4, aux_k=4), "needs a linear output"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseAutoencoder(784, 256, **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(rho="0.05"), "rho must be a real number"),
    (dict(beta=True), "beta must be a real number, got True"),
    (dict(lam=None), "lam must be a real number"),
    (dict(sparsity=None), "sparsity must be a string"),
    (dict(output=1), "output must be a string"),
    (dict(sparsity="topk", k=2.0), "k must be an integer"),
])
def test_wrong_kinds_are_type_errors(kwargs, match):
    with pytest.raises(TypeError, match=match):
        SparseAutoencoder(784, 256, **kwargs)


def test_numpy_scalars_are_accepted():
    m = SparseAutoencoder(784, 256, rho=np.float32(0.25),
                          beta=np.float64(2.0), lam=np.int64(1))
    assert (m.rho, m.beta, m.lam) == (0.25, 2.0, 1.0)
    assert all(type(v) is float for v in (m.rho, m.beta, m.lam))


def test_kl_loss_does_not_check_values_each_step(monkeypatch):
    # the model's penalty is kl_sparsity's arithmetic without its check
    # (which reads rho_hat): same value, and the public check is not run
    from sparselib import losses

    m = SparseAutoencoder(20, 6, sparsity="kl", rho=0.1)
    x = torch.rand(5, 20)
    h = m.encode(x)
    want = losses.kl_sparsity(h, 0.1)

    def forbidden(*args, **kwargs):
        raise AssertionError("checked KL called in the training step")

    monkeypatch.setattr(losses, "kl_bernoulli", forbidden)
    monkeypatch.setattr(losses, "kl_sparsity", forbidden)
    assert torch.equal(m.penalty(h), want)
    m.loss(x)


def test_auxk_on_a_batch_of_one_is_zero_not_an_error():
    # the residual of a single example has variance 0: normalized_mse
    # would raise; the training step's AuxK term is 0 instead
    m = SparseAutoencoder(30, 8, sparsity="topk", k=2, output=None,
                          aux_k=3, dead_after=1)
    m.since_fired.fill_(5)  # every latent dead
    total, logs = m.loss(torch.rand(1, 30))
    assert logs["aux"] == 0.0 and torch.isfinite(total)


def test_ndlinear_needs_matching_axes():
    with pytest.raises(ValueError, match="as many axes"):
        SparseAutoencoder((28, 28), 256, layer="ndlinear")


def test_bad_input_shape():
    m = SparseAutoencoder((28, 28), 16)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 784\) "
                       r"or \(batch, 28, 28\); got \(3, 783\)"):
        m(torch.rand(3, 783))
    with pytest.raises(ValueError, match=r"h must have shape \(batch, 16\)"):
        m.decode(torch.rand(3, 15))


@pytest.mark.parametrize("n_dead", [0, 2, 4, 10])
def test_auxk_without_a_host_count_equals_the_counted_one(n_dead):
    """Off the CPU, AuxK avoids reading the dead count back every step
    (fixed k, masked); its value and gradients equal the counted path's,
    including with no dead unit (0) and fewer dead units than aux_k."""
    torch.manual_seed(1)
    m = SparseAutoencoder(16, 10, sparsity="topk", k=2, output=None,
                          aux_k=4, dead_after=5)
    m.since_fired[:n_dead] = 10
    assert int(m.dead_mask().sum()) == n_dead
    x = torch.rand(12, 16)
    out = []
    for host_count in (True, False):
        m.zero_grad()
        z = m.preactivation(x)
        x_hat = m.decode(m.activate(z))
        aux = m._aux_loss(z, x_hat, x, host_count=host_count)
        if aux.requires_grad:
            aux.backward()
        out.append((aux.detach(), [
            torch.zeros_like(p) if p.grad is None else p.grad.clone()
            for p in m.parameters()]))
    (a1, g1), (a2, g2) = out
    if n_dead == 0:
        assert a1 == 0 and a2 == 0
    else:
        assert a1 > 0
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)
    assert len(g1) == len(g2)
    for u, v in zip(g1, g2):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
