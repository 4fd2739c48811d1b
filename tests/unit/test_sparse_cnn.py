"""sparselib.sparse_cnn against hand counts, the paper's Table 3, a
functional forward and a hand-written training loop.

The parameter counts are worked out by hand from the layer sizes (a 5 x 5
convolution from ``a`` to ``b`` channels has ``25 a b + b`` parameters, a
linear layer ``a b + b``; batch norm without affine parameters has none);
the sparse hidden layer of density ``d`` keeps ``round(d * fan_in)``
inputs per unit. Table 3 of Ahmad and Scheinkman (2019) gives each layer's
``k / n`` and the hidden weights' density in percent. The training
protocol is checked against a plain loop written from its description
(lr = lr0 * gamma ** (e - 1) in epoch e -- the rates of the paper's code,
which steps its scheduler before each epoch, under the PyTorch 1.0 it
pins -- first-epoch batch size, one
randperm per epoch from a seeded CPU generator, boost decay after each
epoch), with powers of two for the learning rates so that both sides
compute them exactly.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparselib import sparse_cnn as sc
from sparselib.kwinners import KWinners, KWinners2d, KWinnersBase
from sparselib.sparse_weights import SparseWeights
from sparselib.train import accuracy


def conv(a, b):
    return 25 * a * b + b


def lin(a, b):
    return a * b + b


# --------------------------------------------------------------------------
# counts and Table 3

#: name -> (parameters, entries that can be non-zero), by hand. MNIST:
#: 28 -> conv 24 -> pool 12 -> conv 8 -> pool 4; GSC: 32 -> 28 -> 14 -> 10
#: -> 5.
MNIST_COUNTS = {
    "Dense CNN-1": (conv(1, 30) + lin(30 * 144, 1000) + lin(1000, 10),
                    None),
    "Dense CNN-2": (conv(1, 30) + conv(30, 30) + lin(30 * 16, 1000)
                    + lin(1000, 10), None),
    "Sparse CNN-1": (conv(1, 30) + lin(4320, 150) + lin(150, 10),
                     150 * (4320 - 1296)),
    "Sparse CNN-2": (conv(1, 32) + conv(32, 64) + lin(1024, 700)
                     + lin(700, 10), 700 * (1024 - 307)),
    "Dense CNN-2 SP3": (conv(1, 30) + conv(30, 64) + lin(1024, 700)
                        + lin(700, 10), 700 * (1024 - 307)),
    "Sparse CNN-2 D3": (conv(1, 32) + conv(32, 64) + lin(1024, 1000)
                        + lin(1000, 10), None),
    "Sparse CNN-2 W1": (conv(1, 32) + conv(32, 64) + lin(1024, 700)
                        + lin(700, 10), None),
    "Sparse CNN-2 DSW": (conv(1, 32) + conv(32, 64) + lin(1024, 1000)
                         + lin(1000, 10), 1000 * (1024 - 307)),
}
GSC_COUNTS = {
    "Dense CNN-2": (conv(1, 64) + conv(64, 64) + lin(1600, 1000)
                    + lin(1000, 12), None),
    "Dense CNN-2 (dropout 0.5)": (conv(1, 64) + conv(64, 64)
                                  + lin(1600, 1000) + lin(1000, 12), None),
    "Sparse CNN-2": (conv(1, 64) + conv(64, 64) + lin(1600, 1000)
                     + lin(1000, 12), 1000 * (1600 - 640)),
    "Super-Sparse CNN-2": (conv(1, 64) + conv(64, 64) + lin(1600, 1500)
                           + lin(1500, 12), 1500 * (1600 - 160)),
}

#: Table 3 of the paper, in percent: L1 F, L1 k/n, L2 F, L2 k/n, L3 N,
#: L3 k/n, weight density.
TABLE3_MNIST = {
    "Dense CNN-1": (30, 100, None, None, 1000, 100, 100),
    "Dense CNN-2": (30, 100, 30, 100, 1000, 100, 100),
    "Sparse CNN-1": (30, 9.3, None, None, 150, 33.3, 30),
    "Sparse CNN-2": (32, 8.7, 64, 29.3, 700, 14.3, 30),
    "Dense CNN-2 SP3": (30, 100, 64, 100, 700, 14.3, 30),
    "Sparse CNN-2 D3": (32, 8.7, 64, 29.3, 1000, 100, 100),
    "Sparse CNN-2 W1": (32, 8.7, 64, 29.3, 700, 14.3, 100),
    "Sparse CNN-2 DSW": (32, 8.7, 64, 29.3, 1000, 100, 30),
}
TABLE3_GSC = {
    "Dense CNN-2": (64, 100, 64, 100, 1000, 100, 100),
    "Dense CNN-2 (dropout 0.5)": (64, 100, 64, 100, 1000, 100, 100),
    "Sparse CNN-2": (64, 9.5, 64, 12.5, 1000, 10.0, 40),
    "Super-Sparse CNN-2": (64, 9.5, 64, 12.5, 1500, 6.7, 10),
}
KEYS = ("L1 F", "L1 sparsity", "L2 F", "L2 sparsity", "L3 N",
        "L3 sparsity", "Wt sparsity")


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    out = {("MNIST", n): sc.build_cnn(n) for n in sc.MNIST_NETS}
    out.update({("GSC", n): sc.build_cnn(n, dataset="GSC")
                for n in sc.GSC_NETS})
    return out


def test_the_tables_hold_the_papers_networks_in_order():
    assert list(sc.MNIST_NETS) == list(TABLE3_MNIST)
    assert list(sc.GSC_NETS) == list(TABLE3_GSC)
    assert all(s.name == n for n, s in sc.MNIST_NETS.items())


def test_parameter_counts_by_hand(nets):
    assert MNIST_COUNTS["Sparse CNN-2"][0] == 832 + 51_264 + 717_500 + 7_010
    assert MNIST_COUNTS["Sparse CNN-2"][0] == 776_606
    assert MNIST_COUNTS["Dense CNN-1"][0] == 4_331_790
    assert MNIST_COUNTS["Dense CNN-2"][0] == 514_320
    assert MNIST_COUNTS["Sparse CNN-1"][0] == 650_440
    for ds, counts in (("MNIST", MNIST_COUNTS), ("GSC", GSC_COUNTS)):
        for name, (total, masked) in counts.items():
            model = nets[ds, name]
            assert sc.count_parameters(model) == total, (ds, name)
            assert sc.count_nonzero(model) == total - (masked or 0), \
                (ds, name)
    assert sc.count_nonzero(nets["MNIST", "Sparse CNN-2"]) == \
        776_606 - 700 * (1024 - 307)


@pytest.mark.parametrize("ds,table", [("MNIST", TABLE3_MNIST),
                                      ("GSC", TABLE3_GSC)])
def test_layer_table_equals_table_3(nets, ds, table):
    for name, row in table.items():
        got = sc.layer_table(nets[ds, name])
        assert got["network"] == name
        assert set(got) == {"network", *KEYS}
        for key, want in zip(KEYS, row):
            if want is None or key.endswith((" F", " N")):
                assert got[key] == want, (ds, name, key)
            else:
                assert abs(got[key] - want / 100) <= 0.001, (ds, name, key)


def test_layer_table_exact_fractions(nets):
    row = sc.layer_table(nets["MNIST", "Sparse CNN-2"])
    assert row["L1 sparsity"] == 400 / (32 * 12 * 12)
    assert row["L2 sparsity"] == 300 / (64 * 4 * 4)
    assert row["L3 sparsity"] == 100 / 700
    assert row["Wt sparsity"] == 307 / 1024
    row = sc.layer_table(nets["GSC", "Super-Sparse CNN-2"])
    assert row["L1 sparsity"] == 1200 / (64 * 14 * 14)
    assert row["L2 sparsity"] == 200 / (64 * 5 * 5)
    assert row["L3 sparsity"] == 100 / 1500
    assert row["Wt sparsity"] == 160 / 1600


def test_protocol_values_of_the_configurations():
    s2 = sc.MNIST_NETS["Sparse CNN-2"]
    assert (s2.lr, s2.lr_gamma, s2.momentum, s2.epochs, s2.batch_size,
            s2.first_epoch_batch_size) == (0.02, 0.8, 0.0, 10, 64, 4)
    assert (s2.boost_strength, s2.boost_strength_factor,
            s2.k_inference_factor) == (1.5, 0.85, 1.5)
    d1 = sc.MNIST_NETS["Dense CNN-1"]
    assert (d1.momentum, d1.epochs, d1.first_epoch_batch_size) == \
        (0.9, 15, 64)
    gs = sc.GSC_NETS["Sparse CNN-2"]
    assert (gs.lr, gs.lr_gamma, gs.weight_decay, gs.epochs, gs.batch_size,
            gs.input_shape, gs.n_classes, gs.batch_norm) == \
        (0.01, 0.9, 0.01, 30, 16, (1, 32, 32), 12, True)
    assert sc.GSC_NETS["Dense CNN-2 (dropout 0.5)"].dropout == 0.5


# --------------------------------------------------------------------------
# structure and forward


def types(seq):
    return [type(m) for m in seq]


def test_module_order_and_types(nets):
    m = nets["MNIST", "Sparse CNN-2"]
    assert types(m.features) == [nn.Conv2d, nn.MaxPool2d, KWinners2d] * 2
    assert types(m.hidden) == [SparseWeights, KWinners]
    assert isinstance(m.output, nn.Linear)
    assert (m.output.in_features, m.output.out_features) == (700, 10)
    for c in (m.features.conv1, m.features.conv2):
        assert c.kernel_size == (5, 5) and c.stride == (1, 1)
        assert c.padding == (0, 0)
    assert m.features.pool1.kernel_size == 2
    assert m.kwinners() == [m.features.kwinners1, m.features.kwinners2,
                            m.hidden.kwinners]
    g = nets["GSC", "Dense CNN-2 (dropout 0.5)"]
    assert types(g.features) == [nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d,
                                 nn.ReLU] * 2
    assert types(g.hidden) == [nn.Linear, nn.BatchNorm1d, nn.Dropout,
                               nn.ReLU]
    assert not g.features.bn1.affine and not g.hidden.bn.affine
    assert g.hidden.dropout.p == 0.5 and g.kwinners() == []
    d = nets["MNIST", "Dense CNN-1"]
    assert types(d.features) == [nn.Conv2d, nn.MaxPool2d, nn.ReLU]
    assert types(d.hidden) == [nn.Linear, nn.ReLU]


def test_kwinners_sizes_and_settings(nets):
    m = nets["MNIST", "Sparse CNN-2"]
    got = [(kw.n, kw.k, kw.k_inference) for kw in m.kwinners()]
    assert got == [(4608, 400, 600), (1024, 300, 450), (700, 100, 150)]
    for kw in m.kwinners():
        assert float(kw.boost_strength) == 1.5
        assert kw.boost_strength_factor == 0.85
        assert kw.break_ties and not kw.relu
        assert kw.learning_iterations == 0
        assert torch.all(kw.duty_cycle == 0)
    assert not m.features.kwinners1.local
    s1 = nets["MNIST", "Sparse CNN-1"]
    assert [(kw.n, kw.k, kw.k_inference) for kw in s1.kwinners()] == \
        [(4320, 400, 600), (150, 50, 75)]


def test_sparse_hidden_fan_in(nets):
    for ds, name, fan_in, keep in [("MNIST", "Sparse CNN-2", 1024, 307),
                                   ("MNIST", "Sparse CNN-1", 4320, 1296),
                                   ("MNIST", "Sparse CNN-2 DSW", 1024, 307),
                                   ("GSC", "Sparse CNN-2", 1600, 640),
                                   ("GSC", "Super-Sparse CNN-2", 1600, 160)]:
        layer = nets[ds, name].hidden.linear
        assert layer.mask.shape[1] == fan_in
        assert torch.all(layer.mask.sum(1) == keep), (ds, name)
        w = layer.weight.detach()
        assert torch.all(w[~layer.mask] == 0)
        assert torch.all((w != 0).sum(1) == keep)


def functional_forward(model, x):
    """The forward pass written out with torch.nn.functional, in eval
    mode with zero duty cycles (the boost factor is then one positive
    constant per layer, so the winners are the plain top-k)."""
    h = x
    for i, c in enumerate(model.spec.channels, start=1):
        conv_ = getattr(model.features, f"conv{i}")
        h = F.max_pool2d(F.conv2d(h, conv_.weight, conv_.bias), 2)
        kw = getattr(model.features, f"kwinners{i}", None)
        if kw is None:
            h = F.relu(h)
        else:
            flat = h.flatten(1)
            idx = flat.topk(kw.k_inference, dim=1).indices
            h = torch.zeros_like(flat).scatter(
                1, idx, flat.gather(1, idx)).view(h.shape)
    h = h.flatten(1)
    lin_ = model.hidden.linear
    h = F.linear(h, lin_.weight, lin_.bias)
    if model.spec.hidden_k is None:
        h = F.relu(h)
    else:
        idx = h.topk(model.hidden.kwinners.k_inference, dim=1).indices
        h = torch.zeros_like(h).scatter(1, idx, h.gather(1, idx))
    return F.linear(h, model.output.weight, model.output.bias)


@pytest.mark.parametrize("name", ["Sparse CNN-2", "Dense CNN-2",
                                  "Sparse CNN-1"])
def test_forward_equals_functional_oracle(nets, name):
    model = copy.deepcopy(nets["MNIST", name]).double().eval()
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, functional_forward(model, x))
    assert out.shape == (6, 10)


def test_training_forward_keeps_exactly_k_winners(nets):
    model = copy.deepcopy(nets["MNIST", "Sparse CNN-2"]).train()
    seen = {}
    for name in ("kwinners1", "kwinners2"):
        getattr(model.features, name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, o))
    model.hidden.kwinners.register_forward_hook(
        lambda m, i, o: seen.__setitem__("hidden", o))
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    assert model(x).shape == (8, 10)
    for name, k in (("kwinners1", 400), ("kwinners2", 300),
                    ("hidden", 100)):
        nz = (seen[name].flatten(1) != 0).sum(1)
        assert torch.all(nz == k), name
    g = nets["GSC", "Sparse CNN-2"]
    x = torch.randn(3, 1, 32, 32)
    assert copy.deepcopy(g).eval()(x).shape == (3, 12)


# --------------------------------------------------------------------------
# the training protocol against a hand-written loop

TINY = sc.CNNSpec(
    "tiny", (4, 8), (30, 8), 24, 6, weight_density=0.5,
    input_shape=(1, 16, 16), n_classes=3, kernel_size=3,
    boost_strength=1.5, boost_strength_factor=0.5, lr=0.25, lr_gamma=0.5,
    momentum=0.5, weight_decay=0.01, epochs=2, batch_size=8,
    first_epoch_batch_size=4)


def tiny_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 16, 16, generator=g)
    # a learnable rule: which third of the image is brightest
    thirds = torch.stack([x[:, 0, :, :5].mean((1, 2)),
                          x[:, 0, :, 5:10].mean((1, 2)),
                          x[:, 0, :, 10:].mean((1, 2))], 1)
    x[:, 0, :, :5] += 0.5 * (thirds.argmax(1) == 0).float()[:, None, None]
    return x, thirds.argmax(1)


def reference_loop(model, x, y, spec, seed, lr_shift=-1, decay=True):
    """The protocol written out plainly from its description: epoch ``e``
    at ``lr * gamma ** (e + lr_shift)``, ``lr_shift = -1`` (``0``: the
    first value of the schedule skipped, as PyTorch >= 1.1 does when the
    scheduler is stepped before the epoch; ``decay=False``: no boost
    decay)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr,
                          momentum=spec.momentum,
                          weight_decay=spec.weight_decay)
    has_bn = spec.batch_norm
    losses = []
    for e in range(1, spec.epochs + 1):
        for group in opt.param_groups:
            group["lr"] = spec.lr * spec.lr_gamma ** (e + lr_shift)
        b = spec.first_epoch_batch_size if e == 1 else spec.batch_size
        perm = torch.randperm(len(x), generator=g)
        model.train()
        total, seen = 0.0, 0
        for i in range(0, len(x), b):
            idx = perm[i:i + b]
            if has_bn and len(idx) == 1 and i > 0:
                continue
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        losses.append(total / seen)
        for m in model.modules():
            if decay and isinstance(m, KWinnersBase):
                m.update_boost_strength()
    return losses


