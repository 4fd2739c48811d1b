"""Theory of sparse distributed representations (SDRs): capacity and matching.

A binary code of length ``n`` with ``a`` active bits is a point among
``C(n, a)`` possible ones. A stored pattern (a dendritic segment with ``s``
synapses) *matches* a vector when at least ``theta`` of its bits are active in
it. For a vector drawn at random with ``a`` of ``n`` bits on, the number of
shared bits is hypergeometric, so the false-match probability is the tail

    P(match) = sum_{b=theta}^{s} C(s, b) C(n - s, a - b) / C(n, a)

(Ahmad & Scheinkman 2019, "How Can We Be So Dense?", eq. 2 and Fig. 2;
Ahmad & Hawkins 2016). :func:`match_probability` evaluates it *exactly*: the
binomial coefficients are Python integers, the ratio is a
:class:`fractions.Fraction`, and the conversion to ``float`` rounds once.
Nothing overflows, and nothing underflows to zero unless the true value is
below the smallest float (~5e-324); :func:`log_match_probability` returns the
natural logarithm, which never underflows.

Introduced in the chapter "Neural codes".
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

from .utils import check_int, check_same, check_tensor

__all__ = [
    "capacity_bits",
    "match_probability",
    "log_match_probability",
    "match_probability_mc",
    "random_sdr",
    "overlap",
    "expected_overlap",
    "union_size_distribution",
    "union_match_probabilities",
    "union_match_probability",
    "sdr_union",
    "sdr_intersection",
    "union_matches",
]


def _check_nasth(n, a, s, theta):
    n = check_int("n", n, minimum=1)
    a = check_int("a", a, minimum=0)
    s = check_int("s", s, minimum=0)
    theta = check_int("theta", theta, minimum=0)
    if a > n:
        raise ValueError(f"a (active bits, {a}) must be <= n ({n})")
    if s > n:
        raise ValueError(f"s (bits of the stored pattern, {s}) must be "
                         f"<= n ({n})")
    return n, a, s, theta


def _match_fraction(n: int, a: int, s: int, theta: int) -> Fraction:
    lo = max(theta, a - (n - s), 0)  # C(n - s, a - b) = 0 when a - b > n - s
    hi = min(s, a)
    if lo > hi:
        return Fraction(0)
    num = sum(math.comb(s, b) * math.comb(n - s, a - b)
              for b in range(lo, hi + 1))
    return Fraction(num, math.comb(n, a))


def match_probability(n: int, a: int, s: int, theta: int) -> float:
    """Probability that a random ``a``-of-``n`` vector matches a pattern.

    Reference: Ahmad & Scheinkman (2019), eq. 2. Chapter "Neural codes".

    Parameters
    ----------
    n : int, >= 1
        Length of the binary vectors.
    a : int, 0 <= a <= n
        Active bits of the random vector.
    s : int, 0 <= s <= n
        Bits (synapses) of the stored pattern.
    theta : int, >= 0
        Match threshold: a match is an overlap of at least ``theta`` bits.

    Returns
    -------
    float
        ``sum_{b>=theta} C(s, b) C(n-s, a-b) / C(n, a)``, computed exactly and
        rounded once (``0.0`` when ``theta > min(s, a)``; ``1.0`` when
        ``theta == 0``). Equal to
        ``scipy.stats.hypergeom(n, s, a).sf(theta - 1)``.

    Raises
    ------
    TypeError
        For non-integer sizes.
    ValueError
        For negative sizes, ``a > n`` or ``s > n``.
    """
    n, a, s, theta = _check_nasth(n, a, s, theta)
    return float(_match_fraction(n, a, s, theta))


def log_match_probability(n: int, a: int, s: int, theta: int) -> float:
    """Natural log of :func:`match_probability`, exact and free of underflow.

    Returns ``-inf`` where the probability is exactly zero.
    Chapter "Neural codes".
    """
    n, a, s, theta = _check_nasth(n, a, s, theta)
    frac = _match_fraction(n, a, s, theta)
    if frac == 0:
        return -math.inf
    # math.log is exact enough for arbitrarily large Python integers.
    return math.log(frac.numerator) - math.log(frac.denominator)


def capacity_bits(n, a):
    """Information capacity ``log2 C(n, a)`` in bits of an ``a``-of-``n`` code.

    ``n`` and ``a`` are integers or integer arrays (broadcast together); the
    result is a ``float`` or a NumPy array. Exact: the binomial coefficient is
    a Python integer before its logarithm is taken. A local (one-hot) code
    has ``log2 n`` bits; a code free to use any of the ``2^n`` patterns has
    ``n``. Chapter "Neural codes".
    """
    n_arr, a_arr = np.broadcast_arrays(np.asarray(n), np.asarray(a))
    if n_arr.dtype.kind not in "iu" or a_arr.dtype.kind not in "iu":
        raise TypeError(f"n and a must be integers; got n={n!r}, a={a!r}")
    out = np.empty(n_arr.shape, dtype=float)
    for idx in np.ndindex(n_arr.shape):
        nn = check_int("n", int(n_arr[idx]), minimum=0)
        aa = check_int("a", int(a_arr[idx]), minimum=0)
        if aa > nn:
            raise ValueError(f"a ({aa}) must be <= n ({nn})")
        out[idx] = math.log2(math.comb(nn, aa))
    return float(out) if out.ndim == 0 else out


def random_sdr(batch: int, n: int, a: int, *, generator=None,
               device=None, dtype=torch.float32) -> torch.Tensor:
    """Random binary vectors, each with exactly ``a`` of ``n`` bits on.

    Returns a tensor of shape ``(batch, n)`` with entries 0/1 of ``dtype``;
    the active positions of each row are a uniformly random ``a``-subset.
    ``generator`` (a :class:`torch.Generator` on ``device``) makes it
    repeatable. Chapter "Neural codes".
    """
    batch = check_int("batch", batch, minimum=0)
    n = check_int("n", n, minimum=1)
    a = check_int("a", a, minimum=0, maximum=n)
    if generator is not None and device is None:
        device = generator.device
    scores = torch.rand(batch, n, generator=generator, device=device)
    out = torch.zeros(batch, n, dtype=dtype, device=scores.device)
    if a:
        out.scatter_(1, scores.topk(a, dim=1).indices, 1)
    return out


def overlap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Overlaps (shared active bits) of binary codes: ``x @ y.T``.

    ``x`` is ``(batch_x, n)`` and ``y`` is ``(batch_y, n)``; the result is
    ``(batch_x, batch_y)``. Chapter "k-winners-take-all and binary SDR
    embeddings".
    """
    check_tensor("x", x)
    check_tensor("y", y)
    check_same({"x": x, "y": y}, dtype=False)  # same device; any dtypes
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"x and y must be 2-d (batch, n); got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same n; got {x.shape[1]} "
                         f"and {y.shape[1]}")
    return x.float() @ y.float().T


