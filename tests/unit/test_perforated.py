"""Tests of sparselib.perforated: the PerforatedAI adapter.

The tests that drive the real package are skipped (with a reason) where
``perforatedai`` is not installed; the import, availability and
ImportError tests always run. Oracles: hand-counted parameters
(Linear(5, 4) and Linear(4, 3): P = 24 and 15), PerforatedAI's documented
switching rule applied by hand to made-up score sequences, an independent
functional forward pass (F.linear and sigmoid) and the best checkpoint's
outputs recorded before a switch.
"""

import os
import socket
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparselib import perforated as pf

needs_pai = pytest.mark.skipif(
    not pf.have_perforatedai(),
    reason="perforatedai not installed: pip install \"sparselib[dendrites]\"")

# (P, n_out) of the two layers of the test network
LAYERS = ((24, 4), (15, 3))
X = torch.randn(64, 5, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(2))


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


def pai_count(s):
    """PerforatedAI's count_params after s sets, by hand (module notes)."""
    total = 0
    for p, n in LAYERS:
        total += p + s * p + n * s * (s + 1) // 2 + n * s * (s - 1) // 2
        total += n * (s - 1) if s >= 2 else 0
    return total


def our_count(s):
    """The parameters the forward pass uses: P + s(P + n) + n s(s-1)/2."""
    return sum(p + s * (p + n) + n * s * (s - 1) // 2 for p, n in LAYERS)


def drive(controller, model, scores, lr=0.1):
    """Minimal loop: one SGD step per 'epoch', then the given score.

    Returns the model, the per-step (restructured, complete) flags and the
    model's outputs on X after each step.
    """
    model = controller.prepare(model)
    opt = torch.optim.SGD(model.parameters(), lr)
    flags, outs = [], []
    for score in scores:
        opt.zero_grad()
        F.cross_entropy(model(X), Y).backward()
        opt.step()
        model, restructured, complete = controller.step(model, score)
        flags.append((restructured, complete))
        with torch.no_grad():
            outs.append(model(X).clone())
        if restructured:
            opt = torch.optim.SGD(model.parameters(), lr)
        if complete:
            break
    return model, flags, outs


# -- always run ------------------------------------------------------------

def test_import_and_availability_are_plain_values():
    assert isinstance(pf.have_perforatedai(), bool)
    version = pf.perforatedai_version()
    assert (version is None) == (not pf.have_perforatedai())
    if version is not None:
        assert isinstance(version, str)


@pytest.fixture
def hidden(monkeypatch):
    """Make perforatedai unimportable, as if it were not installed."""
    for name in list(sys.modules):
        if name == "perforatedai" or name.startswith("perforatedai."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "perforatedai", None)


def test_hidden_package_gives_the_install_hint(hidden):
    assert pf.have_perforatedai() is False
    assert pf.perforatedai_version() is None
    hint = r'pip install "sparselib\[dendrites\]"'
    controller = pf.PerforatedAI(patience=2)  # no import needed yet
    with pytest.raises(ImportError, match=hint):
        controller.prepare(tiny())
    with pytest.raises(ImportError, match="perforatedai==3.2.9"):
        controller.count_parameters(tiny())
    with pytest.raises(ImportError, match=hint):
        pf.n_dendrites(tiny())


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(patience=0), ValueError, "patience"),
    (dict(patience=1.5), TypeError, "patience"),
    (dict(max_dendrites=-1), ValueError, "max_dendrites"),
    (dict(improvement_threshold=-0.1), ValueError, "improvement_threshold"),
    (dict(improvement_threshold=[0.1, 1.0]), ValueError,
     "improvement_threshold"),
    (dict(improvement_threshold=[]), ValueError, "improvement_threshold"),
    (dict(improvement_threshold_raw=-1e-3), ValueError,
     "improvement_threshold_raw"),
    (dict(max_dendrite_tries=0), ValueError, "max_dendrite_tries"),
    (dict(history_lookback=0), ValueError, "history_lookback"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(save_dir=3), TypeError, "save_dir"),
    (dict(graphs="yes"), TypeError, "graphs"),
    (dict(silent=1), TypeError, "silent"),
])
def test_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        pf.PerforatedAI(**kwargs)


def test_step_before_prepare_and_bad_models():
    controller = pf.PerforatedAI()
    with pytest.raises(RuntimeError, match="prepare"):
        controller.step(tiny(), 0.5)
    with pytest.raises(TypeError, match="model"):
        controller.prepare("net")
    with pytest.raises(TypeError, match="model"):
        controller.count_parameters(None)
    with pytest.raises(TypeError, match="model"):
        pf.n_dendrites([1])