@pytest.mark.parametrize("extra", [{}, {"batch_norm": True,
                                        "dropout": 0.2}])
def test_train_protocol_equals_hand_written_loop(extra):
    spec = TINY.replace(**extra)
    x, y = tiny_data(41, 3)  # 41 = 10 * 4 + 1: a last batch of one
    torch.manual_seed(5)
    model = sc.build_cnn(spec)
    twin = copy.deepcopy(model)
    torch.manual_seed(7)
    res = sc.train_protocol(model, (x, y), seed=11, progress=False)
    torch.manual_seed(7)
    losses = reference_loop(twin, x, y, spec, seed=11)
    for (k, a), (_, b) in zip(model.state_dict().items(),
                              twin.state_dict().items()):
        assert torch.equal(a, b), k
    h = res.history
    assert h["epoch"] == [1, 2]
    assert h["lr"] == [0.25, 0.125]  # lr * gamma ** (e - 1), exact here
    assert h["batch_size"] == [4, 8]
    assert h["boost_strength"] == [1.5, 0.75]
    assert [float(kw.boost_strength) for kw in model.kwinners()] == \
        [0.375] * 3
    np.testing.assert_allclose(h["train_loss"], losses, rtol=1e-5)
    assert h["val_accuracy"] == [None, None]
    assert res.best_val_epoch is None and res.best_test_epoch is None
    assert set(res.states) == {"last"}
    assert len(h["seconds"]) == 2 and min(h["seconds"]) >= 0


