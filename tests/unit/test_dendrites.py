"""Tests of sparselib.dendrites: dendrite sets, controllers, the loop.

Oracles: hand-counted parameter numbers, a forward pass written with
``F.linear`` / ``F.conv2d``, PyTorch's own ``reset_parameters`` for the
initialisation, hand-made score sequences for the controllers.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparselib.dendrites import ControlledRun, DendriteSchedule, \
    DendriticLayer, EarlyStopping, add_dendrite_sets, dendritic_layers, \
    dendritize, fit_controlled


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def formula(P, n_out, s):
    return P + s * (P + n_out) + n_out * s * (s - 1) // 2


def make(kind, dtype=torch.float32):
    torch.manual_seed(0)
    if kind == "linear":
        layer = nn.Linear(5, 3, dtype=dtype)
        x = torch.randn(7, 5, dtype=dtype)
    else:
        layer = nn.Conv2d(2, 4, 3, stride=2, padding=1, dtype=dtype)
        x = torch.randn(3, 2, 7, 7, dtype=dtype)
    return DendriticLayer(layer, seed=1), x


def perturb_(module, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g,
                                       dtype=p.dtype))


# ---------------------------------------------------------------- layer


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_output_unchanged_when_a_set_is_added(kind):
    layer, x = make(kind)
    y0 = layer(x).detach()
    assert layer.n_sets == 0
    assert torch.equal(y0, layer.wrapped(x).detach())
    layer.add_set()
    assert layer.n_sets == 1
    assert torch.equal(layer(x).detach(), y0)
    # train the set a little: the output moves, then adding a second set
    # leaves the trained output exactly as it is
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    r = torch.randn_like(y0)
    for _ in range(3):
        opt.zero_grad()
        (layer(x) * r).sum().backward()
        opt.step()
    y1 = layer(x).detach()
    assert not torch.allclose(y1, y0)
    assert layer.out_weights[0].abs().sum() > 0
    layer.add_set()
    assert torch.equal(layer(x).detach(), y1)
    layer.add_set()
    assert torch.equal(layer(x).detach(), y1)


@pytest.mark.parametrize("kind,P,n_out,counts", [
    ("linear", 5 * 3 + 3, 3, [18, 39, 63, 90]),
    ("conv", 2 * 4 * 3 * 3 + 4, 4, [76, 156, 240, 328]),
])
def test_parameter_counts_by_hand(kind, P, n_out, counts):
    layer = DendriticLayer(nn.Linear(5, 3) if kind == "linear"
                           else nn.Conv2d(2, 4, 3))
    for s, expected in enumerate(counts):
        assert layer.n_sets == s
        assert n_params(layer) == expected == formula(P, n_out, s)
        layer.add_set()


def test_parameter_count_without_bias():
    layer = DendriticLayer(nn.Linear(5, 3, bias=False))
    layer.add_set()
    layer.add_set()
    # P = 15: 15 + 2 * (15 + 3) + 3 * 1
    assert n_params(layer) == 54
    assert layer.dendrites[0].bias is None


def test_new_set_is_pytorch_default_init_from_the_generator():
    layer = DendriticLayer(nn.Linear(5, 3))
    layer.add_set(torch.Generator().manual_seed(7))
    torch.manual_seed(7)
    ref = nn.Linear(5, 3)  # reset_parameters from the global generator
    assert torch.equal(layer.dendrites[0].weight, ref.weight)
    assert torch.equal(layer.dendrites[0].bias, ref.bias)
    conv = DendriticLayer(nn.Conv2d(4, 6, (3, 2), stride=2, padding=1,
                                    dilation=2, groups=2,
                                    padding_mode="reflect"))
    conv.add_set(torch.Generator().manual_seed(3))
    torch.manual_seed(3)
    ref = nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=2, groups=2,
                    padding_mode="reflect")
    d = conv.dendrites[0]
    assert torch.equal(d.weight, ref.weight) and torch.equal(d.bias,
                                                             ref.bias)
    for a in ("stride", "padding", "dilation", "groups", "padding_mode"):
        assert getattr(d, a) == getattr(ref, a)


def test_sets_are_seeded_and_differ_from_the_wrapped_layer():
    a = DendriticLayer(nn.Linear(5, 3), seed=4)
    b = DendriticLayer(nn.Linear(5, 3), seed=4)
    a.add_set()
    a.add_set()
    b.add_set()
    b.add_set()
    assert torch.equal(a.dendrites[1].weight, b.dendrites[1].weight)
    assert not torch.equal(a.dendrites[0].weight, a.dendrites[1].weight)
    assert not torch.equal(a.dendrites[0].weight, a.wrapped.weight)


def oracle(layer, x):
    """The forward pass written out with the functional ops."""
    m = layer.wrapped
    conv = isinstance(m, nn.Conv2d)

    def lin(mod):
        if conv:
            return F.conv2d(x, mod.weight, mod.bias, mod.stride,
                            mod.padding, mod.dilation, mod.groups)
        return F.linear(x, mod.weight, mod.bias)

    def per(v):
        return v.reshape(1, -1, 1, 1) if conv else v.reshape(1, -1)

    y = lin(m)
    acts = []
    for j, d in enumerate(layer.dendrites):
        z = lin(d)
        for i in range(j):
            z = z + per(layer.cross_weights[j - 1][i]) * acts[i]
        acts.append(1 / (1 + torch.exp(-z)))
        y = y + per(layer.out_weights[j]) * acts[j]
    return y


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_forward_matches_functional_oracle(kind):
    layer, x = make(kind, torch.float64)
    for _ in range(3):
        layer.add_set()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in list(layer.out_weights) + list(layer.cross_weights):
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    assert layer.cross_weights[1].shape == (2, layer.n_out)
    y = layer(x)
    torch.testing.assert_close(y, oracle(layer, x), rtol=1e-12, atol=1e-12)
    # hand-written for 2 sets (v_01 only), independent of the loop above
    layer.remove_sets(2)
    m, d0, d1 = layer.wrapped, layer.dendrites[0], layer.dendrites[1]
    w0, w1 = layer.out_weights
    v = layer.cross_weights[0][0]
    if kind == "linear":
        a0 = torch.sigmoid(x @ d0.weight.T + d0.bias)
        a1 = torch.sigmoid(x @ d1.weight.T + d1.bias + v * a0)
        ref = x @ m.weight.T + m.bias + w0 * a0 + w1 * a1
    else:
        def c(mod):
            return F.conv2d(x, mod.weight, mod.bias, stride=2, padding=1)
        a0 = torch.sigmoid(c(d0))
        a1 = torch.sigmoid(c(d1) + v[:, None, None] * a0)
        ref = c(m) + w0[:, None, None] * a0 + w1[:, None, None] * a1
    torch.testing.assert_close(layer(x), ref, rtol=1e-12, atol=1e-12)


def test_unbatched_conv_input():
    layer, x = make("conv", torch.float64)
    layer.add_set()
    with torch.no_grad():
        layer.out_weights[0].fill_(0.7)
    torch.testing.assert_close(layer(x[0]), layer(x)[0])


def test_gradients_reach_the_new_set():
    layer, x = make("linear")
    layer.add_set()
    r = torch.randn(7, 3, generator=torch.Generator().manual_seed(2))
    (layer(x) * r).sum().backward()
    # w_1 = 0: its own gradient is sum(r * a_1) != 0, but nothing flows
    # back through it into the set's layer yet
    assert layer.out_weights[0].grad.abs().min() > 0
    assert torch.count_nonzero(layer.dendrites[0].weight.grad) == 0
    torch.optim.SGD(layer.parameters(), lr=0.1).step()
    layer.zero_grad()
    (layer(x) * r).sum().backward()
    assert layer.dendrites[0].weight.grad.abs().min() > 0
    # the second set: its w_2 gets a gradient, v_12 only once w_2 != 0
    layer.add_set()
    layer.zero_grad()
    (layer(x) * r).sum().backward()
    assert layer.out_weights[1].grad.abs().min() > 0
    assert torch.count_nonzero(layer.cross_weights[0].grad) == 0
    torch.optim.SGD(layer.parameters(), lr=0.1).step()
    layer.zero_grad()
    (layer(x) * r).sum().backward()
    assert layer.cross_weights[0].grad.abs().min() > 0


def test_remove_sets_restores_the_smaller_structure():
    layer, x = make("linear", torch.float64)
    layer.add_set()
    with torch.no_grad():
        layer.out_weights[0].fill_(0.5)
    y1 = layer(x).detach()
    layer.add_set()
    layer.add_set()
    with torch.no_grad():
        layer.out_weights[2].fill_(1.0)
    assert not torch.allclose(layer(x), y1)
    assert layer.remove_sets(1) == 1
    assert n_params(layer) == 39 and len(layer.cross_weights) == 0
    assert torch.equal(layer(x).detach(), y1)
    assert layer.remove_sets() == 0
    assert torch.equal(layer(x).detach(), layer.wrapped(x).detach())
    with pytest.raises(ValueError, match="n_keep"):
        layer.remove_sets(1)


def test_layer_bad_inputs():
    for bad in (nn.ReLU(), nn.Conv1d(2, 2, 3), "linear"):
        with pytest.raises(TypeError, match="module"):
            DendriticLayer(bad)
    with pytest.raises(TypeError, match="module"):
        DendriticLayer(DendriticLayer(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="seed"):
        DendriticLayer(nn.Linear(2, 2), seed=-1)
    layer = DendriticLayer(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="generator"):
        layer.add_set(3)
    with pytest.raises(TypeError, match="n_keep"):
        layer.remove_sets(0.0)


# ------------------------------------------------------ model functions


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
        nn.Sequential(nn.Linear(2 * 4 * 4, 6), nn.ReLU()),
        nn.Linear(6, 3))


def test_dendritize_by_qualified_name():
    net = dendritize(small_net(), exclude=["4"])
    wrapped = [n for n, m in net.named_modules()
               if isinstance(m, DendriticLayer)]
    assert wrapped == ["0", "3.0"]
    assert isinstance(net[4], nn.Linear)
    assert dendritic_layers(net) == [net[0], net[3][0]]
    # again: nothing is wrapped twice
    assert dendritize(net) is net
    assert [type(m.wrapped) for m in dendritic_layers(net)] == \
        [nn.Conv2d, nn.Linear, nn.Linear]
    only_linear = dendritize(small_net(), types=(nn.Linear,))
    assert isinstance(only_linear[0], nn.Conv2d)
    assert len(dendritic_layers(only_linear)) == 2


def test_add_dendrite_sets_to_every_layer():
    net = dendritize(small_net())
    x = torch.randn(2, 1, 6, 6)
    y = net(x).detach()
    p0 = n_params(net)
    add_dendrite_sets(net)
    assert [m.n_sets for m in dendritic_layers(net)] == [1, 1, 1]
    assert torch.equal(net(x).detach(), y)
    # each layer doubled and gained n_out: conv (20, 2), (198, 6), (21, 3)
    assert n_params(net) == p0 + (20 + 2) + (198 + 6) + (21 + 3)
    with pytest.raises(ValueError, match="dendritize"):
        add_dendrite_sets(small_net())


def test_dendritize_bare_layer_and_seed():
    lin = nn.Linear(3, 2)
    out = dendritize(lin)
    assert isinstance(out, DendriticLayer) and out.wrapped is lin
    a, b = dendritize(small_net(), seed=3), dendritize(small_net(), seed=3)
    add_dendrite_sets(a)
    add_dendrite_sets(b)
    for la, lb in zip(dendritic_layers(a), dendritic_layers(b)):
        assert torch.equal(la.dendrites[0].weight, lb.dendrites[0].weight)


def test_dendritize_bad_inputs():
    with pytest.raises(TypeError, match="model"):
        dendritize("net")
    with pytest.raises(TypeError, match="types"):
        dendritize(small_net(), types=(nn.ReLU,))
    with pytest.raises(ValueError, match="types"):
        dendritize(small_net(), types=())
    with pytest.raises(ValueError, match="exclude"):
        dendritize(small_net(), exclude=["9"])
    with pytest.raises(TypeError, match="exclude"):
        dendritize(small_net(), exclude="4")
    with pytest.raises(TypeError, match="model"):
        dendritic_layers(None)


# ---------------------------------------------------------- controllers


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_early_stopping_after_exactly_patience_flat_epochs():
    model = nn.Linear(3, 2)
    ctl = EarlyStopping(patience=3)
    assert ctl.prepare(model) is model
    scores = [0.5, 0.6, 0.6, 0.55, 0.6, 0.9]
    kept = None
    for epoch, s in enumerate(scores):
        if epoch == 1:
            kept = snapshot(model)
        out, restructured, complete = ctl.step(model, s)
        assert out is model and not restructured
        if complete:
            break
        perturb_(model, seed=epoch)  # "training" changes the weights
    assert epoch == 4  # epochs 2, 3, 4 did not beat 0.6
    assert states_equal(model.state_dict(), kept)
    assert ctl.events == [(4, "restored best (epoch 1)")]
    assert ctl.count_parameters(model) == 8


def test_early_stopping_min_delta():
    ctl = EarlyStopping(patience=2, min_delta=0.01)
    model = ctl.prepare(nn.Linear(2, 2))
    done = [ctl.step(model, s)[2] for s in (0.5, 0.505, 0.51)]
    assert done == [False, False, True]  # 0.51 is not > 0.5 + 0.01
    assert ctl.best_epoch == 0


def run_scores(ctl, model, scores):
    """Feed ``scores``; perturb the weights after each epoch."""
    record = []
    for epoch, s in enumerate(scores):
        model, restructured, complete = ctl.step(model, s)
        record.append((restructured, complete,
                       [m.n_sets for m in dendritic_layers(model)]))
        if complete:
            break
        perturb_(model, seed=100 + epoch)
    return model, record


def test_schedule_adds_one_set_on_a_stall_and_restores_best():
    ctl = DendriteSchedule(patience=2, max_sets=3, seed=1)
    model = ctl.prepare(small_net())
    p = [ctl.count_parameters(model)]
    saved = {}
    scores = [0.5, 0.5, 0.5,   # stall at 2 -> set 1
              0.6, 0.6, 0.6,   # best at 3 (1 set); stall at 5 -> set 2
              0.55, 0.59]      # set 2 does not beat 0.6: stop at 7
    record = []
    for epoch, s in enumerate(scores):
        model, restructured, complete = ctl.step(model, s)
        if epoch == 3:
            saved = snapshot(model)
        record.append((restructured, complete,
                       [m.n_sets for m in dendritic_layers(model)]))
        p.append(ctl.count_parameters(model))
        if complete:
            break
        perturb_(model, seed=100 + epoch)
    assert record == [
        (False, False, [0, 0, 0]), (False, False, [0, 0, 0]),
        (True, False, [1, 1, 1]),
        (False, False, [1, 1, 1]), (False, False, [1, 1, 1]),
        (True, False, [2, 2, 2]),
        (False, False, [2, 2, 2]), (True, True, [1, 1, 1])]
    assert epoch == 7
    assert states_equal(model.state_dict(), saved)
    assert ctl.events == [(2, "added set 1"), (5, "added set 2"),
                          (7, "set 2 did not help"),
                          (7, "restored best (epoch 3, 1 sets)")]
    # layers: conv P=20 n_out=2, linear P=198 n_out=6, linear P=21 n_out=3
    layers = [(20, 2), (198, 6), (21, 3)]
    for s, idx in ((0, 0), (1, 3), (2, 6), (1, 8)):
        assert p[idx] == sum(formula(P, n, s) for P, n in layers)


def test_schedule_stops_at_max_sets_keeping_the_sets():
    ctl = DendriteSchedule(patience=1, max_sets=1)
    model = ctl.prepare(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)))
    model, record = run_scores(ctl, model, [0.3, 0.3, 0.4, 0.4, 0.9])
    assert [r[:2] for r in record] == [(False, False), (True, False),
                                       (False, False), (False, True)]
    assert record[-1][2] == [1, 1]
    assert ctl.events[-2:] == [(3, "max_sets reached"),
                               (3, "restored best (epoch 2, 1 sets)")]


def test_schedule_set_that_never_helps_is_removed():
    ctl = DendriteSchedule(patience=1, max_sets=5)
    model = ctl.prepare(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)))
    before = None
    for epoch, s in enumerate([0.7, 0.7, 0.7]):
        if epoch == 0:
            before = snapshot(model)
        model, restructured, complete = ctl.step(model, s)
        if not complete:
            perturb_(model, seed=epoch)
    assert complete and restructured
    assert [m.n_sets for m in dendritic_layers(model)] == [0, 0]
    assert states_equal(model.state_dict(), before)
    assert ctl.count_parameters(model) == 16 + 10


def test_prepare_resets_the_controller():
    ctl = DendriteSchedule(patience=1, max_sets=2)
    model = ctl.prepare(nn.Linear(3, 2))
    run_scores(ctl, model, [0.1, 0.1, 0.2])
    assert ctl.events and ctl.n_sets == 1
    model = ctl.prepare(nn.Linear(3, 2))
    assert ctl.events == [] and ctl.n_sets == 0 and ctl.best_score is None


def test_controller_bad_inputs():
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(0)
    with pytest.raises(TypeError, match="patience"):
        EarlyStopping(2.0)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(2, min_delta=-0.1)
    with pytest.raises(ValueError, match="max_sets"):
        DendriteSchedule(2, max_sets=-1)
    with pytest.raises(TypeError, match="types"):
        DendriteSchedule(2, 1, types=(nn.Conv1d,))
    ctl = EarlyStopping(2)
    model = ctl.prepare(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="score"):
        ctl.step(model, float("nan"))
    with pytest.raises(TypeError, match="score"):
        ctl.step(model, "0.5")
    with pytest.raises(ValueError, match="no layer"):
        DendriteSchedule(2, 1).prepare(nn.Sequential(nn.ReLU()))


# ------------------------------------------------------- fit_controlled


def problem(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    w = torch.randn(6, 3, generator=g)
    y = (x @ w).argmax(1)
    return (x[:160], y[:160]), (x[160:], y[160:])


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


class AddOnceAtEpoch0(EarlyStopping):
    """Adds a set to every layer after the first epoch, whatever the score;
    never stops, and keeps the last model."""

    def __init__(self):
        super().__init__(patience=100)

    def prepare(self, model):
        super().prepare(model)
        return dendritize(model)

    def step(self, model, score):
        self.epoch += 1
        if self.epoch == 0:
            add_dendrite_sets(model)
            self.snap = snapshot(model)
            return model, True, False
        return model, False, False

    def finish(self, model):
        return model


def test_fit_controlled_learns_and_reports():
    train, val = problem()
    run = fit_controlled(net(), EarlyStopping(patience=50), train, val,
                         max_epochs=12, batch_size=32, lr=1e-2,
                         progress=False)
    assert isinstance(run, ControlledRun)
    assert run.epochs_run == 12 and not run.completed
    assert len(run.val_acc) == len(run.train_loss) == 12
    assert all(isinstance(a, float) for a in run.val_acc)
    assert run.n_params == [83] * 12 and run.final_n_params == 83
    assert run.train_loss[-1] < run.train_loss[0]
    assert run.best_val == max(run.val_acc) > 0.7
    # the returned model is the best epoch's (finish): its accuracy,
    # recomputed here, is best_val
    xv, yv = val
    with torch.no_grad():
        acc = (run.model(xv).argmax(1) == yv).double().mean().item()
    assert acc == pytest.approx(run.best_val, abs=1e-12)
    assert not run.model.training


def test_fit_controlled_rebuilds_the_optimizer_on_restructure():
    train, val = problem()
    ctl = AddOnceAtEpoch0()
    run = fit_controlled(net(), ctl, train, val, max_epochs=3,
                         batch_size=32, lr=1e-2, progress=False)
    assert [m.n_sets for m in dendritic_layers(run.model)] == [1, 1]
    # Linear(6, 8): P = 56, n_out = 8; Linear(8, 3): P = 27, n_out = 3
    assert run.n_params == [83, 83 + 64 + 30, 83 + 64 + 30]
    # every new parameter moved away from where it was added: an optimiser
    # built before the set would never step them
    new = [k for k in ctl.snap if "dendrites" in k or "out_weights" in k]
    assert len(new) == 6
    state = run.model.state_dict()
    for name in new:
        assert (state[name] != ctl.snap[name]).all(), name


def test_fit_controlled_schedule_completes_and_restores():
    train, val = problem()
    # min_delta = 1: no epoch after the first can improve
    ctl = DendriteSchedule(patience=1, max_sets=2, min_delta=1.0, seed=0)
    run = fit_controlled(net(), ctl, train, val, max_epochs=10,
                         batch_size=32, progress=False)
    assert run.completed and run.epochs_run == 3
    assert run.n_params == [83, 83, 83 + 64 + 30]
    assert run.final_n_params == 83
    assert [e for e, _ in run.events] == [1, 2, 2]
    assert run.events[0][1] == "added set 1"
    # the restored model is the state after epoch 0: a one-epoch run
    one = fit_controlled(net(), DendriteSchedule(patience=5, max_sets=1),
                         train, val, max_epochs=1, batch_size=32,
                         progress=False)
    assert states_equal(run.model.state_dict(), one.model.state_dict())
    assert run.val_acc[0] == one.val_acc[0]


def test_fit_controlled_is_reproducible():
    train, val = problem()

    def go(seed):
        ctl = DendriteSchedule(patience=1, max_sets=1, seed=2)
        return fit_controlled(net(), ctl, train, val, max_epochs=5,
                              batch_size=16, optimizer="sgd", lr=0.05,
                              seed=seed, progress=False)

    a, b, c = go(0), go(0), go(1)
    assert a.val_acc == b.val_acc and a.train_loss == b.train_loss
    assert a.events == b.events
    assert states_equal(a.model.state_dict(), b.model.state_dict())
    assert a.train_loss != c.train_loss  # the seed orders the batches


def test_fit_controlled_bad_inputs():
    train, val = problem()
    kw = dict(max_epochs=1, progress=False)
    with pytest.raises(TypeError, match="controller"):
        fit_controlled(net(), object(), train, val, **kw)
    with pytest.raises(TypeError, match="model"):
        fit_controlled("net", EarlyStopping(1), train, val, **kw)
    with pytest.raises(TypeError, match="train"):
        fit_controlled(net(), EarlyStopping(1), train[0], val, **kw)
    with pytest.raises(TypeError, match="train y"):
        fit_controlled(net(), EarlyStopping(1), (train[0], train[1] * 1.0),
                       val, **kw)
    with pytest.raises(ValueError, match="val y"):
        fit_controlled(net(), EarlyStopping(1), train, (val[0], val[1][:5]),
                       **kw)
    with pytest.raises(ValueError, match="val y"):
        fit_controlled(net(), EarlyStopping(1), train, (val[0], -val[1]),
                       **kw)
    with pytest.raises(ValueError, match="optimizer"):
        fit_controlled(net(), EarlyStopping(1), train, val,
                       optimizer="rmsprop", **kw)
    with pytest.raises(ValueError, match="max_epochs"):
        fit_controlled(net(), EarlyStopping(1), train, val, max_epochs=0)
    with pytest.raises(ValueError, match="lr"):
        fit_controlled(net(), EarlyStopping(1), train, val, lr=0, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        fit_controlled(net(), EarlyStopping(1), train, val, batch_size=0,
                       **kw)


# ------------------------------------------------------------------ GPU


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_dendritic_layer_on_cuda_matches_cpu(kind):
    cpu, x = make(kind, torch.float64)
    cpu.add_set()
    gpu, _ = make(kind, torch.float64)
    gpu = gpu.to("cuda")
    gpu.add_set()
    cpu.add_set()
    gpu.add_set()
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for pc, pg in zip(cpu.parameters(), gpu.parameters()):
            v = torch.randn(pc.shape, generator=g, dtype=pc.dtype)
            pc.copy_(v)
            pg.copy_(v)
    torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x))


@pytest.mark.gpu
def test_fit_controlled_on_cuda():
    train, val = problem()
    ctl = DendriteSchedule(patience=1, max_sets=1, min_delta=1.0)
    run = fit_controlled(net(), ctl, train, val, max_epochs=4,
                         batch_size=32, device="cuda", progress=False)
    assert run.completed and run.epochs_run == 3
    assert all(p.device.type == "cuda" for p in run.model.parameters())


def test_schedule_without_growth_makes_the_same_decisions():
    """grow=False: the same stalls, restarts and ending as the schedule
    with sets, no set added, the model unwrapped, the best one restored."""
    scores = [0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.55, 0.59]
    grown = DendriteSchedule(patience=2, max_sets=3, seed=1)
    control = DendriteSchedule(patience=2, max_sets=3, seed=1, grow=False)
    _, rec_grown = run_scores(grown, grown.prepare(small_net()), scores)
    net = small_net()
    n0 = sum(p.numel() for p in net.parameters())
    model = control.prepare(net)
    assert model is net and not dendritic_layers(model)
    flags = []
    saved = None
    for epoch, s in enumerate(scores):
        model, restructured, complete = control.step(model, s)
        flags.append((restructured, complete))
        if epoch == 3:
            saved = snapshot(model)
        if complete:
            break
        perturb_(model, seed=100 + epoch)
    # the same epochs act; only the final "sets removed" flag differs
    assert flags[:-1] == [r[:2] for r in rec_grown][:-1]
    assert flags[-1] == (False, True)
    assert control.count_parameters(model) == n0
    assert states_equal(model.state_dict(), saved)
    assert control.events == [(2, "restart 1 (no set)"),
                              (5, "restart 2 (no set)"),
                              (7, "set 2 did not help"),
                              (7, "restored best (epoch 3, 1 restarts)")]
    with pytest.raises(TypeError, match="grow"):
        DendriteSchedule(patience=2, max_sets=1, grow=1)
