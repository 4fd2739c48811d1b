"""A small training loop with a progress bar and a returned history.

:func:`fit` runs ``n_epochs`` over a data loader. What a step computes is up
to the caller: ``loss_fn(model, *batch)`` returns the loss tensor, or a pair
``(loss, logs)`` where ``logs`` is a dict of numbers to record (a sparsity
penalty, an accuracy...), as floats or as 0-d tensors. After each epoch an
optional ``evaluate(model) -> dict`` records held-out numbers. Everything
lands in a :class:`History`, and the loop shows a tqdm bar unless the run
is at quick scale (see :func:`sparselib.utils.progress_enabled`).

The loop never waits for the device inside an epoch: the loss and the
logged tensors of each step are kept, detached, and read back to the host
in one go at the end of the epoch and before each evaluation, where the
loss is also checked for NaN and infinities.

Training protocols built on :func:`fit` live here too: :func:`train_steps`
(the protocol of the classifier chapter's source, "Sparse coding: a simple
exploration": Adam, batches of 100, a fixed number of iterations) and
:func:`steps_to_reach`, which reads a learning curve.

Introduced in the chapter "Sparse autoencoders"; used by every chapter that
trains a network.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .data import loader as make_loader
from .utils import check_int, check_real, check_tensor, progress_enabled

__all__ = ["History", "fit", "fit_full_batch", "convergence_epoch",
           "batched_apply", "accuracy", "train_steps", "steps_to_reach"]


@dataclass
class History:
    """What :func:`fit` recorded.

    ``step[key]`` is a list with one float per optimiser step (``"loss"``
    and whatever ``loss_fn`` logged); ``epoch[key]`` one value per epoch
    (``"loss"``, the epoch's mean training loss, ``"seconds"``, its
    training wall-clock time without ``evaluate``, and whatever ``evaluate``
    returned). ``epoch["epoch"]`` counts from 1. When :func:`fit` is given
    ``eval_every``, ``evaluate``'s values land in ``eval[key]`` instead,
    with ``eval["step"]`` the optimiser step after which each was taken.
    """

    step: dict = field(default_factory=lambda: defaultdict(list))
    epoch: dict = field(default_factory=lambda: defaultdict(list))
    eval: dict = field(default_factory=lambda: defaultdict(list))

    def last(self, key: str) -> float:
        """The last epoch-level value of ``key``."""
        if key not in self.epoch or not self.epoch[key]:
            raise KeyError(f"no epoch-level value {key!r} recorded; have "
                           f"{sorted(self.epoch)}")
        return self.epoch[key][-1]


def _split(out):
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], dict):
            raise TypeError("loss_fn must return a loss tensor or a pair "
                            "(loss, dict of floats or 0-d tensors)")
        return out
    return out, {}


def _scalar(name, value):
    # One step's value, kept without reading it: a detached 1-element
    # tensor stays on its device; a Python or NumPy number becomes a float.
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number or a 1-element "
                             f"tensor; got shape {tuple(value.shape)}")
        return value.detach().reshape(())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a 0-d tensor; got "
                        f"{type(value).__name__}") from None


def _to_floats(values):
    # The values as Python floats, reading the tensors back with one
    # transfer per (device, dtype): each float equals float(value).
    out = list(values)
    groups = defaultdict(list)
    for i, v in enumerate(out):
        if isinstance(v, torch.Tensor):
            groups[v.device, v.dtype].append(i)
    for idx in groups.values():
        read = torch.stack([out[i] for i in idx]).tolist()
        for i, v in zip(idx, read):
            out[i] = float(v)
    return out


def fit(model: torch.nn.Module, loader, loss_fn, optimizer, n_epochs: int, *,
        evaluate=None, scheduler=None, device=None, progress=None,
        desc: str = "training", max_steps: int | None = None,
        eval_every: int | None = None) -> History:
    """Train ``model``; return a :class:`History`.

    Each step's loss and logs are kept as detached tensors and turned into
    floats once per epoch and before each evaluation (no device
    synchronisation per step). A non-finite loss is found then and stops
    training with ``FloatingPointError`` naming the epoch and the first bad
    step; the steps already queued after it have run, so the model may hold
    NaN by then. Chapter "Sparse autoencoders".

    Parameters
    ----------
    model : torch.nn.Module
        The module to train (put in train mode for the steps, eval mode for
        ``evaluate``).
    loader : iterable
        Batches (tuples of tensors), e.g. a DataLoader.
    loss_fn : callable
        ``loss_fn(model, *batch)`` returns the loss tensor or ``(loss,
        logs)``, ``logs`` a dict of floats or 1-element tensors (detached or
        not).
    optimizer : torch.optim.Optimizer
        Over ``model``'s parameters.
    n_epochs : int
        Number of passes over ``loader`` (>= 1).
    evaluate : callable, optional
        ``evaluate(model) -> dict`` run after every epoch under
        ``torch.no_grad()``.
    scheduler : optional
        A learning-rate scheduler, stepped once per epoch.
    device : optional
        Where to move each batch (default: the model's device).
    progress : bool, optional
        Show a tqdm bar (``None``: yes unless at quick scale).
    desc : str, default "training"
        The bar's label.
    max_steps : int, optional
        Stop after this many optimiser steps in all (quick runs, or
        protocols counted in iterations rather than epochs).
    eval_every : int, optional
        Run ``evaluate`` every this many optimiser steps (and not after
        each epoch), recording into ``History.eval``: learning curves
        against iteration. The evaluation time is not counted in
        ``epoch["seconds"]``.

    Returns
    -------
    History
        Every recorded value as a Python float.
    """
    n_epochs = check_int("n_epochs", n_epochs, minimum=1)
    if max_steps is not None:
        max_steps = check_int("max_steps", max_steps, minimum=1)
    if eval_every is not None:
        eval_every = check_int("eval_every", eval_every, minimum=1)
        if evaluate is None:
            raise ValueError("eval_every needs an evaluate function")
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    hist = History()
    try:
        per_epoch = len(loader)
    except TypeError:
        per_epoch = None
    total = None if per_epoch is None else per_epoch * n_epochs
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    bar = tqdm(total=total, desc=desc, disable=not progress_enabled(progress),
               leave=False)
    steps = 0
    pending = []  # (loss, logs) of the steps not yet read back

    def flush(epoch, losses):
        # Read the pending steps back in one go, check them, record them.
        if not pending:
            return
        keys = [list(logs) for _, logs in pending]
        flat = [v for loss, logs in pending
                for v in (loss, *logs.values())]
        flat = _to_floats(flat)
        first = steps - len(pending) + 1
        pos = 0
        for i, ks in enumerate(keys):
            loss = flat[pos]
            if not math.isfinite(loss):
                pending.clear()
                raise FloatingPointError(
                    f"loss became {loss} at epoch {epoch}, step "
                    f"{first + i}")
            losses.append(loss)
            hist.step["loss"].append(loss)
            for j, k in enumerate(ks):
                hist.step[k].append(flat[pos + 1 + j])
            pos += 1 + len(ks)
        pending.clear()
        bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4g}", refresh=False)

    def run_evaluate(record, back_to_train, **at):
        model.eval()
        with torch.no_grad():
            values = evaluate(model)
        if back_to_train:
            model.train()
        for k, v in at.items():
            record[k].append(v)
        for k, v in values.items():
            record[k].append(float(v))

    try:
        for epoch in range(1, n_epochs + 1):
            model.train()
            losses = []
            t0 = time.perf_counter()
            for batch in loader:
                batch = tuple(t.to(device) for t in batch)
                loss, logs = _split(loss_fn(model, *batch))
                logs = {k: _scalar(f"logs[{k!r}]", v)
                        for k, v in logs.items()}
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                pending.append((_scalar("the loss", loss), logs))
                bar.update(1)
                if eval_every is not None and steps % eval_every == 0:
                    flush(epoch, losses)
                    t_eval = time.perf_counter()
                    run_evaluate(hist.eval, True, step=steps)
                    t0 += time.perf_counter() - t_eval
                if max_steps is not None and steps >= max_steps:
                    break
            if scheduler is not None:
                scheduler.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            flush(epoch, losses)
            hist.epoch["seconds"].append(seconds)
            hist.epoch["epoch"].append(epoch)
            hist.epoch["loss"].append(
                sum(losses) / len(losses) if losses else math.nan)
            if evaluate is not None and eval_every is None:
                run_evaluate(hist.epoch, False)
            if max_steps is not None and steps >= max_steps:
                break
    finally:
        bar.close()
    return hist


def fit_full_batch(model: torch.nn.Module, loss_fn, n_iter: int, *,
                   history_size: int = 20, progress=None,
                   desc: str = "L-BFGS") -> History:
    """Minimise ``loss_fn(model)`` over the whole data set with L-BFGS.

    The protocol of the UFLDL exercises (400 L-BFGS iterations on the full
    batch): ``torch.optim.LBFGS`` with a strong-Wolfe line search, at most
    ``n_iter`` iterations. ``loss_fn(model)`` returns the loss or
    ``(loss, logs)``; ``History.step`` records every evaluation (line-search
    evaluations included), ``History.epoch`` the final values once.
    Chapter "Sparse autoencoders".
    """
    n_iter = check_int("n_iter", n_iter, minimum=1)
    history_size = check_int("history_size", history_size, minimum=1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, max_iter=n_iter, max_eval=n_iter * 5 // 4,
                            history_size=history_size, tolerance_grad=0.0,
                            tolerance_change=0.0,
                            line_search_fn="strong_wolfe")
    hist = History()
    bar = tqdm(total=n_iter * 5 // 4, desc=desc, leave=False,
               disable=not progress_enabled(progress))
    model.train()

    def closure():
        opt.zero_grad(set_to_none=True)
        loss, logs = _split(loss_fn(model))
        # L-BFGS reads the loss on the host anyway: read it once, here.
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"loss became {value} at evaluation "
                f"{len(hist.step['loss']) + 1}")
        loss.backward()
        hist.step["loss"].append(value)
        for k, v in zip(logs, _to_floats(
                _scalar(f"logs[{k!r}]", v) for k, v in logs.items())):
            hist.step[k].append(v)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4g}", refresh=False)
        return loss

    try:
        opt.step(closure)
    finally:
        bar.close()
    hist.epoch["epoch"].append(1)
    for k, v in hist.step.items():
        hist.epoch[k].append(v[-1])
    return hist


def convergence_epoch(values, rel_tol: float = 0.01) -> int:
    """First epoch (from 1) whose value is within ``rel_tol`` of the best.

    ``values`` are per-epoch losses (lower is better); the epoch returned is
    the first ``e`` with
    ``values[e] <= min(values) + rel_tol * |min(values)|``.
    A definition, not a test of convergence: it says when a run got within
    1 % (by default) of the best it ever did. Chapter "Sparse autoencoders".
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values is empty")
    if any(math.isnan(v) for v in vals):
        raise ValueError("values contains NaN")
    rel_tol = check_real("rel_tol", rel_tol, minimum=0)
    best = min(vals)
    bound = best + rel_tol * abs(best)
    return next(i for i, v in enumerate(vals, start=1) if v <= bound)


@torch.no_grad()
def batched_apply(fn, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """``fn`` applied to ``x`` in batches, outputs concatenated (no grad).

    Chapter "Sparse autoencoders".
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    return torch.cat([fn(x[i:i + batch_size])
                      for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 1024) -> float:
    """Share of ``x`` whose arg-max output equals ``y`` (model in eval mode).

    Chapter "Sparse activity in classifiers".
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    was_training = model.training
    model.eval()
    try:
        pred = batched_apply(model, x, batch_size).argmax(dim=1)
    finally:
        model.train(was_training)
    return float((pred == y.to(pred.device)).float().mean())


def _check_labels(y, n, n_classes=None):
    # Once per protocol, on the whole label tensor: reading its range is a
    # device synchronisation, so the models' loss methods do not.
    check_tensor("y", y, ndim=1)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels, got dtype "
                        f"{y.dtype}")
    if y.shape[0] != n:
        raise ValueError(f"y must hold one label per input: {n}; got "
                         f"{y.shape[0]}")
    if n_classes is not None and n:
        lo, hi = (int(v) for v in torch.stack([y.min(), y.max()]).tolist())
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"y must lie in [0, {n_classes}); got values "
                             f"from {lo} to {hi}")
    return y