@pytest.mark.parametrize("change", [
    {"spec": TINY.replace(first_epoch_batch_size=8)},
    {"lr_shift": 0}, {"decay": False}, {"seed": 12}])
def test_the_comparison_sees_each_rule(change):
    # the equality above can fail: dropping any one rule of the protocol
    # (first-epoch batch size, the schedule's first value, boost decay,
    # the shuffling seed) changes the weights
    x, y = tiny_data(41, 3)
    torch.manual_seed(5)
    model = sc.build_cnn(TINY)
    twin = copy.deepcopy(model)
    sc.train_protocol(model, (x, y), seed=11, progress=False)
    kw = {"spec": TINY, "seed": 11, **change}
    reference_loop(twin, x, y, **kw)
    assert not torch.equal(model.output.weight, twin.output.weight)


@pytest.fixture(scope="module")
def trained():
    spec = TINY.replace(epochs=4, lr=0.5, lr_gamma=0.9)
    train = tiny_data(64, 1)
    val = tiny_data(40, 2)
    test = tiny_data(40, 3)
    torch.manual_seed(0)
    model = sc.build_cnn(spec)
    res = sc.train_protocol(model, train, val, test, seed=0,
                            eval_batch_size=16, progress=False)
    return spec, model, res, val, test


def test_best_epochs_are_the_first_argmax(trained):
    _, _, res, _, _ = trained
    h = res.history
    assert all(0 <= a <= 1 for a in h["val_accuracy"] + h["test_accuracy"])
    assert res.best_val_epoch == int(np.argmax(h["val_accuracy"])) + 1
    assert res.best_test_epoch == int(np.argmax(h["test_accuracy"])) + 1
    assert set(res.states) == {"val", "test", "last"}
    for state in res.states.values():
        assert all(v.device.type == "cpu" for v in state.values())