# -- with PerforatedAI -----------------------------------------------------

@needs_pai
def test_prepare_wraps_and_counts():
    controller = pf.PerforatedAI(patience=2)
    model = controller.prepare(tiny())
    assert pf.n_dendrites(model) == 0
    assert controller.count_parameters(model) == 39 == pai_count(0)
    # a plain sum also counts the frozen template copy of each layer
    assert sum(p.numel() for p in model.parameters()) == 39 + 39
    with pytest.raises(ValueError, match="model"):
        pf.n_dendrites(tiny())
    with pytest.raises(ValueError, match="parameters"):
        controller.prepare(nn.ReLU())
    controller.cleanup()


@needs_pai
@pytest.mark.parametrize("patience", [2, 3])
def test_stall_adds_one_set_and_restores_the_best_state(patience):
    # best at epoch 1, then flat: the switch comes `patience` epochs later
    scores = [0.5, 0.6] + [0.6] * patience
    controller = pf.PerforatedAI(patience=patience)
    model, flags, outs = drive(controller, tiny(), scores)
    assert flags[:-1] == [(False, False)] * (len(scores) - 1)
    assert flags[-1] == (True, False)
    assert controller.events == [(1 + patience, "added dendrites 1")]
    assert pf.n_dendrites(model) == 1
    assert controller.count_parameters(model) == 85 == pai_count(1)
    assert pai_count(1) == our_count(1)
    # reloaded epoch 1's weights; the new set's output weights are zero
    torch.testing.assert_close(outs[-1], outs[1], rtol=0, atol=0)
    assert not torch.equal(outs[-2], outs[1])  # training had moved on


@needs_pai
def test_relative_threshold_decides_what_counts_as_improvement():
    # 0.6 -> 0.6005 is 0.083 % better: below the default 0.1 % margin
    scores = [0.5, 0.6, 0.6005, 0.6005]
    _, flags, _ = drive(pf.PerforatedAI(patience=2), tiny(), scores)
    assert flags[-1] == (True, False)
    _, flags, _ = drive(pf.PerforatedAI(
        patience=2, improvement_threshold=0.0), tiny(), [0.5, 0.6, 0.6005,
                                                         0.601])
    assert all(f == (False, False) for f in flags)


@needs_pai
def test_counts_after_three_sets_and_where_they_differ():
    scores = [0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4]
    controller = pf.PerforatedAI(patience=1)
    model, flags, _ = drive(controller, tiny(), scores)
    assert [e for e, _ in controller.events] == [2, 4, 6]
    assert pf.n_dendrites(model) == 3
    assert controller.count_parameters(model) == pai_count(3) == 233
    assert our_count(3) == 198
    # the difference, n (s-1)(s+2)/2 per layer, sits in parameters the
    # forward never uses: frozen old output weights, one candidate matrix
    stale = sum(p.numel() for name, p in model.named_parameters()
                if ("dendrites_to_top" in name and not p.requires_grad)
                or "dendrites_to_candidates" in name)
    assert stale == 233 - 198 == sum(n * 2 * 5 // 2 for _, n in LAYERS)
    parents = sum(p.numel() for name, p in model.named_parameters()
                  if "parent_module" in name)
    assert parents == 39
    assert sum(p.numel() for p in model.parameters()) == 233 + 39


@needs_pai
def test_forward_matches_a_functional_oracle_with_two_sets():
    scores = [0.1, 0.2, 0.2, 0.3, 0.3]
    model, _, _ = drive(pf.PerforatedAI(patience=1), tiny(), scores)
    assert pf.n_dendrites(model) == 2
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # make every dendrite weight matter
        for name, p in model.named_parameters():
            if "dendrites_to_" in name or ".layers." in name:
                p.copy_(torch.randn(p.shape, generator=g))
    wrapped = [m for m in model if hasattr(m, "dendrite_module")]

    def layer(m, x):
        y = F.linear(x, m.main_module.weight, m.main_module.bias)
        d = m.dendrite_module
        top = m.dendrites_to_top[-1]  # (sets, n_out), the one in use
        acts = []
        for j, lay in enumerate(d.layers):
            pre = F.linear(x, lay.weight, lay.bias)
            for i in range(j):
                pre = pre + d.dendrites_to_dendrites[j][i] * acts[i]
            acts.append(torch.sigmoid(pre))
            y = y + top[j] * acts[j]
        return y

    expected = layer(wrapped[1], torch.relu(layer(wrapped[0], X)))
    with torch.no_grad():
        torch.testing.assert_close(model(X), expected)


@needs_pai
def test_new_sets_are_drawn_small_and_reproducibly():
    def run(seed):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(50, 40))
        x = torch.randn(32, 50)
        controller = pf.PerforatedAI(patience=1, seed=seed)
        model = controller.prepare(model)
        model(x).sum().backward()
        for score in (0.5, 0.6, 0.6):
            state = torch.get_rng_state()
            model, restructured, _ = controller.step(model, score)
            assert torch.equal(torch.get_rng_state(), state)
        assert restructured
        lay = model[0].dendrite_module.layers[0]
        return torch.cat([lay.weight.flatten(), lay.bias]), model

    w, model = run(0)
    # all 2040 parameters ~ N(0, 0.01^2), not the layer's own init
    assert abs(w.std().item() - 0.01) < 0.001
    assert abs(w.mean().item()) < 4 * 0.01 / 2040 ** 0.5
    assert torch.equal(model[0].dendrites_to_top[-1],
                       torch.zeros(1, 40))
    assert torch.equal(run(0)[0], w)
    assert not torch.equal(run(1)[0], w)


