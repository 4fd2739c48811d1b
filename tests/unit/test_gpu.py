"""The library on a CUDA device: same results as on the CPU.

Skipped, visibly, where torch sees no CUDA device (CI); run on a GPU machine.
"""

import pytest
import torch

import sparselib as sl

pytestmark = pytest.mark.gpu


def test_auto_device_is_cuda():
    assert sl.get_device("auto").type == "cuda"


def test_random_sdr_and_monte_carlo_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    x = sl.sdr.random_sdr(1000, 500, 20, generator=g)
    assert x.device.type == "cuda" and torch.all(x.sum(1) == 20)
    exact = sl.sdr.match_probability(300, 256, 24, 22)
    est, se = sl.sdr.match_probability_mc(300, 256, 24, 22, 50_000,
                                          generator=g)
    assert abs(est - exact) < 5 * se


def test_codes_and_metrics_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    book = sl.codes.codebook("sparse", 50, 400, 10, generator=g)
    noisy = sl.codes.corrupt(book, drop=0.2, generator=g)
    assert sl.codes.recognise(noisy, book, generator=g).device.type == "cuda"
    assert sl.metrics.l0(book).device.type == "cuda"
    h = torch.relu(torch.randn(64, 32, device="cuda"))
    cpu = sl.metrics.hoyer_sparsity(h.cpu())
    torch.testing.assert_close(sl.metrics.hoyer_sparsity(h).cpu(), cpu)


def test_fit_on_cuda():
    x = torch.randn(256, 4, device="cuda")
    y = x @ torch.ones(4, 1, device="cuda")
    model = torch.nn.Linear(4, 1).to("cuda")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hist = sl.train.fit(model, sl.data.loader(x, y, batch_size=32),
                        lambda m, a, b: (m(a) - b).pow(2).mean(), opt, 20,
                        progress=False)
    assert hist.epoch["loss"][-1] < 1e-3


@pytest.mark.parametrize("sparsity,kw", [("kl", {}), ("l1", {"lam": 1e-3}),
                                         ("topk", {"k": 8, "output": None,
                                                   "aux_k": 16})])
@pytest.mark.parametrize("layer,hidden", [("linear", 64),
                                          ("ndlinear", (8, 8))])
def test_autoencoders_on_cuda_match_cpu(sparsity, kw, layer, hidden):
    torch.manual_seed(0)
    cpu = sl.autoencoders.SparseAutoencoder(
        (28, 28), hidden, layer=layer, sparsity=sparsity, dead_after=8,
        **kw).double()
    gpu = sl.autoencoders.SparseAutoencoder(
        (28, 28), hidden, layer=layer, sparsity=sparsity, dead_after=8,
        **kw).double().to("cuda")
    gpu.load_state_dict(cpu.state_dict())
    x = torch.rand(32, 784, dtype=torch.float64)
    for _ in range(2):                      # the second call sees dead units
        lc, _ = cpu.loss(x)
        lg, _ = gpu.loss(x.cuda())
    torch.testing.assert_close(lg.cpu(), lc)
    lc.backward()
    lg.backward()
    for pc, pg in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(pg.grad.cpu(), pc.grad)


def test_ndlinear_and_kronecker_on_cuda():
    layer = sl.layers.NdLinear((6, 5), (3, 4)).to("cuda")
    x = torch.randn(7, 6, 5, device="cuda")
    W, b = layer.dense_equivalent()
    assert W.device.type == "cuda"
    torch.testing.assert_close(layer(x).flatten(1), x.flatten(1) @ W.T + b)
    A, B, share, _ = sl.layers.nearest_kronecker(W, (3, 4), (6, 5))
    assert share == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("decoder", [None, "subpixel", "transposed"])
def test_classifiers_on_cuda_match_cpu(decoder):
    torch.manual_seed(0)
    cpu = sl.classifiers.SparseConvNet(n_maps=16, lam=1e-2,
                                       decoder=decoder).double()
    gpu = sl.classifiers.SparseConvNet(n_maps=16, lam=1e-2,
                                       decoder=decoder).double().to("cuda")
    gpu.load_state_dict(cpu.state_dict())
    x = torch.rand(8, 784, dtype=torch.float64)
    y = torch.randint(0, 10, (8,))
    lc, _ = cpu.loss(x, y)
    lg, _ = gpu.loss(x.cuda(), y.cuda())
    torch.testing.assert_close(lg.cpu(), lc)
    lc.backward()
    lg.backward()
    for pc, pg in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(pg.grad.cpu(), pc.grad)
    sc = sl.metrics.activity_stats(cpu.units, x, batch_size=3)
    sg = sl.metrics.activity_stats(gpu.units, x.cuda(), batch_size=3)
    assert sg.avr == pytest.approx(sc.avr)
    torch.testing.assert_close(sg.lifetime, sc.lifetime, equal_nan=True)