def test_load_restores_the_recorded_accuracy(trained):
    spec, model, res, val, test = trained
    for which, data, key, epoch in [
            ("val", val, "val_accuracy", res.best_val_epoch),
            ("test", test, "test_accuracy", res.best_test_epoch),
            ("last", val, "val_accuracy", len(res.history["epoch"]))]:
        fresh = sc.build_cnn(spec)
        assert res.load(fresh, which) is fresh
        # accuracy() averages in float32; 1e-6 is far below 1 / 40
        assert accuracy(fresh, *data) == pytest.approx(
            res.history[key][epoch - 1], abs=1e-6), which
    last = res.states["last"]
    for k, v in model.state_dict().items():
        assert torch.equal(last[k], v), k
    assert not model.training


def test_non_finite_loss_names_the_epoch():
    x, y = tiny_data(16, 0)
    x[3, 0, 2, 2] = float("nan")
    model = sc.build_cnn(TINY)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        sc.train_protocol(model, (x, y), progress=False)


# --------------------------------------------------------------------------
# bad inputs


def test_unknown_names_list_the_networks():
    with pytest.raises(KeyError, match="Sparse CNN-2.*Dense CNN-2 SP3"):
        sc.build_cnn("Sparse CNN-3")
    with pytest.raises(KeyError, match="Super-Sparse CNN-2"):
        sc.build_cnn("Sparse CNN-1", dataset="GSC")
    with pytest.raises(ValueError, match="dataset"):
        sc.build_cnn("Sparse CNN-2", dataset="CIFAR")
    with pytest.raises(TypeError, match="spec"):
        sc.build_cnn(3)