@needs_pai
def test_a_set_that_does_not_help_ends_with_the_best_model():
    # set added at epoch 2 (rolled back to epoch 1); after it the score
    # never beats 0.6, so with one try the run completes at epoch 4
    controller = pf.PerforatedAI(patience=1, max_dendrite_tries=1)
    model, flags, outs = drive(controller, tiny(), [0.5, 0.6, 0.6, 0.6, 0.6])
    assert flags == [(False, False), (False, False), (True, False),
                     (False, False), (True, True)]
    assert pf.n_dendrites(model) == 0
    torch.testing.assert_close(outs[-1], outs[1], rtol=0, atol=0)
    assert controller.events[-1][0] == 4
    assert controller.events[-1][1].startswith("complete")
    with pytest.raises(RuntimeError, match="complete"):
        controller.step(model, 0.6)


@needs_pai
def test_second_try_redraws_the_set():
    controller = pf.PerforatedAI(patience=1, max_dendrite_tries=2)
    model, flags, _ = drive(controller, tiny(), [0.5, 0.6, 0.6, 0.6, 0.6])
    assert flags[-1] == (True, False)
    assert pf.n_dendrites(model) == 1
    assert controller.events[-1][0] == 4
    assert controller.events[-1][1].startswith("redrew dendrites 1")


@needs_pai
def test_max_dendrites_stops_with_the_best_model():
    controller = pf.PerforatedAI(patience=1, max_dendrites=1)
    model, flags, outs = drive(controller, tiny(), [0.1, 0.2, 0.2, 0.3,
                                                    0.3])
    assert flags[-1] == (True, True)
    assert pf.n_dendrites(model) == 1
    torch.testing.assert_close(outs[-1], outs[3], rtol=0, atol=0)


@needs_pai
def test_prepare_resets_the_global_state(tmp_path):
    first = pf.PerforatedAI(patience=1)
    model, _, _ = drive(first, tiny(), [0.5, 0.6, 0.6])
    assert pf.n_dendrites(model) == 1
    second = pf.PerforatedAI(patience=3)
    model, flags, _ = drive(second, tiny(1), [0.5, 0.6, 0.6, 0.6, 0.6])
    assert [f[0] for f in flags] == [False] * 4 + [True]
    assert second.events == [(4, "added dendrites 1")]
    # and the first controller's folder is its own
    assert first.run_dir != second.run_dir


@needs_pai
def test_files_go_to_our_folder_and_nothing_is_networked(tmp_path,
                                                         monkeypatch):
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    controller = pf.PerforatedAI(patience=1, save_dir=tmp_path / "out")
    drive(controller, tiny(), [0.5, 0.6, 0.6])
    assert attempts == []
    assert os.getcwd() == str(cwd) and os.listdir(cwd) == []
    run_dir = controller.run_dir
    assert run_dir.startswith(str(tmp_path / "out"))
    assert {"best_model.pt", "pai_config.json"} <= set(os.listdir(run_dir))
    controller.cleanup()  # a user's folder is kept
    assert os.path.isdir(run_dir)

    temporary = pf.PerforatedAI(patience=1)
    drive(temporary, tiny(), [0.5])
    assert os.path.isdir(temporary.run_dir)
    temporary.cleanup()
    assert not os.path.exists(temporary.run_dir)


