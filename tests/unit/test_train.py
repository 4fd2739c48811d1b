"""sparselib.train against closed forms and loops written out by hand.

* the loop reaches the least-squares optimum and records its history;
* it records the same floats, after the same optimiser steps, as a hand
  loop that reads every loss with ``.item()``, yet reads the device only
  once per epoch and per evaluation; a non-finite loss is still named by
  its epoch and step;
* the classifier chapter's protocol (``train_steps``) is Adam on seeded
  batches, checks the labels once, and ``steps_to_reach`` reads its curve.
"""

import pytest
import torch

import sparselib as sl
from sparselib import train


def regression_problem(n=512, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, 1, generator=g)
    y = x @ w + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def test_fit_reaches_least_squares_solution():
    torch.manual_seed(0)
    x, y = regression_problem()
    model = torch.nn.Linear(5, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = sl.data.loader(x, y, batch_size=64,
                            generator=torch.Generator().manual_seed(0))

    def loss_fn(m, xb, yb):
        loss = torch.nn.functional.mse_loss(m(xb), yb)
        return loss, {"w_norm": m.weight.norm().item()}

    hist = train.fit(model, loader, loss_fn, opt, n_epochs=30,
                     evaluate=lambda m: {"mse": torch.nn.functional.mse_loss(
                         m(x), y).item()}, progress=False)
    w_ls = torch.linalg.lstsq(x, y).solution  # the closed-form optimum
    torch.testing.assert_close(model.weight.detach().T, w_ls, atol=5e-3,
                               rtol=0)
    assert len(hist.step["loss"]) == 30 * 8 == len(hist.step["w_norm"])
    assert hist.epoch["epoch"] == list(range(1, 31))
    assert hist.epoch["mse"][-1] < hist.epoch["mse"][0]
    assert hist.last("mse") == hist.epoch["mse"][-1]
    with pytest.raises(KeyError, match="accuracy"):
        hist.last("accuracy")


def test_max_steps_and_scheduler():
    x, y = regression_problem(n=64)
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    hist = train.fit(model, sl.data.loader(x, y, batch_size=8),
                     lambda m, a, b: ((m(a) - b).pow(2).mean()), opt, 5,
                     scheduler=sched, max_steps=10, progress=False)
    assert len(hist.step["loss"]) == 10
    assert len(hist.epoch["loss"]) == 2  # stopped inside the second epoch
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_eval_every_records_learning_curve_against_step():
    x, y = regression_problem(n=64)
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []

    def evaluate(m):
        seen.append(m.training)  # evaluated in eval mode
        return {"mse": (m(x) - y).pow(2).mean().item()}

    hist = train.fit(model, sl.data.loader(x, y, batch_size=8),
                     lambda m, a, b: (m(a) - b).pow(2).mean(), opt, 3,
                     evaluate=evaluate, eval_every=5, progress=False)
    # 3 epochs of 8 steps = 24 steps: evaluations after 5, 10, 15, 20
    assert hist.eval["step"] == [5, 10, 15, 20]
    assert len(hist.eval["mse"]) == 4 and not any(seen)
    assert "mse" not in hist.epoch  # not also after each epoch
    assert hist.eval["mse"][-1] < hist.eval["mse"][0]
    assert model.training  # back in train mode after each evaluation
    with pytest.raises(ValueError, match="evaluate"):
        train.fit(model, sl.data.loader(x, y, batch_size=8),
                  lambda m, a, b: (m(a) - b).pow(2).mean(), opt, 1,
                  eval_every=5, progress=False)
    with pytest.raises(ValueError, match="eval_every"):
        train.fit(model, sl.data.loader(x, y, batch_size=8),
                  lambda m, a, b: (m(a) - b).pow(2).mean(), opt, 1,
                  evaluate=evaluate, eval_every=0, progress=False)


def test_nan_loss_stops_with_a_clear_error():
    x, y = regression_problem(n=16)
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        train.fit(model, sl.data.loader(x, y, batch_size=8),
                  lambda m, a, b: m(a).sum() * float("nan"), opt, 1,
                  progress=False)


def test_bad_arguments():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="n_epochs must be >= 1"):
        train.fit(model, [], lambda m: 0, opt, 0)
    with pytest.raises(TypeError, match="loss_fn must return"):
        train.fit(model, [(torch.ones(1, 2),)],
                  lambda m, a: (m(a).sum(), 3), opt, 1, progress=False)