def test_spec_validation():
    s = sc.MNIST_NETS["Sparse CNN-2"]
    with pytest.raises(ValueError, match="conv_k"):
        s.replace(conv_k=(400,))
    with pytest.raises(ValueError, match=r"conv_k\[0\].*4608"):
        s.replace(conv_k=(5000, 300))
    with pytest.raises(ValueError, match=r"conv_k\[1\].*k_inference"):
        s.replace(conv_k=(400, 700))  # 700 * 1.5 > 1024
    with pytest.raises(ValueError, match="hidden_k"):
        s.replace(hidden_k=701)
    for d in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="weight_density"):
            s.replace(weight_density=d)
    with pytest.raises(ValueError, match="input_shape"):
        s.replace(input_shape=(1, 12, 12))
    with pytest.raises(ValueError, match="duty_cycle_period"):
        s.replace(batch_size=2000)
    with pytest.raises(TypeError, match="batch_norm"):
        s.replace(batch_norm=1)
    with pytest.raises(ValueError, match="dropout"):
        s.replace(dropout=1.0)
    with pytest.raises(TypeError, match=r"channels\[0\]"):
        s.replace(channels=(32.0, 64))
    with pytest.raises(ValueError, match="channels"):
        s.replace(channels=(), conv_k=())
    with pytest.raises(ValueError, match="lr_gamma"):
        s.replace(lr_gamma=0.0)
    with pytest.raises(dataclasses_error()):
        s.name = "other"
    # k equal to n is a dense layer, lists become tuples, replace is a copy
    t = s.replace(conv_k=[4608, None], channels=[32, 64], hidden_k=700)
    assert t.conv_k == (4608, None) and t.channels == (32, 64)
    assert not t.has_kwinners
    assert types(sc.build_cnn(t).features)[2] is nn.ReLU
    assert s.conv_k == (400, 300)
    assert sc.MNIST_NETS["Dense CNN-1"].replace(batch_size=2000)


