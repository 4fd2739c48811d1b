"""Mutual information in bits: binning, Kraskov's kNN estimator and MINE.

How much a code ``T`` says about a label or a signal ``Y`` is the mutual
information ``I(T; Y) = H(Y) - H(Y | T)``. It has no unbiased estimator, and
the three usual ones fail in different directions, which is what a chapter
has to show:

* **binning** -- quantise each variable into ``n_bins`` cells (here with
  k-means, the alternative estimator of EmbedderSDR, 20 bins) and take the
  *plug-in* mutual information of the two cell indices. Biased *upward* when
  there are few samples per cell (about ``(B_x - 1)(B_y - 1) / (2 n ln 2)``
  bits for independent variables, Miller 1955), and capped by
  ``log2(n_bins)``: binning cannot see more than the cells can hold.
* **KSG** -- the k-nearest-neighbour estimator 1 of Kraskov, Stoegbauer and
  Grassberger (2004), "Estimating mutual information", with the max-norm;
  for a discrete ``Y`` the mixed form of Ross (2014), "Mutual information
  between discrete and continuous data sets". Nearly unbiased for smooth
  densities in a few dimensions; may return slightly negative values. On
  binary codes the max-norm distance of two different codes is set by a
  single bit in which they differ, however many bits differ, so the
  estimator hardly sees how similar two codes are; with a discrete ``Y``,
  ``metric="euclidean"`` counts every differing bit (a Hamming distance,
  each bit weighted by the standardisation of its column).
* **MINE** -- Belghazi et al. (2018), "Mutual information neural
  estimation": a critic network ``T(x, y)`` trained to maximise the
  Donsker-Varadhan lower bound
  ``I >= E_P[T] - log E_{P_x P_y}[exp T]`` (natural log, nats). The bound
  is evaluated here on held-out data (half of the samples by default),
  which makes it a lower bound up to the sampling error of the held-out
  half. The *training* history is biased upward, and the maximum
  of a smoothed training history (:func:`smoothed_max`) more so -- that is
  how a reported ``I(T; Y)`` can exceed its ceiling ``log2(10)`` for ten
  classes (EmbedderSDR, reference facts section 6).

:func:`entropy_discrete` gives the plug-in entropy of labels or codes, e.g.
the ceiling ``H(Y)`` of ``I(T; Y)``; :func:`fano_bound` the floor that a
classifier's accuracy implies (Fano's inequality).

Introduced in the chapter "k-winners-take-all and binary SDR embeddings".
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .utils import check_choice, check_int, check_real, check_same

__all__ = [
    "METHODS",
    "KSG_METRICS",
    "mutual_information",
    "entropy_discrete",
    "smoothed_max",
    "fano_bound",
]

#: The estimators of :func:`mutual_information`.
METHODS = ("ksg", "binning", "mine")
#: The distances of the KSG estimators (``"euclidean"``: discrete y only).
KSG_METRICS = ("chebyshev", "euclidean")

# k-means restarts of the binning estimator (the best of them is kept).
_KMEANS_N_INIT = 3
# Rounding tolerance (bits) of fano_bound's check h_y <= log2(n_classes).
_H_TOL = 1e-9
# Relative widening of a Euclidean radius, so that the k-th neighbour, whose
# distance defines the radius, is inside it although the tree compares
# distances rounded differently (far below the KSG jitter of 1e-10).
_RADIUS_RTOL = 1e-12
# Shuffles of the held-out y that sample the product of the marginals when
# MINE's bound is evaluated.
_MINE_EVAL_SHUFFLES = 16


def _as_array(name: str, value) -> np.ndarray:
    """``value`` as a 2-d NumPy array ``(n, d)`` (a 1-d input is a column)."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"{name} must be real, got dtype {value.dtype}")
        value = value.detach()
        if value.is_floating_point():
            value = value.to(torch.float64)
        arr = value.cpu().numpy()
    elif isinstance(value, np.ndarray):
        arr = value
    else:
        raise TypeError(f"{name} must be a NumPy array or a torch.Tensor, "
                        f"got {type(value).__name__}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype "
                        f"{arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        raise ValueError(f"{name} must be 1-d (n,) or 2-d (n, d), got shape "
                         f"{arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _standardise(arr: np.ndarray) -> np.ndarray:
    """Each column centred and divided by its std (a constant one: by 1)."""
    arr = arr.astype(np.float64)
    sd = arr.std(axis=0)
    return (arr - arr.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _labels(arr: np.ndarray) -> np.ndarray:
    """Integer labels ``0..K-1`` for the distinct rows of ``arr``."""
    _, inv = np.unique(arr, axis=0, return_inverse=True)
    return np.asarray(inv).reshape(-1)


def _plugin_mi_nats(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information (nats) of two label vectors."""
    a, b = _labels(a[:, None]), _labels(b[:, None])
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    p = joint / joint.sum()
    outer = p.sum(axis=1)[:, None] * p.sum(axis=0)[None, :]
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / outer[nz])))


def _quantise(arr: np.ndarray, n_bins: int, seed: int) -> np.ndarray:
    """Cell index of each row: k-means with ``n_bins`` clusters.

    When ``arr`` has at most ``n_bins`` distinct rows, each distinct row is
    its own cell (k-means would find exactly those).
    """
    labels = _labels(arr)
    if labels.max() + 1 <= n_bins:
        return labels
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_bins, n_init=_KMEANS_N_INIT, random_state=seed)
    return km.fit_predict(arr.astype(np.float64))


def _count_within(points: np.ndarray, radius: np.ndarray,
                  strict: bool, p: float = np.inf) -> np.ndarray:
    """Points within ``radius`` of each point (``p``-norm), itself excluded."""
    from scipy.spatial import cKDTree

    if strict:
        r = np.nextafter(radius, 0)
    elif p == np.inf:
        r = radius
    else:  # the neighbour at exactly ``radius`` must count despite rounding
        r = radius * (1 + _RADIUS_RTOL)
    tree = cKDTree(points)
    return tree.query_ball_point(points, r, p=p,
                                 return_length=True) - 1


def _ksg_nats(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """KSG estimator 1 (max-norm) of I(x; y) in nats."""
    from scipy.spatial import cKDTree
    from scipy.special import digamma

    n = len(x)
    xy = np.hstack([x, y])
    # distance to the k-th neighbour in the joint space (self is the 0-th)
    eps = cKDTree(xy).query(xy, k=[k + 1], p=np.inf)[0][:, 0]
    nx = _count_within(x, eps, strict=True)
    ny = _count_within(y, eps, strict=True)
    return float(digamma(k) + digamma(n) - np.mean(digamma(nx + 1))
                 - np.mean(digamma(ny + 1)))


def _ksg_mixed_nats(x: np.ndarray, labels: np.ndarray, k: int,
                    p: float = np.inf) -> float:
    """Ross (2014) estimator of I(x; label) in nats, ``p``-norm in x."""
    from scipy.spatial import cKDTree
    from scipy.special import digamma

    n = len(x)
    radius = np.empty(n)
    counts = np.bincount(labels)
    for c in np.nonzero(counts)[0]:
        mask = labels == c
        pts = x[mask]
        radius[mask] = cKDTree(pts).query(pts, k=[k + 1], p=p)[0][:, 0]
    # all points (any class) within the class's k-th neighbour distance,
    # that neighbour included and the point itself excluded
    m = _count_within(x, radius, strict=False, p=p)
    return float(digamma(n) - np.mean(digamma(counts[labels]))
                 + digamma(k) - np.mean(digamma(m)))


def _critic_params(d_in: int, hidden: int, gen: torch.Generator):
    """Weights of the MLP ``d_in -> hidden -> hidden -> 1``.

    Uniform in ``+-1/sqrt(fan_in)``, like :class:`torch.nn.Linear`, drawn
    from ``gen`` so that the global random state is left alone.
    """
    params = []
    for fan_in, fan_out in ((d_in, hidden), (hidden, hidden), (hidden, 1)):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
        params += [w, b]
    return params


def _critic(params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(torch.cat([x, y], dim=1) @ w1.T + b1)
    h = torch.relu(h @ w2.T + b2)
    return (h @ w3.T + b3).squeeze(1)


def _mine_nats(x: np.ndarray, y: np.ndarray, *, n_steps: int,
               batch_size: int, hidden: int, lr: float, holdout: float,
               seed: int, device: torch.device):
    """MINE: (held-out DV bound, per-step training estimates), in nats."""
    n = len(x)
    n_hold = int(round(holdout * n))
    n_train = n - n_hold
    if n_train < 2 or n_hold < 2:
        raise ValueError(
            f"MINE needs at least 2 training and 2 held-out points; n={n} "
            f"with holdout={holdout} gives {n_train} and {n_hold}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    tr, te = perm[:n_train], perm[n_train:]
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)

    def standardise(v):  # with the training part's statistics
        mu, sd = v[tr].mean(0), v[tr].std(0)
        return ((v - mu) / torch.where(sd > 0, sd, torch.ones_like(sd))
                ).to(device=device, dtype=torch.float32)

    xt, yt = standardise(xt), standardise(yt)
    params = [p.to(device).requires_grad_()
              for p in _critic_params(x.shape[1] + y.shape[1], hidden, gen)]
    # every batch's indices drawn up front: joint pairs (i, i) and pairs
    # (i, j) with an independent j for the product of the marginals
    tr_dev = tr.to(device)
    idx = tr_dev[torch.randint(n_train, (n_steps, batch_size),
                               generator=gen).to(device)]
    jdx = tr_dev[torch.randint(n_train, (n_steps, batch_size),
                               generator=gen).to(device)]
    shuffles = [te[torch.randperm(n_hold, generator=gen)].to(device)
                for _ in range(_MINE_EVAL_SHUFFLES)]
    te = te.to(device)
    opt = torch.optim.Adam(params, lr=lr)
    history = torch.empty(n_steps, device=device)
    log_b = math.log(batch_size)
    with torch.enable_grad():
        for step in range(n_steps):
            i, j = idx[step], jdx[step]
            t_joint = _critic(params, xt[i], yt[i])
            t_marg = _critic(params, xt[i], yt[j])
            dv = t_joint.mean() - (torch.logsumexp(t_marg, 0) - log_b)
            opt.zero_grad(set_to_none=True)
            (-dv).backward()
            opt.step()
            history[step] = dv.detach()
    with torch.no_grad():
        t_joint = _critic(params, xt[te], yt[te])
        t_marg = torch.cat([_critic(params, xt[te], yt[s])
                            for s in shuffles])
        bound = t_joint.mean() - (torch.logsumexp(t_marg, 0)
                                  - math.log(t_marg.numel()))
    return float(bound), history.cpu().numpy().astype(np.float64)


def mutual_information(x, y, method: str = "ksg", *,
                       y_discrete: bool | None = None, k: int = 3,
                       metric: str = "chebyshev",
                       n_bins: int = 20, jitter: float = 1e-10,
                       n_steps: int = 500, batch_size: int = 256,
                       hidden: int = 128, lr: float = 1e-3,
                       holdout: float = 0.5, seed: int = 0,
                       return_history: bool = False):
    """Mutual information ``I(x; y)`` in bits, by binning, KSG or MINE.

    ``x`` is ``(n, d_x)`` and ``y`` is ``(n, d_y)``, NumPy arrays or torch
    tensors on any device (a 1-d input is one column); row ``i`` of both
    is one sample. ``x`` is taken as continuous (binary codes are points in
    ``R^d_x``); ``y`` is continuous or a column of discrete labels. Binning
    and KSG run on the CPU (the data are copied there once); MINE trains on
    the device of the input tensors. References: Kraskov, Stoegbauer and
    Grassberger (2004); Ross (2014); Belghazi et al. (2018). Chapter
    "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Samples of the first variable, shape ``(n, d_x)`` or ``(n,)``.
    y : numpy.ndarray or torch.Tensor
        Samples of the second variable, shape ``(n, d_y)`` or ``(n,)``;
        discrete labels must be one column.
    method : {"ksg", "binning", "mine"}, default "ksg"
        The estimator (see Notes).
    y_discrete : bool or None, default None
        Whether ``y`` holds discrete labels. ``None``: yes when ``y`` has
        an integer or bool dtype and one column.
    k : int, default 3
        Neighbours of the KSG estimators; every class of a discrete ``y``
        needs more than ``k`` samples, a continuous one ``n > k``.
    metric : {"chebyshev", "euclidean"}, default "chebyshev"
        KSG only: the distance between samples of ``x`` (after
        standardisation). ``"chebyshev"`` is the max-norm of Kraskov et
        al.; ``"euclidean"`` (for a discrete ``y`` only, as scikit-learn's
        ``mutual_info_classif`` uses it) is, on binary codes, the square
        root of a Hamming distance with each bit weighted by ``1 / var``,
        where the max-norm of two different codes depends on one bit.
    n_bins : int, default 20
        Cells of the binning estimator's k-means quantisation of ``x`` and
        of a continuous ``y`` (a discrete ``y`` is used as it is).
    jitter : float, default 1e-10
        Standard deviation of the Gaussian noise that KSG adds to the
        standardised data to break ties between duplicate points.
    n_steps : int, default 500
        Adam steps of MINE's critic.
    batch_size : int, default 256
        Samples per MINE step (drawn with replacement from the training
        part).
    hidden : int, default 128
        Width of the critic's two hidden ReLU layers.
    lr : float, default 1e-3
        Adam's learning rate for the critic.
    holdout : float, default 0.5
        Fraction of the samples, in ``(0, 1)``, on which MINE's bound is
        evaluated; the critic trains on the rest.
    seed : int, default 0
        Seeds the k-means quantisation, the KSG jitter and everything random
        in MINE (split, initialisation, batches, shuffles); the global random
        state is left alone.
    return_history : bool, default False
        MINE only: also return the per-step training-batch estimates.

    Returns
    -------
    float or tuple of (float, numpy.ndarray)
        The estimate in bits; with ``return_history=True`` also the MINE
        training history ``(n_steps,)`` in bits.

    Raises
    ------
    TypeError
        If ``x`` or ``y`` is not an array or tensor of real numbers, or an
        argument has the wrong type.
    ValueError
        For an unknown method, inputs of different lengths, NaN or infinite
        values, too few samples for ``k`` (per class for a discrete ``y``)
        or for MINE's split, an argument out of range, or
        ``return_history=True`` with a method other than MINE, or
        ``metric="euclidean"`` with another method or a continuous ``y``.

    Notes
    -----
    *binning*: ``x`` and a continuous ``y`` are each quantised by k-means
    (scikit-learn, a few restarts, ``random_state=seed``) into ``n_bins``
    cells, and the plug-in estimate ``sum p(a, b) log2 p(a, b) / (p(a)
    p(b))`` of the cell indices is returned. It is biased upward for small
    ``n`` (empty and sparsely filled cells look informative) and never
    exceeds ``log2(n_bins)``.

    *ksg*: both variables are standardised (centred, unit std per column;
    mutual information is invariant to that) and get Gaussian noise of std
    ``jitter``, seeded, as scikit-learn's ``mutual_info_regression`` does,
    so that duplicate points (binary codes) do not tie. For a continuous
    ``y``, estimator 1 of Kraskov et al.:
    ``psi(k) + psi(n) - <psi(n_x + 1) + psi(n_y + 1)>``, where ``n_x``
    counts the points strictly closer in ``x`` than the ``k``-th joint
    neighbour (max-norm). For a discrete ``y``, Ross (2014):
    ``psi(n) - <psi(n_y)> + psi(k) - <psi(m)>``, with ``n_y`` the size of
    the point's class and ``m`` the number of points of any class within
    the distance of its ``k``-th neighbour in its class (max-norm, or the
    Euclidean distance with ``metric="euclidean"``; the derivation holds
    for any metric). The estimate is not clipped: it may be slightly
    negative for independent variables. On binary codes many distances
    tie; the jitter breaks the ties at random.

    *mine*: a critic MLP ``T(x, y)`` (inputs standardised) is trained with
    Adam to maximise the Donsker-Varadhan bound on batches, the product of
    the marginals sampled by pairing ``x_i`` with an independent ``y_j``
    (plain DV gradients, no moving-average correction). The returned value
    is the bound evaluated once, after training, on the held-out part
    (marginal term over several shuffles of the held-out ``y``): a lower
    bound up to the sampling error of the held-out half (``holdout``), not
    the maximum over the training history. A discrete ``y`` is one-hot
    encoded.
    """
    method = check_choice("method", method, METHODS)
    if y_discrete is not None and not isinstance(y_discrete, bool):
        raise TypeError(f"y_discrete must be True, False or None, got "
                        f"{y_discrete!r} ({type(y_discrete).__name__})")
    if not isinstance(return_history, bool):
        raise TypeError(f"return_history must be a bool, got "
                        f"{return_history!r}")
    k = check_int("k", k, minimum=1)
    metric = check_choice("metric", metric, KSG_METRICS)
    n_bins = check_int("n_bins", n_bins, minimum=2)
    jitter = check_real("jitter", jitter, minimum=0)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    hidden = check_int("hidden", hidden, minimum=1)
    lr = check_real("lr", lr, minimum=0, min_open=True)
    holdout = check_real("holdout", holdout, minimum=0, maximum=1,
                         min_open=True, max_open=True)
    seed = check_int("seed", seed, minimum=0, maximum=2**32 - 1)
    if return_history and method != "mine":
        raise ValueError(f"return_history=True needs method='mine', got "
                         f"method={method!r}")
    if metric != "chebyshev" and method != "ksg":
        raise ValueError(f"metric={metric!r} needs method='ksg', got "
                         f"method={method!r}")
    tensors = {name: v for name, v in (("x", x), ("y", y))
               if isinstance(v, torch.Tensor)}
    check_same(tensors, dtype=False)
    device = next(iter(tensors.values())).device if tensors else \
        torch.device("cpu")
    xa, ya = _as_array("x", x), _as_array("y", y)
    if len(xa) != len(ya):
        raise ValueError(f"x and y must have the same number of samples; "
                         f"got {len(xa)} and {len(ya)}")
    n = len(xa)
    if y_discrete is None:
        y_discrete = ya.dtype.kind in "biu" and ya.shape[1] == 1
    elif y_discrete and ya.shape[1] != 1:
        raise ValueError(f"y_discrete=True needs one column of labels; got "
                         f"y of shape {ya.shape}")
    if metric != "chebyshev" and not y_discrete:
        raise ValueError(f"metric={metric!r} needs a discrete y; the KSG "
                         f"estimator of two continuous variables uses the "
                         f"max-norm ('chebyshev')")
    labels = _labels(ya) if y_discrete else None

    if method == "binning":
        bx = _quantise(xa, n_bins, seed)
        by = labels if y_discrete else _quantise(ya, n_bins, seed)
        return _plugin_mi_nats(bx, by) / math.log(2)

    if method == "ksg":
        if y_discrete:
            counts = np.bincount(labels)
            if counts.min() <= k:
                c = int(np.argmin(counts))
                value = np.unique(ya[:, 0])[c].item()
                raise ValueError(
                    f"k={k} needs more than k samples in every class of y; "
                    f"class {value!r} has {counts[c]}")
        elif n <= k:
            raise ValueError(f"k={k} needs more than k samples; got n={n}")
        rng = np.random.default_rng(seed)
        xs = _standardise(xa)
        xs = xs + jitter * rng.standard_normal(xs.shape)
        if y_discrete:
            p = np.inf if metric == "chebyshev" else 2.0
            return _ksg_mixed_nats(xs, labels, k, p) / math.log(2)
        ys = _standardise(ya)
        ys = ys + jitter * rng.standard_normal(ys.shape)
        return _ksg_nats(xs, ys, k) / math.log(2)

    if y_discrete:
        ya = np.eye(labels.max() + 1)[labels]
    bound, history = _mine_nats(
        xa, ya, n_steps=n_steps, batch_size=batch_size, hidden=hidden,
        lr=lr, holdout=holdout, seed=seed, device=device)
    estimate = bound / math.log(2)
    if return_history:
        return estimate, history / math.log(2)
    return estimate


def entropy_discrete(labels) -> float:
    """Plug-in entropy in bits of discrete labels or codes.

    ``labels`` is ``(n,)`` (one symbol per sample) or ``(n, d)`` (each row,
    e.g. a binary code, is one symbol). Returns
    ``-sum_s p(s) log2 p(s)`` with ``p`` the empirical frequencies: the
    ceiling ``H(Y)`` of ``I(T; Y)``, ``log2(K)`` for ``K`` balanced
    classes. Biased downward for few samples per symbol. Chapter
    "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    labels : numpy.ndarray or torch.Tensor
        The symbols, shape ``(n,)`` or ``(n, d)``.

    Returns
    -------
    float
        The entropy in bits (``0.0`` for a single symbol).

    Raises
    ------
    TypeError
        If ``labels`` is not an array or tensor of real numbers.
    ValueError
        If ``labels`` is empty, more than 2-d, or holds NaN or infinite
        values.
    """
    arr = _as_array("labels", labels)
    counts = np.bincount(_labels(arr))
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log2(p)))


def smoothed_max(history, window: int) -> float:
    """Maximum of the moving average of ``history`` over ``window`` steps.

    ``history`` is ``(n_steps,)``, e.g. MINE's per-step training estimates
    (``mutual_information(..., method="mine", return_history=True)``). The
    maximum of a noisy curve lies above its typical value, so this is an
    upward-biased summary -- the one EmbedderSDR reports (reference facts
    section 6); the chapter sets it beside the held-out estimate. Chapter
    "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    history : array-like or torch.Tensor
        The 1-d sequence of estimates, finite.
    window : int
        Length of the moving average, ``1 <= window <= len(history)``
        (``1``: the plain maximum).

    Returns
    -------
    float
        ``max_t mean(history[t:t + window])``.

    Raises
    ------
    TypeError
        If ``window`` is not an integer, or ``history`` is not numeric.
    ValueError
        If ``history`` is not 1-d and non-empty, holds NaN or infinite
        values, or ``window`` is out of range.
    """
    if isinstance(history, torch.Tensor):
        history = history.detach().to(torch.float64).cpu().numpy()
    arr = np.asarray(history)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"history must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"history must be 1-d and non-empty, got shape "
                         f"{arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("history contains NaN or infinite values")
    window = check_int("window", window, minimum=1, maximum=arr.size)
    csum = np.concatenate([[0.0], np.cumsum(arr, dtype=np.float64)])
    return float(np.max((csum[window:] - csum[:-window]) / window))


def fano_bound(accuracy: float, n_classes: int,
               h_y: float | None = None) -> float:
    """The least ``I(T; Y)`` in bits that a classifier's accuracy implies.

    Fano's inequality (Cover and Thomas, "Elements of Information
    Theory", section 2.10): any prediction of ``Y`` from ``T`` with error
    ``e = 1 - accuracy`` among ``K = n_classes`` classes leaves
    ``H(Y | T) <= h(e) + e log2(K - 1)``, ``h`` the binary entropy, so
    ``I(T; Y) >= H(Y) - h(e) - e log2(K - 1)``. With :func:`entropy_discrete`
    as the ceiling, it brackets what an estimator of ``I(T; Y)`` may
    honestly report (for the true error; a measured accuracy carries its
    sampling error). Equality holds when the errors are spread evenly over
    the other classes (a symmetric channel). Chapter "k-winners-take-all
    and binary SDR embeddings".

    Parameters
    ----------
    accuracy : float
        Accuracy of a classifier that reads ``T``, in [0, 1].
    n_classes : int
        Number of classes ``K`` (>= 2).
    h_y : float or None, default None
        ``H(Y)`` in bits, in ``[0, log2 K]`` (up to a rounding error of
        1e-9); None for balanced classes, ``log2 K``.

    Returns
    -------
    float
        ``H(Y) - h(e) - e log2(K - 1)``. Not clipped: it is 0 at chance
        accuracy ``1/K`` with balanced classes, and may be negative
        (saying nothing) with unbalanced ones.

    Raises
    ------
    TypeError
        If ``accuracy`` or ``h_y`` is not a real number, or ``n_classes``
        not an integer.
    ValueError
        If ``accuracy`` is outside [0, 1], ``n_classes < 2`` or ``h_y``
        outside ``[0, log2 K]``.
    """
    accuracy = check_real("accuracy", accuracy, minimum=0, maximum=1)
    n_classes = check_int("n_classes", n_classes, minimum=2)
    top = math.log2(n_classes)
    if h_y is None:
        h_y = top
    else:
        h_y = check_real("h_y", h_y, minimum=0)
        # a plug-in entropy of balanced labels may exceed log2 K by rounding
        if h_y > top + _H_TOL:
            raise ValueError(f"h_y must be <= log2(n_classes) = {top:.6g} "
                             f"bits, got {h_y!r}")
    e = 1.0 - accuracy
    h_e = 0.0 if e in (0.0, 1.0) else \
        -e * math.log2(e) - (1 - e) * math.log2(1 - e)
    return h_y - h_e - e * math.log2(n_classes - 1)