def test_accuracy_hand_made():
    model = torch.nn.Identity()
    x = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = torch.tensor([0, 1, 1, 1])
    assert train.accuracy(model, x, y, batch_size=3) == 0.75
    with pytest.raises(ValueError, match="rows"):
        train.accuracy(model, x, y[:2])


def test_fit_full_batch_reaches_least_squares_solution():
    x, y = regression_problem()
    model = torch.nn.Linear(5, 1, bias=False)
    hist = train.fit_full_batch(
        model, lambda m: torch.nn.functional.mse_loss(m(x), y), n_iter=50)
    w = torch.linalg.lstsq(x, y).solution
    torch.testing.assert_close(model.weight.detach().T, w, atol=1e-5,
                               rtol=1e-4)
    assert hist.step["loss"][-1] <= hist.step["loss"][0]
    assert hist.epoch["loss"] == [hist.step["loss"][-1]]


def test_fit_records_epoch_seconds():
    x, y = regression_problem(n=64)
    model = torch.nn.Linear(5, 1)
    hist = train.fit(model, sl.data.loader(x, y, batch_size=16),
                     lambda m, a, b: ((m(a) - b) ** 2).mean(),
                     torch.optim.SGD(model.parameters(), lr=0.01), 3)
    assert len(hist.epoch["seconds"]) == 3
    assert all(s >= 0 for s in hist.epoch["seconds"])


def test_convergence_epoch_hand_cases():
    assert train.convergence_epoch([5.0, 2.0, 1.009, 1.0, 1.001]) == 3
    assert train.convergence_epoch([5.0, 2.0, 1.02, 1.0], rel_tol=0.0) == 4
    assert train.convergence_epoch([1.0, 2.0, 3.0]) == 1
    with pytest.raises(ValueError, match="empty"):
        train.convergence_epoch([])
    with pytest.raises(ValueError, match="rel_tol"):
        train.convergence_epoch([1.0], rel_tol=-1)


# --- no host synchronisation per step --------------------------------------

def hand_loop(model, batches, loss_fn, opt, n_epochs):
    """The training loop written out, reading every loss with .item()."""
    losses = []
    for _ in range(n_epochs):
        for xb, yb in batches:
            loss = loss_fn(model, xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def test_fit_records_the_same_floats_and_steps_as_a_hand_loop():
    x, y = regression_problem(n=40)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8)]

    def mse(m, a, b):
        return (m(a) - b).pow(2).mean()

    def with_logs(m, a, b):
        loss = mse(m, a, b)
        err = (m(a) - b).detach()
        return loss, {"f32": err.abs().mean(),                  # float32
                      "f64": err.double().pow(2).sum(),         # float64
                      "count": (err > 0).sum(),                 # int64
                      "grad": loss * 2,                         # has grad
                      "plain": 0.25}                            # a float

    torch.manual_seed(0)
    ref = torch.nn.Linear(5, 1)
    model = torch.nn.Linear(5, 1)
    model.load_state_dict(ref.state_dict())
    expected = hand_loop(ref, batches, mse,
                         torch.optim.Adam(ref.parameters(), lr=0.01), 3)
    seen = {k: [] for k in ("f32", "f64", "count", "grad")}

    def recording(m, a, b):
        loss, logs = with_logs(m, a, b)
        for k in seen:
            seen[k].append(float(torch.as_tensor(logs[k]).detach()))
        return loss, logs

    hist = train.fit(model, batches, recording,
                     torch.optim.Adam(model.parameters(), lr=0.01), 3,
                     progress=False)
    # same optimiser steps in the same order: identical parameters
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    assert hist.step["loss"] == expected
    assert all(type(v) is float for vals in hist.step.values()
               for v in vals)
    for k, vals in seen.items():
        assert hist.step[k] == vals
    assert hist.step["plain"] == [0.25] * 15
    assert hist.epoch["loss"] == [sum(expected[i:i + 5]) / 5
                                  for i in (0, 5, 10)]


class HostReads:
    """Counts the calls that copy a tensor's value to the host."""

    NAMES = ("item", "tolist", "__bool__", "__float__", "__int__",
             "__index__", "numpy", "cpu")

    def __init__(self, monkeypatch):
        self.calls = []
        for name in self.NAMES:
            orig = getattr(torch.Tensor, name)

            def wrapped(t, *a, _orig=orig, _name=name, **kw):
                self.calls.append(_name)
                return _orig(t, *a, **kw)

            monkeypatch.setattr(torch.Tensor, name, wrapped)