def dataclasses_error():
    import dataclasses
    return dataclasses.FrozenInstanceError


def test_train_protocol_bad_inputs():
    model = sc.build_cnn(TINY)
    x, y = tiny_data(20, 0)
    with pytest.raises(ValueError, match="train y"):
        sc.train_protocol(model, (x, y[:19]), progress=False)
    with pytest.raises(TypeError, match="train y"):
        sc.train_protocol(model, (x, y.float()), progress=False)
    with pytest.raises(ValueError, match="train x"):
        sc.train_protocol(model, (x[:, 0], y), progress=False)
    with pytest.raises(ValueError, match=r"train y.*\[0, 3\)"):
        sc.train_protocol(model, (x, y + 3), progress=False)
    with pytest.raises(TypeError, match="train"):
        sc.train_protocol(model, x, progress=False)
    with pytest.raises(ValueError, match="val y"):
        sc.train_protocol(model, (x, y), (x, y[:5]), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        sc.train_protocol(model, (x, y), epochs=0, progress=False)
    with pytest.raises(TypeError, match="spec"):
        sc.train_protocol(nn.Linear(2, 2), (x, y), progress=False)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(2, 1, 28, 28))
    res = sc.ProtocolResult(history={}, states={"last": {}})
    with pytest.raises(ValueError, match="which"):
        res.load(model, "best")
    with pytest.raises(ValueError, match="no such state"):
        res.load(model, "val")


def test_layer_table_bad_inputs():
    with pytest.raises(TypeError, match="model"):
        sc.layer_table(nn.Linear(2, 2))
    three = TINY.replace(channels=(2, 2, 2), conv_k=(None, None, None),
                         input_shape=(1, 30, 30))
    with pytest.raises(ValueError, match="at most 2"):
        sc.layer_table(sc.build_cnn(three))


# --------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
@pytest.mark.parametrize("ds,name", [("MNIST", "Sparse CNN-2"),
                                     ("GSC", "Sparse CNN-2"),
                                     ("MNIST", "Dense CNN-2")])
def test_cuda_forward_equals_cpu(ds, name):
    torch.manual_seed(0)
    cpu = sc.build_cnn(name, dataset=ds).double().eval()
    gpu = copy.deepcopy(cpu).to("cuda")
    x = torch.randn(16, *cpu.spec.input_shape, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x))
    cpu.train()
    gpu.train()
    with torch.no_grad():
        torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x))
    for a, b in zip(cpu.kwinners(), gpu.kwinners()):
        torch.testing.assert_close(b.duty_cycle.cpu(), a.duty_cycle)


@pytest.mark.gpu
def test_train_protocol_on_cuda():
    torch.manual_seed(0)
    model = sc.build_cnn(TINY)
    res = sc.train_protocol(model, tiny_data(64, 1), tiny_data(40, 2),
                            device="cuda", progress=False)
    assert next(model.parameters()).device.type == "cuda"
    assert all(np.isfinite(res.history["train_loss"]))
    assert all(v.device.type == "cpu" for v in res.states["val"].values())
    fresh = res.load(sc.build_cnn(TINY).to("cuda"), "val")
    x, y = tiny_data(40, 2)
    assert accuracy(fresh, x.cuda(), y.cuda()) == pytest.approx(
        res.history["val_accuracy"][res.best_val_epoch - 1], abs=1e-6)
