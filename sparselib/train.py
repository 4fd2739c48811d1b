"""A small training loop with a progress bar and a returned history.

:func:`fit` runs ``n_epochs`` over a data loader. What a step computes is up
to the caller: ``loss_fn(model, *batch)`` returns the loss tensor, or a pair
``(loss, logs)`` where ``logs`` is a dict of floats to record (a sparsity
penalty, an accuracy...). After each epoch an optional
``evaluate(model) -> dict`` records held-out numbers. Everything lands in a
:class:`History`, and the loop shows a tqdm bar unless the run is at quick
scale (see :func:`sparselib.utils.progress_enabled`).

Introduced in chapter 1; used by every chapter that trains a network.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .utils import check_int, progress_enabled

__all__ = ["History", "fit", "fit_full_batch", "convergence_epoch",
           "batched_apply", "accuracy"]


@dataclass
class History:
    """What :func:`fit` recorded.

    ``step[key]`` is a list with one value per optimiser step (``"loss"``
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
                            "(loss, dict of floats)")
        return out
    return out, {}


def fit(model: torch.nn.Module, loader, loss_fn, optimizer, n_epochs: int, *,
        evaluate=None, scheduler=None, device=None, progress=None,
        desc: str = "training", max_steps: int | None = None,
        eval_every: int | None = None) -> History:
    """Train ``model``; return a :class:`History`.

    Parameters
    ----------
    model : the module to train (put in train mode for the steps, eval mode
        for ``evaluate``).
    loader : iterable of batches (tuples of tensors), e.g. a DataLoader.
    loss_fn : ``loss_fn(model, *batch) -> loss`` or ``(loss, logs)``.
    optimizer : a :class:`torch.optim.Optimizer` over ``model``'s parameters.
    n_epochs : number of passes over ``loader`` (>= 1).
    evaluate : optional ``evaluate(model) -> dict`` run after every epoch
        under ``torch.no_grad()``.
    scheduler : optional learning-rate scheduler, stepped once per epoch.
    device : where to move each batch (default: the model's device).
    progress : show a tqdm bar (``None``: yes unless at quick scale).
    max_steps : stop after this many optimiser steps in all (quick runs,
        or protocols counted in iterations rather than epochs).
    eval_every : run ``evaluate`` every this many optimiser steps (and not
        after each epoch), recording into ``History.eval`` -- learning
        curves against iteration, as seed 001 draws them. The evaluation
        time is not counted in ``epoch["seconds"]``.

    A non-finite loss stops training with ``FloatingPointError`` naming the
    epoch and step, rather than training on NaN. Chapter 1.
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
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss became {loss.item()} at epoch {epoch}, step "
                        f"{steps + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                losses.append(loss.item())
                hist.step["loss"].append(losses[-1])
                for k, v in logs.items():
                    hist.step[k].append(float(v))
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4g}",
                                refresh=False)
                if eval_every is not None and steps % eval_every == 0:
                    t_eval = time.perf_counter()
                    run_evaluate(hist.eval, True, step=steps)
                    t0 += time.perf_counter() - t_eval
                if max_steps is not None and steps >= max_steps:
                    break
            if scheduler is not None:
                scheduler.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            hist.epoch["seconds"].append(time.perf_counter() - t0)
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
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at evaluation "
                f"{len(hist.step['loss']) + 1}")
        loss.backward()
        hist.step["loss"].append(loss.item())
        for k, v in logs.items():
            hist.step[k].append(float(v))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
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
    """First epoch (counting from 1) whose value is within ``rel_tol`` of the best.

    ``values`` are per-epoch losses (lower is better); the epoch returned is
    the first ``e`` with ``values[e] <= min(values) + rel_tol * |min(values)|``.
    A definition, not a test of convergence: it says when a run got within
    1 % (by default) of the best it ever did. Chapter "Sparse autoencoders".
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values is empty")
    if any(math.isnan(v) for v in vals):
        raise ValueError("values contains NaN")
    if not (isinstance(rel_tol, (int, float)) and rel_tol >= 0):
        raise ValueError(f"rel_tol must be a number >= 0, got {rel_tol!r}")
    best = min(vals)
    bound = best + rel_tol * abs(best)
    return next(i for i, v in enumerate(vals, start=1) if v <= bound)


@torch.no_grad()
def batched_apply(fn, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """``fn`` applied to ``x`` in batches, outputs concatenated (no grad).

    Chapter 1.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    return torch.cat([fn(x[i:i + batch_size])
                      for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 1024) -> float:
    """Share of ``x`` whose arg-max output equals ``y`` (model in eval mode).

    Chapter 1.
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