@needs_pai
def test_pdb_prompt_becomes_an_error(tmp_path, monkeypatch):
    import pdb

    class Net(nn.Module):  # an attribute 'module' makes PAI stop
        def __init__(self):
            super().__init__()
            self.module = nn.Linear(3, 2)

        def forward(self, x):
            return self.module(x)

    monkeypatch.chdir(tmp_path)
    trace = pdb.set_trace
    controller = pf.PerforatedAI()
    model = controller.prepare(Net())
    model(torch.randn(4, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="interactive"):
        controller.step(model, 0.5)
    assert pdb.set_trace is trace and os.getcwd() == str(tmp_path)
    controller.cleanup()


@needs_pai
def test_bad_scores():
    controller = pf.PerforatedAI()
    model = controller.prepare(tiny())
    with pytest.raises(ValueError, match="score"):
        controller.step(model, 1.5)
    with pytest.raises(TypeError, match="score"):
        controller.step(model, "0.5")
    with pytest.raises(ValueError, match="score"):
        controller.step(model, float("nan"))
    controller.cleanup()


@needs_pai
def test_finish_loads_the_best_checkpoint():
    controller = pf.PerforatedAI(patience=2)
    model, flags, outs = drive(controller, tiny(), [0.5, 0.6, 0.6, 0.6,
                                                    0.9, 0.7])
    assert [f[0] for f in flags] == [False] * 3 + [True, False, False]
    model = controller.finish(model)  # the epochs ran out at epoch 5
    assert pf.n_dendrites(model) == 1
    with torch.no_grad():
        torch.testing.assert_close(model(X), outs[4], rtol=0, atol=0)
        assert not torch.equal(model(X), outs[5])
    assert controller.events[-1][0] == 5
    assert controller.events[-1][1].startswith("restored the best model")
    assert controller.finish(model) is model  # once only
    assert len(controller.events) == 2


@needs_pai
def test_fit_controlled_adds_a_set_and_counts_as_by_hand():
    dendrites = pytest.importorskip("sparselib.dendrites")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 5, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    noisy = torch.rand(300, generator=g) < 0.3  # a ceiling: it stalls
    y[noisy] = torch.randint(0, 3, (int(noisy.sum()),), generator=g)
    train, val = (x[:200], y[:200]), (x[200:], y[200:])

    def fit():
        controller = pf.PerforatedAI(patience=1, max_dendrites=1)
        run = dendrites.fit_controlled(
            tiny(), controller, train, val, max_epochs=10, batch_size=32,
            lr=1e-2, seed=0, progress=False)
        return controller, run

    controller, run = fit()
    added = [e for e, text in run.events if text == "added dendrites 1"]
    assert added, run.events
    first = added[0]
    assert run.n_params[:first + 1] == [39] * (first + 1)
    assert run.n_params[first + 1] == 85
    # our DendriticLayer holds the same count for one set, not for two
    ours = dendrites.dendritize(tiny())
    dendrites.add_dendrite_sets(ours)
    assert controller.count_parameters(run.model) in (39, 85)
    assert sum(p.numel() for p in ours.parameters()) == 85 == pai_count(1)
    dendrites.add_dendrite_sets(ours)
    assert sum(p.numel() for p in ours.parameters()) == our_count(2) == 138
    assert pai_count(2) == 152
    # the plain sum counts each layer's template copy once more
    plain = sum(p.numel() for p in run.model.parameters())
    assert plain - run.final_n_params == 39
    assert run.final_n_params == controller.count_parameters(run.model)
    # reproducible: same seeds, same run
    _, again = fit()
    assert again.val_acc == run.val_acc and again.events == run.events


@needs_pai
@pytest.mark.gpu
def test_runs_on_cuda():
    controller = pf.PerforatedAI(patience=1)
    model = controller.prepare(tiny().cuda())
    x, y = X.cuda(), Y.cuda()
    opt = torch.optim.SGD(model.parameters(), 0.1)
    for score in (0.5, 0.6, 0.6):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        model, restructured, _ = controller.step(model, score)
        if restructured:
            opt = torch.optim.SGD(model.parameters(), 0.1)
    assert pf.n_dendrites(model) == 1
    assert all(p.is_cuda for p in model.parameters())
    assert model(x).is_cuda
    controller.cleanup()