def expected_overlap(n: int, a: int, b: int | None = None) -> float:
    """Mean overlap ``a * b / n`` of random ``a``- and ``b``-of-``n`` codes.

    (The mean of the hypergeometric distribution.) Chapter "k-winners-take-all
    and binary SDR embeddings".
    """
    n = check_int("n", n, minimum=1)
    a = check_int("a", a, minimum=0, maximum=n)
    b = a if b is None else check_int("b", b, minimum=0, maximum=n)
    return a * b / n


def match_probability_mc(n: int, a: int, s: int, theta: int,
                         n_trials: int = 100_000, *, generator=None,
                         device=None,
                         chunk: int = 8192) -> tuple[float, float]:
    """Monte Carlo estimate of :func:`match_probability`, with its std. error.

    Draws one random stored pattern of ``s`` bits and ``n_trials`` random
    vectors of ``a`` bits (as explicit binary vectors, in chunks), and counts
    the overlaps of at least ``theta``. Returns ``(estimate, standard_error)``
    with ``standard_error = sqrt(p (1 - p) / n_trials)``.
    Chapter "Neural codes".
    """
    n, a, s, theta = _check_nasth(n, a, s, theta)
    n_trials = check_int("n_trials", n_trials, minimum=1)
    chunk = check_int("chunk", chunk, minimum=1)
    pattern = random_sdr(1, n, s, generator=generator, device=device)
    hits = 0
    done = 0
    while done < n_trials:
        m = min(chunk, n_trials - done)
        x = random_sdr(m, n, a, generator=generator, device=pattern.device)
        hits += int((overlap(x, pattern) >= theta).sum())
        done += m
    p = hits / n_trials
    # The error uses (hits + 1) / (n_trials + 2) (Agresti-Coull style), so
    # that zero or all hits do not claim an error of exactly zero.
    q = (hits + 1) / (n_trials + 2)
    return p, math.sqrt(q * (1 - q) / n_trials)


def _log_comb(n, k):
    from scipy.special import gammaln

    n, k = np.broadcast_arrays(np.asarray(n, float), np.asarray(k, float))
    out = np.full(n.shape, -np.inf)
    ok = (k >= 0) & (k <= n)
    out[ok] = gammaln(n[ok] + 1) - gammaln(k[ok] + 1) - \
        gammaln(n[ok] - k[ok] + 1)
    return out