def test_fit_reads_the_device_once_per_epoch_and_evaluation(monkeypatch):
    x, y = regression_problem(n=64)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)]
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def loss_fn(m, a, b):
        loss = (m(a) - b).pow(2).mean()
        return loss, {"mae": (m(a) - b).abs().mean().detach()}

    reads = HostReads(monkeypatch)
    hist = train.fit(model, batches, loss_fn, opt, 3, progress=False,
                     evaluate=lambda m: {"n": 1.0}, eval_every=5)
    monkeypatch.undo()
    assert len(hist.step["loss"]) == 24 == len(hist.step["mae"])
    # 24 steps; reads only at the evaluations (steps 5, 10, 15, 20) and at
    # the ends of the 3 epochs: one stacked read (loss and mae share a
    # dtype) each, at most 7
    assert set(reads.calls) <= {"tolist"}, reads.calls
    assert len(reads.calls) <= 7


def test_nan_is_found_at_the_epochs_end_and_named_by_its_step():
    x, y = regression_problem(n=32)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    model = torch.nn.Linear(5, 1)
    calls = []

    def loss_fn(m, a, b):
        calls.append(1)
        loss = (m(a) - b).pow(2).mean()
        # steps 6 and 7 (the 2nd and 3rd of epoch 2) are not finite
        return loss * (float("inf") if len(calls) in (6, 7) else 1.0)

    with pytest.raises(FloatingPointError, match="inf at epoch 2, step 6"):
        train.fit(model, batches, loss_fn,
                  torch.optim.SGD(model.parameters(), lr=0.01), 3,
                  progress=False)
    assert len(calls) == 8  # found when epoch 2 ended, not in epoch 3


def test_nan_is_found_before_an_evaluation():
    x, y = regression_problem(n=32)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    model = torch.nn.Linear(5, 1)
    evaluated = []
    with pytest.raises(FloatingPointError, match="nan at epoch 1, step 1"):
        train.fit(model, batches,
                  lambda m, a, b: m(a).sum() * float("nan"),
                  torch.optim.SGD(model.parameters(), lr=0.01), 1,
                  evaluate=lambda m: evaluated.append(1) or {},
                  eval_every=2, progress=False)
    assert not evaluated


def test_bad_logs():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.ones(3, 2),)]
    with pytest.raises(ValueError, match=r"logs\['v'\] must be a number or "
                       "a 1-element tensor"):
        train.fit(model, batches,
                  lambda m, a: (m(a).sum(), {"v": m(a).detach()}), opt, 1,
                  progress=False)
    with pytest.raises(TypeError, match=r"logs\['v'\]"):
        train.fit(model, batches,
                  lambda m, a: (m(a).sum(), {"v": "high"}), opt, 1,
                  progress=False)


def test_fit_full_batch_records_tensor_logs_as_floats():
    x, y = regression_problem(n=64)
    model = torch.nn.Linear(5, 1, bias=False)
    seen = []

    def loss_fn(m):
        loss = torch.nn.functional.mse_loss(m(x), y)
        seen.append(loss.item())
        return loss, {"twice": 2 * loss}

    hist = train.fit_full_batch(model, loss_fn, n_iter=5, progress=False)
    assert hist.step["loss"] == seen
    assert hist.step["twice"] == [2 * v for v in seen]
    assert all(type(v) is float for v in hist.step["twice"])


# --- the classifier chapter's protocol --------------------------------------

