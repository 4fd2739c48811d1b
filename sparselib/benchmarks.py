"""Benchmarks: ratios of running times measured in one process, one run.

Targets are stated as ratios against references timed in the same process
on the same data, never as absolute seconds, so a slow or busy machine
changes both sides alike. Each function returns a dict of what it
measured; the repository's ``.ci/bench.py`` prints them from the command
line.

* :func:`encoding_vs_references` -- batch sparse encoding: the default call
  ``fista(x, D, lam)`` (stopping on its certified duality gap) against the
  two exact LARS solvers, SPAMS's ``lasso`` (C++, Mairal et al.; optional,
  package ``spams-bin``) and scikit-learn's
  ``sparse_encode(algorithm="lasso_lars")``, with each one's objective gap
  to the best of them.
* :func:`dictionary_vs_spams` -- dictionary learning: the time our
  :func:`~sparselib.coding.learn_dictionary` needs to reach the objective
  SPAMS's ``trainDL`` reaches in a given time.
* :func:`dictionary_vs_minibatch` -- the same against scikit-learn's
  ``MiniBatchDictionaryLearning``.
* :func:`kwinners_speed` -- forward + backward of the k-winners layers of
  :mod:`sparselib.kwinners` in training mode, against a ReLU, a bare
  ``topk`` threshold and nupic.torch's algorithm re-implemented.

Needs scikit-learn; SPAMS where named (:func:`have_spams` says whether it
is installed). Introduced in the chapter "Sparse coding as optimisation".
"""

from __future__ import annotations

import time

import torch

from .coding import fista, learn_dictionary, objective
from .utils import check_int, check_real, get_device

__all__ = ["have_spams", "encoding_vs_references", "mean_objective",
           "dictionary_vs_spams", "dictionary_vs_minibatch",
           "KWINNERS_SHAPES", "kwinners_speed"]


def have_spams() -> bool:
    """Whether SPAMS (``pip install spams-bin``) can be imported.

    Chapter "Sparse coding as optimisation".
    """
    try:
        import spams  # noqa: F401
    except ImportError:
        return False
    return True


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


def _spams_columns(a):
    """A numpy array as SPAMS wants it: float64, Fortran order, columns."""
    import numpy as np

    return np.asfortranarray(a.detach().cpu().double().numpy().T)


def encoding_vs_references(x: torch.Tensor, D: torch.Tensor, lam: float, *,
                           device="auto", repeat: int = 3,
                           sklearn_max: int | None = 1000,
                           sklearn_repeat: int = 1) -> dict:
    """Time the default ``fista(x, D, lam)`` against SPAMS and scikit-learn.

    ``x`` ``(batch, n_inputs)`` and ``D`` ``(n_atoms, n_inputs)`` (CPU
    tensors; FISTA runs on ``device`` in ``x``'s dtype, with its defaults:
    it stops when every sample's duality gap certifies 1e-4). SPAMS
    ``lasso`` (``mode=2``, the same objective, float64, all CPU threads) and
    scikit-learn's ``lasso_lars`` (float64) are exact. scikit-learn is slow,
    so it encodes at most ``sklearn_max`` samples (``None``: all), its
    time scaled to the batch (samples are independent), best of
    ``sklearn_repeat`` runs; the other times are the best of ``repeat``. Each solver's objective is compared with the best
    per-sample objective found by any of them: ``rel_gap_*`` is the relative
    excess of the total, ``max_gap_*`` the largest per-sample excess.
    SPAMS's entries are ``None`` when it is not installed.
    Chapter "Sparse coding as optimisation".
    """
    from sklearn.decomposition import sparse_encode

    repeat = check_int("repeat", repeat, minimum=1)
    lam = check_real("lam", lam, minimum=0, min_open=True)
    dev = get_device(device)
    batch = x.shape[0]
    x64, D64 = x.detach().cpu().double(), D.detach().cpu().double()
    cpu = torch.device("cpu")
    m = batch if sklearn_max is None else min(batch, check_int(
        "sklearn_max", sklearn_max, minimum=1))
    x_np, D_np = x64[:m].numpy(), D64.numpy()
    t_sk, codes_sk = _best_time(lambda: sparse_encode(
        x_np, D_np, algorithm="lasso_lars", alpha=lam),
        check_int("sklearn_repeat", sklearn_repeat, minimum=1), cpu)
    t_sk *= batch / m
    obj = {"sklearn": objective(x64[:m], D64, torch.from_numpy(codes_sk),
                                lam)}
    t_spams = None
    if have_spams():
        import spams

        X_f, D_f = _spams_columns(x64), _spams_columns(D64)
        t_spams, codes = _best_time(lambda: spams.lasso(
            X_f, D=D_f, lambda1=lam, mode=2, numThreads=-1), repeat, cpu)
        a_sp = torch.from_numpy(codes.toarray().T.copy())
        obj["spams"] = objective(x64, D64, a_sp, lam)
    xd, Dd = x.detach().to(dev), D.detach().to(dev)
    fista(xd, Dd, lam)          # warm-up (first calls allocate)
    t_fista, (a, info) = _best_time(
        lambda: fista(xd, Dd, lam, return_info=True), repeat, dev)
    obj["fista"] = objective(x64, D64, a.cpu().double(), lam)
    best = torch.minimum(obj["fista"], obj.get("spams", obj["fista"]))
    best_m = torch.minimum(best[:m], obj["sklearn"])
    best = torch.cat([best_m, best[m:]])

    def gaps(o):
        ref = best[:o.shape[0]]
        return (float((o.sum() - ref.sum()) / ref.sum()),
                float(((o - ref) / ref).max()))

    out = {"device": str(dev), "batch": batch, "n_atoms": D.shape[0],
           "n_inputs": D.shape[1], "lam": lam, "sklearn_samples": m,
           "t_fista": t_fista, "t_sklearn": t_sk, "t_spams": t_spams,
           "fista_iterations": info.n_iter, "fista_certified_gap": info.gap,
           "ratio_sklearn": t_sk / t_fista,
           "ratio_spams": None if t_spams is None else t_spams / t_fista,
           "mean_active": float((a != 0).sum(1).float().mean())}
    for name, o in obj.items():
        out[f"rel_gap_{name}"], out[f"max_gap_{name}"] = gaps(o)
    for name in ("spams",):
        if name not in obj:
            out[f"rel_gap_{name}"] = out[f"max_gap_{name}"] = None
    return out