def union_size_distribution(n: int, a: int, m: int) -> np.ndarray:
    """Distribution of the number of bits on in a union of ``m`` random codes.

    Each of the ``m`` codes has ``a`` of ``n`` bits on, drawn independently;
    returns ``p`` of length ``n + 1`` with ``p[u] = P(union has u bits on)``.
    Exact up to float rounding: codes are added one at a time, and a new
    code lights ``k`` new bits with the hypergeometric probability
    ``C(n - u, k) C(u, a - k) / C(n, a)`` (in log space). Sizes whose
    probability is below 1e-30 of the largest are dropped.
    """
    n = check_int("n", n, minimum=1)
    a = check_int("a", a, minimum=0, maximum=n)
    m = check_int("m", m, minimum=0)
    p = np.zeros(n + 1)
    p[0] = 1.0
    k = np.arange(a + 1)
    log_total = float(_log_comb(n, a))
    for _ in range(m):
        u = np.nonzero(p > 1e-30 * p.max())[0]
        logw = (_log_comb(n - u[:, None], k[None, :]) +
                _log_comb(u[:, None], a - k[None, :]) - log_total)
        w = np.exp(logw) * p[u, None]
        new = np.zeros(n + 1)
        np.add.at(new, (u[:, None] + k[None, :]).clip(max=n), w)
        p = new / new.sum()
    return p


def union_match_probabilities(n: int, a: int, ms, theta: int | None = None
                              ) -> np.ndarray:
    """:func:`union_match_probability` for every ``m`` in ``ms``, in one pass.

    The union-size distribution is grown one code at a time up to
    ``max(ms)``, and the false-positive rate read off at each requested
    ``m``; once it exceeds ``1 - 1e-12`` (a saturated union) the rest are 1.
    Returns an array shaped like ``ms``. Chapter "Neural codes".
    """
    from scipy.stats import hypergeom

    n = check_int("n", n, minimum=1)
    a = check_int("a", a, minimum=0, maximum=n)
    theta = a if theta is None else check_int("theta", theta, minimum=0)
    ms_arr = np.asarray(ms)
    wanted = sorted({check_int("m", m, minimum=0) for m in ms_arr.ravel()})
    out = {}
    p = np.zeros(n + 1)
    p[0] = 1.0
    k = np.arange(a + 1)
    log_total = float(_log_comb(n, a))
    sizes = np.arange(n + 1)
    tail = hypergeom(n, sizes, a).sf(theta - 1)  # match given u bits on
    m, saturated = 0, False
    for target in wanted:
        while m < target and not saturated:
            u = np.nonzero(p > 1e-30 * p.max())[0]
            logw = (_log_comb(n - u[:, None], k[None, :]) +
                    _log_comb(u[:, None], a - k[None, :]) - log_total)
            new = np.zeros(n + 1)
            np.add.at(new, (u[:, None] + k[None, :]).clip(max=n),
                      np.exp(logw) * p[u, None])
            p = new / new.sum()
            m += 1
            saturated = float(np.sum(p * tail)) > 1 - 1e-12
        out[target] = 1.0 if saturated else \
            float(np.clip(np.sum(p * tail), 0.0, 1.0))
    return np.vectorize(lambda v: out[int(v)], otypes=[float])(ms_arr)


def union_match_probability(n: int, a: int, m: int,
                            theta: int | None = None, *,
                            exact: bool = True) -> float:
    """False-positive rate of a union of ``m`` random ``a``-of-``n`` codes.

    ``m`` random codes are OR-ed into one union; a new random ``a``-code is
    (falsely) taken for a member when at least ``theta`` (default ``a``:
    all) of its bits are on in the union. Exactly, that is
    ``sum_u P(U = u) match_probability(n, a, u, theta)`` with the union size
    ``U`` from :func:`union_size_distribution`. With ``exact=False`` the
    union size is replaced by its mean ``n (1 - (1 - a/n)^m)`` -- the usual
    back-of-envelope estimate (Ahmad & Hawkins 2016), which underestimates
    the rate where it starts to rise. Chapter "Neural codes".
    """
    n = check_int("n", n, minimum=1)
    a = check_int("a", a, minimum=0, maximum=n)
    m = check_int("m", m, minimum=0)
    theta = a if theta is None else check_int("theta", theta, minimum=0)
    if not exact:
        u = int(round(n * (1 - (1 - a / n) ** m)))
        return match_probability(n, a, u, theta)
    return float(union_match_probabilities(n, a, [m], theta)[0])


def _check_binary(name: str, codes, min_ndim: int = 1) -> torch.Tensor:
    """``codes`` if it is a bool tensor or holds only 0s and 1s."""
    check_tensor(name, codes)
    if codes.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} "
                         f"dimension(s), got shape {tuple(codes.shape)}")
    if codes.is_complex():
        raise TypeError(f"{name} must be a real or bool tensor, got dtype "
                        f"{codes.dtype}")
    if codes.dtype != torch.bool and \
            not bool(((codes == 0) | (codes == 1)).all()):
        raise ValueError(f"{name} must be binary (bool, or only 0 and 1); "
                         f"got values outside {{0, 1}}")
    return codes