def test_mlp_fit_with_eval_every_on_cuda():
    torch.manual_seed(0)
    model = sl.classifiers.SparseMLP(n_inputs=20, n_hidden=32,
                                     lam=1e-3).to("cuda")
    x = torch.rand(256, 20, device="cuda")
    y = (x[:, 0] > 0.5).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    hist = sl.train.fit(model, sl.data.loader(x, y, batch_size=32),
                        lambda m, a, b: m.loss(a, b), opt, 5,
                        eval_every=8, progress=False,
                        evaluate=lambda m: {"acc": sl.train.accuracy(
                            m, x, y)})
    assert hist.eval["step"] == [8, 16, 24, 32, 40]
    assert hist.eval["acc"][-1] > 0.8


def test_sparse_coding_on_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    D = torch.randn(48, 24, generator=g, dtype=torch.float64)
    D = D / D.norm(dim=1, keepdim=True)
    x = torch.randn(30, 24, generator=g, dtype=torch.float64)
    Dg, xg = D.cuda(), x.cuda()
    assert sl.coding.lipschitz(Dg) == pytest.approx(sl.coding.lipschitz(D))
    for solver in (sl.coding.ista, sl.coding.fista):
        a = solver(x, D, 0.2, 300, tol=0)
        ag = solver(xg, Dg, 0.2, 300, tol=0)
        assert ag.device.type == "cuda"
        torch.testing.assert_close(ag.cpu(), a)
    torch.testing.assert_close(sl.coding.omp(xg, Dg, 6).cpu(),
                               sl.coding.omp(x, D, 6))
    net = sl.coding.LISTA(Dg, 0.2, 3)
    torch.testing.assert_close(net(xg).cpu(),
                               sl.coding.ista(x, D, 0.2, 3, tol=0))
    Dl, _ = sl.coding.learn_dictionary(
        xg.float(), 12, 0.1, n_epochs=2, progress_bar=False,
        generator=torch.Generator().manual_seed(0))
    assert Dl.device.type == "cuda" and (Dl.norm(dim=1) <= 1 + 1e-6).all()


def test_sparse_coding_checks_devices_and_loops_do_not_synchronise():
    g = torch.Generator().manual_seed(1)
    D = torch.randn(20, 12, generator=g)
    D = D / D.norm(dim=1, keepdim=True)
    x = torch.randn(5, 12, generator=g)
    Dg, xg = D.cuda(), x.cuda()
    # mixed devices: our ValueError naming both arguments
    with pytest.raises(ValueError, match="x and D must be on the same "
                                         "device; got x on cuda"):
        sl.coding.fista(xg, D, 0.1)
    with pytest.raises(ValueError, match="lam must be on the device of D"):
        sl.coding.fista(xg, Dg, torch.full((20,), 0.1))
    # a per-atom lam on the device gives the CPU result
    lam = torch.full((20,), 0.1)
    torch.testing.assert_close(
        sl.coding.fista(xg, Dg, lam.cuda(), 100, tol=0).cpu(),
        sl.coding.fista(x, D, lam, 100, tol=0))
    # the FISTA loop and LISTA's forward wait for the device nowhere: the
    # checks ran once, at the entry point
    net = sl.coding.LISTA(Dg, lam.cuda(), 4)
    a0 = torch.zeros(5, 20, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sl.coding._iterate(xg, Dg, lam.cuda(), 50, 0.0, 0.5, False, a0,
                           True, False)
        net(xg)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_encoding_benchmark_on_cuda():
    g = torch.Generator().manual_seed(0)
    D = torch.randn(64, 32, generator=g)
    D = D / D.norm(dim=1, keepdim=True)
    x = torch.randn(200, 32, generator=g)
    r = sl.benchmarks.encoding_vs_lars(x, D, 0.3, device="cuda", repeat=1)
    assert r["device"].startswith("cuda") and abs(r["rel_gap"]) <= 1e-4


def test_certified_fista_on_cuda_matches_the_cpu_certificate():
    # on a GPU no sample leaves the batch (certified ones are frozen by a
    # mask); the certificate must hold there too, against the CPU optimum
    g = torch.Generator().manual_seed(2)
    D = torch.randn(128, 64, generator=g, dtype=torch.float64)
    D = D / D.norm(dim=1, keepdim=True)
    x = torch.randn(200, 64, generator=g, dtype=torch.float64)
    a, info = sl.coding.fista(x.cuda(), D.cuda(), 0.1, return_info=True)
    best = sl.coding.objective(x, D, sl.coding.fista(x, D, 0.1, tol=1e-10),
                               0.1)
    rel = (sl.coding.objective(x, D, a.cpu(), 0.1) - best) / best
    assert info.converged and info.gap <= 1e-4
    assert rel.max() <= info.gap + 1e-12
    assert info.iterations.device.type == "cuda"