def mean_objective(x: torch.Tensor, D: torch.Tensor, lam: float,
                   n_iter: int = 2000) -> float:
    """Mean objective of ``D`` on ``x`` with codes from a tight FISTA.

    The codes are computed in float64 and certified within a relative 1e-6
    of the optimum (or ``n_iter`` iterations): in float32 a gap that small
    is below the rounding of the objective, and the solver would run its
    whole budget. Chapter "Sparse coding as optimisation".
    """
    x, D = x.double(), D.double()
    a = fista(x, D, lam, n_iter, tol=1e-6)
    return float(objective(x, D, a, lam).mean())


def dictionary_vs_spams(x: torch.Tensor, n_atoms: int, lam: float, *,
                        seconds=(1.0, 3.0, 10.0), batch_size: int = 256,
                        max_epochs: int = 30, seed: int = 0, device="auto",
                        n_score: int | None = 5000) -> dict:
    """Time to reach SPAMS ``trainDL``'s objectives, ours against it.

    SPAMS's online dictionary learning (``trainDL``, ``mode=2``, the same
    objective; ``iter=-t`` runs it for ``t`` whole seconds, all CPU threads,
    float64) runs once for each time in ``seconds``; each dictionary is
    scored by the same tight encoder (:func:`mean_objective`) on the first
    ``n_score`` rows of ``x``. Our :func:`~sparselib.coding.learn_dictionary`
    runs epoch by epoch, scored the same way after each (scoring time left
    out), until it beats SPAMS's last objective or ``max_epochs``. Returns
    SPAMS's objectives, our per-epoch times and objectives, and
    ``t_to_reach`` (ours, for each of SPAMS's objectives; ``None`` if never
    reached). Needs SPAMS. Chapter "Sparse coding as optimisation".
    """
    import spams

    dev = get_device(device)
    xd = x.detach().to(dev)
    x_score = xd if n_score is None else xd[:check_int("n_score", n_score,
                                                       minimum=1)]
    X_f = _spams_columns(x)
    spams_obj = []
    for t in seconds:
        t = check_real("seconds", t, minimum=0, min_open=True)
        D_f = spams.trainDL(X_f, K=n_atoms, lambda1=lam, mode=2,
                            iter=-max(1, round(t)), batchsize=batch_size,
                            numThreads=-1,
                            verbose=False)
        D_sp = torch.from_numpy(D_f.T.copy()).to(xd)
        spams_obj.append(mean_objective(x_score, D_sp, lam))
    scores = []

    def score(epoch, D):
        scores.append(mean_objective(x_score, D, lam))
        return scores[-1] <= spams_obj[-1]

    g = torch.Generator().manual_seed(seed)
    _, hist = learn_dictionary(xd, n_atoms, lam, n_epochs=max_epochs,
                               batch_size=batch_size, generator=g,
                               progress_bar=False, callback=score)
    reach = []
    for target in spams_obj:
        hit = [t for t, f in zip(hist.seconds, scores) if f <= target]
        reach.append(hit[0] if hit else None)
    return {"device": str(dev), "n_samples": x.shape[0],
            "n_atoms": n_atoms, "lam": lam,
            "spams_seconds": list(seconds), "spams_objective": spams_obj,
            "our_seconds": list(hist.seconds), "our_objective": scores,
            "t_to_reach": reach}


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


#: Shapes ``(input shape, k)`` of the k-winners speed benchmark: a wide and
#: a long batch at 10 % winners, the hidden layer of the sparse CNN of "How
#: Can We Be So Dense?" (700 units, k = 100) and its first conv layer's maps
#: with global winners (32 x 24 x 24, k = 400).
KWINNERS_SHAPES = (((256, 4096), 410), ((1000, 1024), 102),
                   ((64, 700), 100), ((64, 32, 24, 24), 400))