def sdr_union(codes: torch.Tensor) -> torch.Tensor:
    """Union (bitwise OR) of binary codes: ``(..., m, n) -> (..., n)``.

    Bit ``j`` of the union is on when it is on in any of the ``m`` codes
    along dimension ``-2``; leading dimensions are a batch of unions. The
    result has the dtype of ``codes`` (bool, or 0/1 numbers); the union of
    ``m = 0`` codes is all zeros. A union stores a set of patterns in one
    code, and is later asked whether a code belongs to it
    (:func:`union_matches`; false matches: :func:`union_match_probability`;
    Ahmad & Hawkins 2016). Chapter "k-winners-take-all and binary SDR
    embeddings".

    Parameters
    ----------
    codes : torch.Tensor
        Binary codes, shape ``(..., m, n)``: bool, or numbers that are all
        0 or 1.

    Returns
    -------
    torch.Tensor
        The union, shape ``(..., n)``, dtype of ``codes``.

    Raises
    ------
    TypeError
        If ``codes`` is not a real or bool tensor.
    ValueError
        If ``codes`` has fewer than 2 dimensions or values other than 0
        and 1.
    """
    codes = _check_binary("codes", codes, min_ndim=2)
    return codes.bool().any(dim=-2).to(codes.dtype)


def sdr_intersection(codes: torch.Tensor) -> torch.Tensor:
    """Intersection (bitwise AND) of binary codes: ``(..., m, n) -> (..., n)``.

    Bit ``j`` is on when it is on in every one of the ``m`` codes along
    dimension ``-2``; leading dimensions are a batch. The result has the
    dtype of ``codes``; by the usual convention for an empty intersection,
    that of ``m = 0`` codes is all ones.

    Parameters
    ----------
    codes : torch.Tensor
        Binary codes, shape ``(..., m, n)``: bool, or numbers that are all
        0 or 1.

    Returns
    -------
    torch.Tensor
        The intersection, shape ``(..., n)``, dtype of ``codes``.

    Raises
    ------
    TypeError
        If ``codes`` is not a real or bool tensor.
    ValueError
        If ``codes`` has fewer than 2 dimensions or values other than 0
        and 1.
    """
    codes = _check_binary("codes", codes, min_ndim=2)
    return codes.bool().all(dim=-2).to(codes.dtype)


def union_matches(union: torch.Tensor, x: torch.Tensor,
                  theta: int) -> torch.Tensor:
    """Whether each code matches a union: at least ``theta`` shared bits.

    ``union`` is ``(..., n)`` and ``x`` is ``(..., batch, n)``, with
    leading dimensions broadcast (one union ``(n,)`` against codes
    ``(batch, n)`` is the common case); the result is a bool tensor
    ``(..., batch)``. The overlap is counted exactly, as integers. For
    random codes the rate of (false) matches is
    :func:`union_match_probability` (Ahmad & Hawkins 2016). Chapter
    "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    union : torch.Tensor
        Binary union code(s), shape ``(..., n)``, e.g. from
        :func:`sdr_union`.
    x : torch.Tensor
        Binary codes to test, shape ``(..., batch, n)``, on the device of
        ``union``.
    theta : int
        Match threshold, ``>= 0``: a code matches when at least ``theta``
        of its active bits are on in the union (``theta = a`` asks for all
        of them).

    Returns
    -------
    torch.Tensor
        Bool, shape ``(..., batch)``.

    Raises
    ------
    TypeError
        If ``union`` or ``x`` is not a real or bool tensor, or ``theta`` is
        not an integer.
    ValueError
        If a code is not binary, the shapes do not fit, the tensors lie on
        different devices, or ``theta < 0``.
    """
    union = _check_binary("union", union, min_ndim=1)
    x = _check_binary("x", x, min_ndim=2)
    theta = check_int("theta", theta, minimum=0)
    check_same({"union": union, "x": x}, dtype=False)
    if union.shape[-1] != x.shape[-1]:
        raise ValueError(f"union and x must have the same n (last "
                         f"dimension); got shapes {tuple(union.shape)} and "
                         f"{tuple(x.shape)}")
    try:
        torch.broadcast_shapes(union.shape[:-1], x.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the leading dimensions of union "
                         f"{tuple(union.shape)} and x {tuple(x.shape)} do "
                         f"not broadcast (union is (..., n), x is "
                         f"(..., batch, n))") from None
    shared = (x.bool() & union.bool().unsqueeze(-2)).sum(dim=-1)
    return shared >= theta