def toy_classification(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.5 * torch.rand(n, 784, generator=g)
    x[:, :50] += 0.5 * y[:, None]   # class 1 is brighter in 50 pixels
    return x, y


def test_train_steps_runs_the_sources_protocol():
    # a separable toy problem: the protocol must learn it, stop after
    # n_steps and evaluate every eval_every steps
    x, y = toy_classification()
    torch.manual_seed(0)
    m = sl.classifiers.SparseMLP(n_hidden=32, lam=1e-4, init="default")
    hist = train.train_steps(
        m, x, y, 70, eval_every=20, batch_size=50, lr=1e-2, progress=False,
        evaluate=lambda mod: {"acc": train.accuracy(mod, x, y)})
    assert len(hist.step["loss"]) == 70          # 70 steps over 12 epochs
    assert len(hist.epoch["loss"]) == 12
    assert hist.eval["step"] == [20, 40, 60]
    assert hist.eval["acc"][-1] > 0.9
    # the logged ce and l1 add up to the recorded loss
    for total, ce, l1 in zip(hist.step["loss"], hist.step["ce"],
                             hist.step["l1"]):
        assert total == pytest.approx(ce + 1e-4 * l1, rel=1e-5)


def test_train_steps_is_adam_on_seeded_batches():
    # the oracle: the same protocol written out by hand, on the batches of
    # sl.data.loader shuffled by a generator seeded with `seed`
    x, y = toy_classification(n=60)
    torch.manual_seed(0)
    m = sl.classifiers.SparseMLP(n_hidden=8, lam=1e-3)
    ref = sl.classifiers.SparseMLP(n_hidden=8, lam=1e-3)
    ref.load_state_dict(m.state_dict())
    hist = train.train_steps(m, x, y, 7, evaluate=dict, eval_every=100,
                             batch_size=25, lr=1e-3, seed=3, progress=False)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    losses = []
    batches = sl.data.loader(x, y, batch_size=25,
                             generator=torch.Generator().manual_seed(3))
    while len(losses) < 7:
        for xb, yb in batches:   # 3 batches (25, 25, 10) per epoch
            if len(losses) == 7:
                break
            loss = ref.loss(xb, yb)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert hist.step["loss"] == losses
    for p, q in zip(m.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_train_steps_checks_the_labels_once():
    x, y = toy_classification(n=20)
    m = sl.classifiers.SparseMLP(n_hidden=4)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 10\); got "
                       "values from 0 to 10"):
        train.train_steps(m, x, torch.arange(20) % 11, 1, evaluate=dict)
    with pytest.raises(ValueError, match=r"from -1 to 0"):
        train.train_steps(m, x, y - 1, 1, evaluate=dict)
    with pytest.raises(TypeError, match="integer class labels"):
        train.train_steps(m, x, y.float(), 1, evaluate=dict)
    with pytest.raises(ValueError, match="one label per input: 20; got 19"):
        train.train_steps(m, x, y[:19], 1, evaluate=dict)
    with pytest.raises(ValueError, match="lr must be a real number > 0"):
        train.train_steps(m, x, y, 1, evaluate=dict, lr=0)
    with pytest.raises(TypeError, match="lr"):
        train.train_steps(m, x, y, 1, evaluate=dict, lr="fast")
    with pytest.raises(ValueError, match="n_steps"):
        train.train_steps(m, x, y, 0, evaluate=dict)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_steps_on_cuda_synchronises_per_epoch_not_per_step():
    import warnings

    x, y = toy_classification(n=100)
    x, y = x.cuda(), y.cuda()
    torch.manual_seed(0)
    m = sl.classifiers.SparseConvNet(n_maps=4, lam=1e-3,
                                     decoder="subpixel").cuda()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            hist = train.train_steps(m, x, y, 40, eval_every=20,
                                     batch_size=10, progress=False,
                                     evaluate=lambda mod: {})
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(hist.step["loss"]) == 40 == len(hist.step["recon"])
    # 40 steps in 4 epochs: one read of the labels' range, then one per
    # epoch end or evaluation (4 here), not one per step
    assert len(syncs) <= 6, [str(w.message) for w in syncs]


def test_steps_to_reach():
    hist = train.History()
    hist.eval["step"] += [100, 200, 300]
    hist.eval["acc"] += [0.5, 0.97, 0.99]
    assert train.steps_to_reach(hist, "acc", 0.97) == 200
    assert train.steps_to_reach(hist, "acc", 0.0) == 100
    assert train.steps_to_reach(hist, "acc", 0.995) is None
    with pytest.raises(KeyError, match="eval_every"):
        train.steps_to_reach(hist, "loss", 1.0)
    with pytest.raises(TypeError, match="target"):
        train.steps_to_reach(hist, "acc", "high")


def test_moved_names_have_one_home():
    for name in ("train_steps", "steps_to_reach", "ActivityStats",
                 "activity_stats"):
        assert not hasattr(sl.classifiers, name)
    assert "train_steps" in train.__all__ and "steps_to_reach" in \
        train.__all__