def _nupic_reference(x, duty, k, boost_strength, state):
    """nupic.torch's threshold path written out: boost, the k-th largest
    boosted value by ``kthvalue``, ``masked_fill``, and the duty-cycle
    update from the output."""
    bsz = x.shape[0]
    xf = x.reshape(bsz, -1)
    n = xf.shape[1]
    boosted = xf.detach() * torch.exp((k / n - duty) * boost_strength)
    kth = boosted.kthvalue(n - k + 1, dim=1, keepdim=True).values
    y = xf.masked_fill(boosted < kth, 0)
    state["seen"] += bsz
    period = min(1000, state["seen"])
    duty.mul_(period - bsz).add_((y > 0).sum(0, dtype=duty.dtype))
    duty.div_(period)
    return y


def kwinners_speed(shapes=KWINNERS_SHAPES, *, repeat: int = 30,
                   boost_strength: float = 1.0, device=None,
                   seed: int = 0) -> list[dict]:
    """Time forward + backward of the k-winners layers against references.

    For each ``(shape, k)`` of ``shapes`` (2-d ``(batch, n)`` for
    :class:`~sparselib.kwinners.KWinners`, 4-d ``(batch, C, H, W)`` for
    :class:`~sparselib.kwinners.KWinners2d` with global winners), four
    functions run forward and backward on the same fixed input, in training
    mode (duty cycles updated, boosting on):

    * ``relu`` -- ``torch.relu``, the unit of the table;
    * ``topk`` -- a bare ``topk`` threshold with ``masked_fill`` (no
      boosting, no duty cycles);
    * ``reference`` -- nupic.torch's threshold path written out
      (``kthvalue`` of the boosted values, ``masked_fill``, duty cycles);
    * ``ours`` -- the sparselib layer.

    The four alternate within each of ``repeat`` rounds and each keeps its
    fastest round, so that a busy moment slows all four alike.

    Parameters
    ----------
    shapes : sequence of (tuple, int)
        Input shapes and numbers of winners.
    repeat : int, default 30
        Rounds of timing.
    boost_strength : float, default 1.0
        Boost strength of the layer and the reference.
    device : str or torch.device, optional
        Default: CUDA when present, else the CPU.
    seed : int, default 0
        Seed of the inputs.

    Returns
    -------
    list of dict
        One row per shape: ``shape``, ``k``, ``relu_s`` (seconds), and the
        times of ``topk``, ``reference`` and ``ours`` in ReLU units
        (``topk_x``, ``reference_x``, ``ours_x``) and ``ours_vs_reference``.

    Chapter "k-winners-take-all and binary SDR embeddings".
    """
    from .kwinners import KWinners, KWinners2d

    repeat = check_int("repeat", repeat, minimum=1)
    boost_strength = check_real("boost_strength", boost_strength,
                                minimum=0.0)
    dev = get_device(device)
    rows = []
    gen = torch.Generator().manual_seed(check_int("seed", seed))
    for shape, k in shapes:
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 4):
            raise ValueError(f"shapes must hold 2-d or 4-d input shapes; got "
                             f"{shape}")
        n = 1
        for s in shape[1:]:
            n *= s
        k = check_int("k", k, minimum=1, maximum=n)
        x0 = torch.randn(shape, generator=gen).to(dev)
        g = torch.randn(shape, generator=gen).to(dev)
        if len(shape) == 2:
            layer = KWinners(n, k / n, boost_strength=boost_strength)
        else:
            layer = KWinners2d(shape[1], k / n,
                               boost_strength=boost_strength)
        layer = layer.to(dev).train()
        duty = torch.zeros(n, device=dev)
        state = {"seen": 0}

        def relu():
            x = x0.clone().requires_grad_()
            torch.relu(x).backward(g)

        def topk():
            x = x0.clone().requires_grad_()
            xf = x.reshape(shape[0], -1)
            kth = xf.detach().topk(k, dim=1, sorted=False).values.amin(
                1, keepdim=True)
            xf.masked_fill(xf.detach() < kth, 0).backward(
                g.reshape(shape[0], -1))

        def reference():
            x = x0.clone().requires_grad_()
            _nupic_reference(x, duty, k, boost_strength, state).backward(
                g.reshape(shape[0], -1))

        def ours():
            x = x0.clone().requires_grad_()
            layer(x).backward(g)

        fns = {"relu": relu, "topk": topk, "reference": reference,
               "ours": ours}
        best = dict.fromkeys(fns, float("inf"))
        for f in fns.values():  # warm-up
            f()
        for _ in range(repeat):
            for name, f in fns.items():
                _sync(dev)
                t0 = time.perf_counter()
                f()
                _sync(dev)
                best[name] = min(best[name], time.perf_counter() - t0)
        r = best["relu"]
        rows.append({"shape": shape, "k": k, "relu_s": r,
                     "topk_x": best["topk"] / r,
                     "reference_x": best["reference"] / r,
                     "ours_x": best["ours"] / r,
                     "ours_vs_reference": best["ours"] / best["reference"]})
    return rows