def train_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                n_steps: int, *, evaluate, eval_every: int = 100,
                batch_size: int = 100, lr: float = 1e-3, seed: int = 0,
                desc: str = "training", progress=None) -> History:
    """Train a classifier by a fixed number of Adam iterations.

    The protocol of the classifier chapter's source ("Sparse coding: a
    simple exploration"): Adam at learning rate ``lr`` on shuffled batches
    of ``batch_size`` examples of ``(x, y)`` (reshuffled each epoch, the
    order fixed by ``seed``), ``n_steps`` iterations in all, minimising
    ``model.loss(x, y)``, with ``evaluate`` every ``eval_every`` iterations
    (see :func:`fit`). The labels are checked once here, on the whole
    ``y``. Chapter "Sparse activity in classifiers".

    Parameters
    ----------
    model : torch.nn.Module
        Has ``loss(x, y) -> (total, logs)``, e.g.
        :class:`sparselib.classifiers.SparseMLP`; if it has ``n_classes``,
        the labels must lie in ``[0, n_classes)``.
    x : torch.Tensor
        Training inputs ``(n, ...)``.
    y : torch.Tensor
        Integer class labels ``(n,)``.
    n_steps : int
        Optimiser steps in all (>= 1).
    evaluate : callable
        ``evaluate(model) -> dict``; its values land in ``History.eval``.
    eval_every : int, default 100
        Iterations between evaluations.
    batch_size : int, default 100
        Examples per step.
    lr : float, default 1e-3
        Adam's learning rate (> 0).
    seed : int, default 0
        Seeds the shuffling.
    desc : str, default "training"
        The progress bar's label.
    progress : bool, optional
        Show a progress bar (``None``: yes unless at quick scale).

    Returns
    -------
    History
        As :func:`fit` records it, with ``eval["step"]`` the iterations.
    """
    n_steps = check_int("n_steps", n_steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_real("lr", lr, minimum=0, min_open=True)
    check_tensor("x", x)
    if x.ndim < 1:
        raise ValueError("x must hold one input per row; got a 0-d tensor")
    _check_labels(y, x.shape[0], getattr(model, "n_classes", None))
    data = make_loader(x, y, batch_size=batch_size,
                       generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return fit(model, data, lambda m, a, b: m.loss(a, b), opt,
               -(-n_steps // len(data)), max_steps=n_steps,
               eval_every=eval_every, evaluate=evaluate, desc=desc,
               progress=progress)


def steps_to_reach(history: History, key: str, target: float):
    """First evaluation step at which ``history.eval[key] >= target``.

    "How many iterations to 98 % test accuracy" is how the classifier
    chapter compares learning speed. Chapter "Sparse activity in classifiers".

    Parameters
    ----------
    history : History
        From ``fit(..., eval_every=...)`` or :func:`train_steps`.
    key : str
        An evaluated value, e.g. ``"accuracy"``.
    target : float
        The value to reach.

    Returns
    -------
    int or None
        The step, or None if no evaluation reached ``target``.
    """
    target = check_real("target", target, allow_inf=True)
    if key not in history.eval or "step" not in history.eval:
        raise KeyError(f"history.eval has no {key!r} (have "
                       f"{sorted(history.eval)}); train with eval_every")
    for s, v in zip(history.eval["step"], history.eval[key]):
        if v >= target:
            return int(s)
    return None
