"""Benchmarks: ratios of running times measured in one process, one run.

Targets are stated as ratios against a reference (scikit-learn) timed in the
same process on the same data, never as absolute seconds, so a slow or busy
machine changes both sides alike. Each function returns a dict of what it
measured; the repository's ``.ci/bench.py`` prints them from the command
line.

* :func:`encoding_vs_lars` -- batch sparse encoding: our
  :func:`~sparselib.coding.fista` against scikit-learn's
  ``sparse_encode(algorithm="lasso_lars")``,
  FISTA being timed with the iteration count it needs to reach LARS's
  objective within a relative ``rel`` (1e-4). That count is found in an
  untimed run that knows LARS's objective: a stopping rule no user has, so
  the ratio is a best case for FISTA.
* :func:`dictionary_vs_minibatch` -- dictionary learning: the time our
  :func:`~sparselib.coding.learn_dictionary` needs to reach the objective that
  ``MiniBatchDictionaryLearning`` reaches, against that estimator's time.

Needs scikit-learn. Introduced in the chapter "Sparse coding as
optimisation".
"""

from __future__ import annotations

import time

import torch

from .coding import fista, learn_dictionary, objective
from .utils import check_int, get_device

__all__ = ["encoding_vs_lars", "mean_objective", "dictionary_vs_minibatch"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn, repeat, device):
    best = float("inf")
    out = None
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def _iterations_to_reach(x, D, lam, target, max_iter):
    """First FISTA iteration whose mean objective is at most ``target``.

    Untimed runs with the objective tracked, doubling the budget until the
    target is met (FISTA's first ``n`` iterates do not depend on the
    budget, so the count is exact).
    """
    n = 64
    while True:
        n = min(n, max_iter)
        _, info = fista(x, D, lam, n, tol=0, track=True, return_info=True)
        hit = [k for k, f in enumerate(info.objective, 1) if f <= target]
        if hit:
            return hit[0]
        if n == max_iter:
            raise RuntimeError(f"FISTA did not reach LARS's objective within "
                               f"{max_iter} iterations")
        n *= 2


def encoding_vs_lars(x: torch.Tensor, D: torch.Tensor, lam: float, *,
                     rel: float = 1e-4, device="auto", repeat: int = 3,
                     max_iter: int = 20_000) -> dict:
    """Time FISTA against scikit-learn's LARS lasso on the same problem.

    ``x`` ``(batch, n_inputs)`` and ``D`` ``(n_atoms, n_inputs)`` (CPU
    tensors; FISTA runs on ``device``). scikit-learn encodes in float64 on
    the CPU; FISTA in ``x``'s dtype. FISTA's iteration count is the first at
    which its total objective is within ``rel`` of LARS's (found in
    untimed runs that track the objective: a stopping rule no user has, so
    the ratio is a best case for FISTA), and that many iterations are then
    timed with ``tol=0``.
    Returns times (best of ``repeat``), the speed-up ``ratio =
    t_sklearn / t_fista``, objectives and the iteration count.
    Chapter "Sparse coding as optimisation".
    """
    from sklearn.decomposition import sparse_encode

    repeat = check_int("repeat", repeat, minimum=1)
    dev = get_device(device)
    x_np = x.detach().cpu().double().numpy()
    D_np = D.detach().cpu().double().numpy()
    t_sk, codes = _best_time(
        lambda: sparse_encode(x_np, D_np, algorithm="lasso_lars", alpha=lam),
        repeat, torch.device("cpu"))
    x64, D64 = x.detach().cpu().double(), D.detach().cpu().double()
    obj_sk = float(objective(x64, D64, torch.from_numpy(codes), lam).sum())
    xd, Dd = x.detach().to(dev), D.detach().to(dev)
    n_iter = _iterations_to_reach(xd, Dd, lam, obj_sk * (1 + rel) /
                                  x.shape[0], max_iter)
    t_fista, a = _best_time(lambda: fista(xd, Dd, lam, n_iter, tol=0),
                            repeat, dev)
    obj_f = float(objective(x64, D64, a.cpu().double(), lam).sum())
    return {"device": str(dev), "batch": x.shape[0], "n_atoms": D.shape[0],
            "n_inputs": D.shape[1], "t_sklearn": t_sk, "t_fista": t_fista,
            "ratio": t_sk / t_fista, "n_iter": n_iter,
            "objective_sklearn": obj_sk, "objective_fista": obj_f,
            "rel_gap": (obj_f - obj_sk) / obj_sk}


def mean_objective(x: torch.Tensor, D: torch.Tensor, lam: float,
                   n_iter: int = 2000) -> float:
    """Mean objective of ``D`` on ``x`` with codes from a tight FISTA."""
    a = fista(x, D, lam, n_iter, tol=1e-7)
    return float(objective(x, D, a, lam).mean())


def dictionary_vs_minibatch(x: torch.Tensor, n_atoms: int, lam: float, *,
                            sk_epochs: int = 5, batch_size: int = 256,
                            max_epochs: int = 30, seed: int = 0,
                            device="auto",
                            n_score: int | None = None) -> dict:
    """Time to reach MiniBatchDictionaryLearning's objective, ours against it.

    scikit-learn's ``MiniBatchDictionaryLearning`` (LARS codes, block
    coordinate atom updates) runs ``sk_epochs`` passes over ``x`` and is
    timed; both dictionaries are then scored with the same encoder (a tight
    FISTA) on all of ``x``, or on its first ``n_score`` rows (the
    scoring after every epoch costs more than the training on large
    ``x``). Our :func:`~sparselib.coding.learn_dictionary` runs epoch by
    epoch until its dictionary scores as well; its time excludes the
    scoring. Returns both times, ``ratio = t_ours / t_sklearn`` (goal: at
    most 1/5), the objectives and both dictionaries (``D_sklearn``,
    ``D_ours``). Chapter "Sparse coding as optimisation".
    """
    from sklearn.decomposition import MiniBatchDictionaryLearning

    dev = get_device(device)
    if n_score is not None:
        n_score = check_int("n_score", n_score, minimum=1)
    x_np = x.detach().cpu().double().numpy()
    est = MiniBatchDictionaryLearning(
        n_components=n_atoms, alpha=lam, batch_size=batch_size,
        max_iter=sk_epochs, tol=0.0, max_no_improvement=None,
        random_state=seed, transform_algorithm="lasso_lars")
    t0 = time.perf_counter()
    est.fit(x_np)
    t_sk = time.perf_counter() - t0
    xd = x.detach().to(dev)
    x_score = xd if n_score is None else xd[:n_score]
    D_sk = torch.from_numpy(est.components_).to(xd)
    obj_sk = mean_objective(x_score, D_sk, lam)

    scores = []

    def score(epoch, D):
        scores.append(mean_objective(x_score, D, lam))
        return scores[-1] <= obj_sk  # True stops the training

    g = torch.Generator().manual_seed(seed)
    D_ours, hist = learn_dictionary(xd, n_atoms, lam, n_epochs=max_epochs,
                               batch_size=batch_size, generator=g,
                               progress_bar=False, callback=score)
    reached = scores[-1] <= obj_sk
    t_ours = hist.seconds[-1]
    return {"device": str(dev), "n_samples": x.shape[0],
            "n_atoms": n_atoms, "t_sklearn": t_sk, "t_ours": t_ours,
            "ratio": t_ours / t_sk, "reached": reached,
            "epochs_ours": len(scores), "objective_sklearn": obj_sk,
            "objective_ours": scores[-1] if scores else float("nan"),
            "D_sklearn": D_sk.cpu(), "D_ours": D_ours.cpu()}
