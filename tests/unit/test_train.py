"""sparselib.train: the loop reaches a closed-form optimum and records history."""

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
