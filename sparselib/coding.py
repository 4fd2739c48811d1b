"""Sparse coding as optimisation: ISTA, FISTA, LISTA and dictionary learning.

The problem, for inputs ``x`` ``(batch, n_inputs)`` and a dictionary ``D``
``(n_atoms, n_inputs)`` whose rows (atoms) have norm at most 1, is

    min_a  1/2 ||x - a D||^2 + lam ||a||_1          (codes a: (batch, n_atoms))

-- scikit-learn's convention (``components_`` are rows; ``sparse_encode``
with ``alpha=lam`` minimises the same function), which makes it the oracle.
The gradient of the smooth part is ``(a D - x) D^T``; it is Lipschitz with
constant ``L = ||D D^T||_2``, the largest squared singular value of ``D``
(:func:`lipschitz`, by power iteration). ISTA takes a gradient step of size
``1/L`` and shrinks (:func:`soft_threshold`) (Daubechies et al. 2004);
FISTA adds Nesterov momentum; after ``t`` iterations their objectives are
within O(1/t) and O(1/t^2) of the optimum (Beck & Teboulle 2009). Both stop
on a certified duality gap (see :func:`ista`). :func:`omp` is the greedy alternative that counts
atoms instead of weighing them (Pati et al. 1993). LISTA unrolls ISTA into a
network whose matrices and thresholds are learned (Gregor & LeCun 2010).
:func:`learn_dictionary` alternates FISTA codes with a dictionary update that
keeps every atom in the unit ball (Olshausen & Field 1996; Mairal et al.
2009).

Everything is batched, runs on the device of its inputs and is
differentiable (autograd flows through the iterations) unless stated.

Introduced in the chapter "Sparse coding as optimisation".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .utils import (check_choice, check_int, check_real, check_same,
                    check_tensor, progress)

__all__ = [
    "soft_threshold",
    "objective",
    "lipschitz",
    "ista",
    "fista",
    "omp",
    "LISTA",
    "project_atoms_",
    "init_dictionary",
    "learn_dictionary",
    "forget_factor",
    "DictionaryHistory",
    "SolverInfo",
    "atom_recovery",
]


#: Factor on the power-iteration estimate of L in the default step size:
#: the estimate is a lower bound, and a step above 1/L may diverge.
STEP_SAFETY = 1.001

# ---------------------------------------------------------------- checks


def _check_lam(lam, n_atoms=None, like=None):
    """``lam`` checked once, at a public entry point.

    A number (returned as ``float``) or a tensor of thresholds, at most 1-d
    with 1 or ``n_atoms`` entries (returned unchanged; its values are read
    once here, never in the solvers' loops). ``like``: a tensor whose
    device a 1-d ``lam`` must share.
    """
    if isinstance(lam, torch.Tensor):
        if lam.dtype == torch.bool or lam.is_complex():
            raise TypeError(f"lam must hold real numbers, got a tensor of "
                            f"dtype {lam.dtype}")
        if lam.ndim > 1 or (lam.ndim == 1 and n_atoms is not None and
                            lam.shape[0] not in (1, n_atoms)):
            raise ValueError(f"lam must be a number or a vector of "
                             f"n_atoms={n_atoms} values; got shape "
                             f"{tuple(lam.shape)}")
        if lam.ndim == 1 and like is not None and lam.device != like.device:
            raise ValueError(f"lam must be on the device of D; got lam on "
                             f"{lam.device}, D on {like.device}")
        if not bool((lam >= 0).all()):  # also NaN
            raise ValueError(f"lam must be >= 0 everywhere (no NaN); got "
                             f"min {lam.min().item()!r}")
        return lam
    return check_real("lam", lam, minimum=0)


def _check_xD(x, D):
    """``x`` and ``D`` checked once, at a public entry point.

    Reads the values (finite, no zero atom): never call it in a loop.
    """
    check_tensor("x", x, ndim=2, floating=True)
    check_tensor("D", D, ndim=2, floating=True)
    check_same({"x": x, "D": D})
    if x.shape[1] != D.shape[1]:
        raise ValueError(
            f"x is (batch, n_inputs={x.shape[1]}) but D is (n_atoms, "
            f"n_inputs={D.shape[1]}): the n_inputs must match (atoms are "
            "the rows of D)")
    check_tensor("x", x, finite=True)
    check_tensor("D", D, finite=True)
    norms = D.detach().norm(dim=1)
    if (norms == 0).any():
        i = int((norms == 0).nonzero()[0])
        raise ValueError(f"D has a zero atom (row {i}); every atom needs a "
                         "non-zero norm")


# ---------------------------------------------------------------- pieces


def _shrink(z, lam, nonneg):
    """:func:`soft_threshold` without checks, for the solvers' loops."""
    if nonneg:
        return torch.relu(z - lam)
    return torch.sign(z) * torch.relu(z.abs() - lam)


def soft_threshold(z: torch.Tensor, lam, nonneg: bool = False) -> torch.Tensor:
    """The proximal map of ``lam * |.|_1``: ``sign(z) max(|z| - lam, 0)``.

    With ``nonneg=True``, the proximal map of ``lam |.|_1`` plus the
    constraint ``a >= 0``: ``max(z - lam, 0)``. ``lam`` is a number or a
    tensor broadcastable to ``z`` (one threshold per atom); its values are
    checked (>= 0, no NaN) on every call, so the solvers use an unchecked
    copy in their loops. Chapter "Sparse coding as optimisation".
    """
    check_tensor("z", z)
    lam = _check_lam(lam)
    return _shrink(z, lam, nonneg)


def objective(x: torch.Tensor, D: torch.Tensor, a: torch.Tensor,
              lam) -> torch.Tensor:
    """``1/2 ||x - a D||^2 + lam ||a||_1`` for each sample: ``(batch,)``.

    scikit-learn's lasso objective for ``sparse_encode`` (per sample, no
    division by n_inputs). Chapter "Sparse coding as optimisation".
    """
    check_tensor("x", x, ndim=2)
    check_tensor("D", D, ndim=2)
    check_tensor("a", a, ndim=2)
    check_same({"x": x, "D": D, "a": a})
    lam = _check_lam(lam, D.shape[0], like=D)
    if a.shape != (x.shape[0], D.shape[0]):
        raise ValueError(f"a must be (batch={x.shape[0]}, n_atoms="
                         f"{D.shape[0]}); got {tuple(a.shape)}")
    return _objective(x, D, a, lam)


def _objective(x, D, a, lam):
    """:func:`objective` without checks, for the solvers' loops."""
    resid = x - a @ D
    return 0.5 * (resid ** 2).sum(1) + (lam * a.abs()).sum(1)


def lipschitz(D: torch.Tensor, n_iter: int = 300, tol: float = 1e-9,
              generator=None) -> float:
    """Largest eigenvalue of ``D D^T`` (= ``||D||_2^2``), by power iteration.

    The Lipschitz constant of the gradient ``(a D - x) D^T``. Iterates on
    the smaller of ``D D^T`` and ``D^T D`` (same largest eigenvalue) until
    the estimate changes by less than ``tol`` (relative). The estimate
    approaches ``L`` from below, so the solvers take the step
    ``1 / (STEP_SAFETY * lipschitz(D))``.
    Chapter "Sparse coding as optimisation".
    """
    check_tensor("D", D, ndim=2)
    n_iter = check_int("n_iter", n_iter, minimum=1)
    tol = check_real("tol", tol, minimum=0)
    with torch.no_grad():
        D = D.detach()
        G = D @ D.T if D.shape[0] <= D.shape[1] else D.T @ D
        if generator is None:  # deterministic, and the global RNG untouched
            generator = torch.Generator().manual_seed(0)
        v = torch.randn(G.shape[0], 1, generator=generator,
                        dtype=G.dtype).to(G.device)
        v = v / v.norm()
        est = 0.0
        for _ in range(n_iter):
            w = G @ v
            new = float(w.norm())
            if new == 0:
                return 0.0
            v = w / new
            if abs(new - est) <= tol * new:
                est = new
                break
            est = new
        return est


# ---------------------------------------------------------------- solvers


#: Iterations between two evaluations of the stopping rule (the duality
#: gap costs about one iteration; a check reads one value on the host).
CHECK_EVERY = 10


@dataclass
class SolverInfo:
    """What :func:`ista` / :func:`fista` did.

    ``n_iter``: iterations run (by the samples that ran longest);
    ``iterations``: iterations each sample ran, ``(batch,)`` (``None``
    with ``tol=0``: every sample runs the whole budget);
    ``converged``: every sample's relative duality gap reached ``tol``;
    ``gap``: the largest relative duality gap over the samples at the stop
    (``None`` with ``tol=0``, which computes no gap); ``n_polished``:
    samples finished by the exact solve on their support; ``step``: the
    step size; ``objective``: the mean objective after every iteration
    (with ``track=True``).
    """

    n_iter: int
    converged: bool
    step: float
    gap: float | None = None
    n_polished: int = 0
    iterations: torch.Tensor | None = None
    objective: list = field(default_factory=list)


def _solve(x, D, lam, n_iter, tol, step, nonneg, a0, momentum, track,
           return_info):
    """Check the arguments of :func:`ista` / :func:`fista` once; iterate."""
    _check_xD(x, D)
    lam = _check_lam(lam, D.shape[0], like=D)
    n_iter = check_int("n_iter", n_iter, minimum=1)
    tol = check_real("tol", tol, minimum=0)
    if step is None:
        step = 1.0 / (STEP_SAFETY * lipschitz(D))
    else:
        step = check_real("step", step, minimum=0, min_open=True)
    batch, n_atoms = x.shape[0], D.shape[0]
    if a0 is None:
        a = torch.zeros(batch, n_atoms, device=x.device, dtype=x.dtype)
    else:
        check_tensor("a0", a0)
        check_same({"x": x, "a0": a0})
        if a0.shape != (batch, n_atoms):
            raise ValueError(f"a0 must be ({batch}, {n_atoms}); got "
                             f"{tuple(a0.shape)}")
        a = a0
    a, info = _iterate(x, D, lam, n_iter, tol, step, nonneg, a, momentum,
                       track)
    return (a, info) if return_info else a


def _gap(x2, xDt, a, aG, lam, nonneg):
    """Per-sample objective and duality gap of the lasso at codes ``a``.

    ``x2 = ||x||^2``, ``xDt = x D^T``, ``aG = a D D^T``. The dual point is
    the residual ``r = x - a D`` scaled into the dual feasible set
    ``{theta : |D theta| <= lam}`` (``D theta <= lam`` with ``nonneg``):
    its dual value is a lower bound on the optimum, so the gap bounds the
    distance of the objective from the optimum (a certificate).
    """
    corr = xDt - aG                                  # r D^T
    ac = (a * xDt).sum(1)
    rr = (x2 - 2 * ac + (a * aG).sum(1)).clamp_min(0)   # ||r||^2
    primal = 0.5 * rr + (lam * a.abs()).sum(1)
    viol = corr.clamp_min(0) if nonneg else corr.abs()
    if isinstance(lam, torch.Tensor):
        # one threshold per atom; an atom with lam_j = 0 needs corr_j = 0
        ratio = torch.where(lam > 0, viol / lam.clamp_min(1e-30),
                            torch.where(viol > 0, math.inf, 0.0))
        scale = ratio.amax(1).clamp_min(1.0)
    elif lam > 0:
        scale = (viol.amax(1) / lam).clamp_min(1.0)
    else:
        scale = torch.where(viol.amax(1) > 0, math.inf, 1.0)
    dual = (x2 - ac) / scale - rr / (2 * scale * scale)
    dual = torch.where(torch.isfinite(scale), dual, 0.0)   # theta = 0
    return primal, primal - dual


def _solve_support(xDt, G, support, sign, lam, n_inputs):
    """Per row, the minimiser with the given support and signs.

    Solves ``G_SS z_S = (x D^T)_S - lam_S sign_S`` (zero off ``S``) by one
    batched Cholesky solve. Returns ``z`` and the rows where the solve
    worked (a support of at most ``n_inputs`` atoms, positive definite).
    """
    count = support.sum(1)
    width = int(count.max())
    usable = (count > 0) & (count <= n_inputs)
    if width == 0:
        return torch.zeros_like(xDt), usable
    # the support's indices first, in atom order; padded to `width`
    order = torch.argsort((~support).to(torch.uint8), dim=1, stable=True)
    order = order[:, :width]
    valid = (torch.arange(width, device=xDt.device)[None, :] <
             count[:, None])
    Gs = G[order[:, :, None], order[:, None, :]]
    pair = valid[:, :, None] & valid[:, None, :]
    eye = torch.eye(width, device=xDt.device, dtype=xDt.dtype)
    Gs = torch.where(pair, Gs, eye)
    sg = sign.gather(1, order)
    lam_s = lam[order] if (isinstance(lam, torch.Tensor) and
                           lam.ndim == 1 and lam.shape[0] > 1) else lam
    rhs = torch.where(valid, xDt.gather(1, order) - lam_s * sg, 0.0)
    chol, fail = torch.linalg.cholesky_ex(Gs)
    zs = torch.cholesky_solve(rhs.unsqueeze(2), chol).squeeze(2)
    zs = torch.where(valid, zs, 0.0)
    z = torch.zeros_like(xDt).scatter(1, order, zs)
    return torch.where(support, z, 0.0), usable & (fail == 0)


def _polish(xDt, G, a, lam, nonneg, n_inputs):
    """The exact lasso solution, guessed from the support and signs of ``a``.

    If ``a`` has the optimum's support and signs, the optimum solves the
    linear system of :func:`_solve_support`. Returns the candidate codes
    and the rows where the solve worked and kept every sign (so the
    candidate also stays >= 0 with ``nonneg``); the caller keeps a
    candidate only if its duality gap certifies it.
    """
    support = a != 0
    sign = torch.sign(a)
    z, ok = _solve_support(xDt, G, support, sign, lam, n_inputs)
    kept = ~(support & (torch.sign(z) != sign)).any(1)
    return z, ok & kept


def _iterate(x, D, lam, n_iter, tol, step, nonneg, a, momentum, track):
    """The (F)ISTA loop on checked arguments: ``(codes, SolverInfo)``.

    No argument checks in here: they would run (and, on a GPU, wait for
    the device) on every iteration. With ``tol > 0``, every
    ``CHECK_EVERY`` iterations each sample's relative duality gap is
    computed; a sample whose gap is at most ``tol`` stops (its code no
    longer changes). A sample whose support and signs did not change since
    the previous check also gets the exact solve on that support
    (:func:`_polish`), kept if its gap certifies it. On the CPU the
    finished samples are dropped from the batch, so they stop costing work.
    """
    n_atoms, n_inputs = D.shape
    xDt = x @ D.T          # (batch, n_atoms)
    G = D @ D.T            # (n_atoms, n_atoms)
    # the gradient (y D - x) D^T costs 2 n_inputs multiply-adds per code
    # entry; y G - x D^T costs n_atoms: take the cheaper
    use_gram = n_atoms <= 2 * n_inputs
    thr = lam * step
    info = SolverInfo(n_iter=0, converged=False, step=step)
    check = tol > 0
    compact = check and not track and x.device.type == "cpu"
    batch = x.shape[0]
    out = a.clone() if compact else None
    rows = torch.arange(batch, device=x.device)   # rows still running
    xs, cs = x, xDt
    x2 = (x * x).sum(1) if check else None
    done = torch.zeros(batch, dtype=torch.bool, device=x.device)
    tried = torch.zeros(batch, dtype=torch.bool, device=x.device)
    prev_sign = torch.sign(a)
    gap_final = None
    iters = torch.full((batch,), n_iter, dtype=torch.long,
                       device=x.device) if check else None
    y, t = a, 1.0
    for k in range(1, n_iter + 1):
        if use_gram:
            grad = y @ G - cs
        else:
            grad = (y @ D - xs) @ D.T
        a_new = _shrink(y - step * grad, thr, nonneg)
        if check and not compact:
            a_new = torch.where(done[:, None], a, a_new)   # finished: frozen
        if momentum:
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y = a_new + ((t - 1) / t_new) * (a_new - a)
            t = t_new
        else:
            y = a_new
        a = a_new
        info.n_iter = k
        if track:
            with torch.no_grad():
                f = float(_objective(x, D, a, lam).mean())
            info.objective.append(f)
        if not check or (k % CHECK_EVERY and k < n_iter):
            continue
        with torch.no_grad():
            primal, gap = _gap(x2, cs, a, a @ G, lam, nonneg)
            ok = gap <= tol * primal
            sign = torch.sign(a)
            changed = (sign != prev_sign).any(1)
            prev_sign = sign
            tried = tried & ~changed
            todo = ~ok & ~changed & ~tried
            if not compact:
                todo = todo & ~done
            n_todo = int(todo.sum())          # one read on the host
        if n_todo:
            sel = todo.nonzero().squeeze(1)
            z, usable = _polish(cs[sel], G, a[sel], lam, nonneg, n_inputs)
            with torch.no_grad():
                p2, g2 = _gap(x2[sel], cs[sel], z, z @ G, lam, nonneg)
                good = usable & (g2 <= tol * p2)
                tried[sel] = True
                acc = sel[good]
                info.n_polished += int(acc.numel())
                gap[acc] = g2[good]
                primal[acc] = p2[good]
                ok[acc] = True
            a = a.index_put((acc,), z[good])
            y = y.index_put((acc,), z[good])
        rel = gap / primal.clamp_min(1e-30)
        if compact:
            n_ok = int(ok.sum())
            if n_ok:
                out = out.index_put((rows[ok],), a[ok])
                iters[rows[ok]] = k
                gap_final = rel[ok].max() if gap_final is None else \
                    torch.maximum(gap_final, rel[ok].max())
                keep = ~ok
                rows, a, y = rows[keep], a[keep], y[keep]
                xs, cs, x2 = xs[keep], cs[keep], x2[keep]
                prev_sign, tried = prev_sign[keep], tried[keep]
            finished = rows.numel() == 0
            last_rel = rel[~ok]
        else:
            iters = torch.where(ok & ~done, k, iters)
            done = done | ok
            finished = bool(done.all())
            last_rel = rel
        if finished or k == n_iter:
            info.converged = finished
            if last_rel.numel():
                worst = last_rel.max()
                gap_final = worst if gap_final is None else \
                    torch.maximum(gap_final, worst)
            break
    if compact:
        if rows.numel():
            out = out.index_put((rows,), a)
        a = out
    if gap_final is not None:
        info.gap = float(gap_final)
    if check:
        info.iterations = torch.clamp(iters, max=info.n_iter)
    return a, info


def ista(x: torch.Tensor, D: torch.Tensor, lam, n_iter: int = 10_000, *,
         tol: float = 1e-4, step: float | None = None, nonneg: bool = False,
         a0: torch.Tensor | None = None, track: bool = False,
         return_info: bool = False):
    """Iterative shrinkage-thresholding: codes ``a`` ``(batch, n_atoms)``.

    Gradient steps of size ``1/L`` on the smooth part, each followed by the
    soft threshold at ``lam / L`` (Daubechies, Defrise & De Mol 2004); the
    objective approaches its optimum as O(1/t) (Beck & Teboulle 2009). The
    iterations stop when every sample's duality gap, relative to its
    objective, is at most ``tol``.
    Chapter "Sparse coding as optimisation".

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, n_inputs)`` inputs.
    D : torch.Tensor
        ``(n_atoms, n_inputs)`` dictionary, atoms as rows (non-zero).
    lam : float or torch.Tensor
        L1 weight, a number >= 0 or a vector of one value per atom.
    n_iter : int
        Iteration budget: a ceiling, since with ``tol > 0`` the solver
        stops when every sample is certified.
    tol : float
        The stopping rule, a duality gap relative to the objective. Every
        ``CHECK_EVERY`` iterations each sample gets the gap between its
        objective ``F(a)`` and the dual value of its scaled residual, a
        lower bound on the optimum ``F*``; ``gap <= tol * F(a)`` certifies
        ``(F(a) - F*) / F* <= tol / (1 - tol)``. A certified sample stops:
        its code no longer changes, and on the CPU it leaves the batch. A
        sample whose support and signs are the same at two consecutive
        checks also gets, once per such support, the exact solve on it,
        kept when its gap certifies it. ``tol=0`` runs the whole budget
        with no checks (e.g. to compare with LISTA layer by layer). With
        ``tol > 0`` the budget can run out first: ``info.converged`` then
        is False and ``info.gap`` says how far the worst sample is.
    step : float, optional
        Step size; default ``1 / (STEP_SAFETY * L)`` with ``L`` from
        :func:`lipschitz` (an estimate from below).
    nonneg : bool
        Constrain the codes to ``a >= 0``.
    a0 : torch.Tensor, optional
        Warm start ``(batch, n_atoms)`` (default zeros).
    track : bool
        Record the mean objective after every iteration (all samples then
        stay in the batch).
    return_info : bool
        Also return a :class:`SolverInfo`: iterations (overall and per
        sample), the largest gap at the stop, whether every sample was
        certified.

    Returns
    -------
    torch.Tensor or tuple
        The codes ``(batch, n_atoms)``, or ``(codes, SolverInfo)`` with
        ``return_info=True``.
    """
    return _solve(x, D, lam, n_iter, tol, step, nonneg, a0, False, track,
                  return_info)


def fista(x: torch.Tensor, D: torch.Tensor, lam, n_iter: int = 10_000, *,
          tol: float = 1e-4, step: float | None = None, nonneg: bool = False,
          a0: torch.Tensor | None = None, track: bool = False,
          return_info: bool = False):
    """FISTA: ISTA with Nesterov momentum; codes ``(batch, n_atoms)``.

    Each step starts from an extrapolated point ``a_t + (mu_{t-1} - 1) /
    mu_t (a_t - a_{t-1})`` with ``mu_{t+1} = (1 + sqrt(1 + 4 mu_t^2)) / 2``
    and ``mu_0 = 1`` (so the first step is ISTA's, from ``a0``).
    Same arguments, stopping rule and result as :func:`ista`; the objective
    gap falls as O(1/t^2) instead of O(1/t) (Beck & Teboulle 2009).
    Chapter "Sparse coding as optimisation".
    """
    return _solve(x, D, lam, n_iter, tol, step, nonneg, a0, True, track,
                  return_info)


def omp(x: torch.Tensor, D: torch.Tensor, n_nonzero: int) -> torch.Tensor:
    """Orthogonal matching pursuit: codes with ``n_nonzero`` atoms each.

    Greedy L0 coding (Pati, Rezaiifar & Krishnaprasad 1993). For every
    sample, ``n_nonzero`` times: pick the atom most correlated with the
    residual (largest ``|(x - a D) d_j^T|``, an atom not yet chosen), then
    refit the coefficients of all chosen atoms by least squares, so the
    residual stays orthogonal to them. The coefficients are not shrunk, as
    they are by the L1 penalty of :func:`fista`. The same rule as
    scikit-learn's ``orthogonal_mp`` (the oracle in the tests); as there,
    the correlations are not divided by the atom norms, so unit-norm atoms
    give the textbook algorithm.

    Chapter "Sparse coding as optimisation".

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, n_inputs)`` inputs.
    D : torch.Tensor
        ``(n_atoms, n_inputs)`` dictionary, atoms as rows (non-zero).
    n_nonzero : int
        Atoms per code, from 1 to ``min(n_atoms, n_inputs)``.

    Returns
    -------
    torch.Tensor
        Codes ``(batch, n_atoms)`` with ``n_nonzero`` chosen atoms per row
        (a chosen coefficient is exactly 0 only when ``x`` already lies in
        the span of the atoms chosen before it). Batched and on the device
        of ``x``; gradients flow to ``x`` and ``D`` through the
        least-squares coefficients (the choice of atoms is discrete).
    """
    _check_xD(x, D)
    n_atoms, n_inputs = D.shape
    n_nonzero = check_int("n_nonzero", n_nonzero, minimum=1)
    if n_nonzero > min(n_atoms, n_inputs):
        raise ValueError(
            f"n_nonzero must be at most min(n_atoms={n_atoms}, n_inputs="
            f"{n_inputs}) = {min(n_atoms, n_inputs)}: more atoms than "
            f"inputs cannot be fitted by least squares; got {n_nonzero}")
    batch = x.shape[0]
    rows = torch.arange(batch, device=x.device)
    G = D @ D.T                      # (n_atoms, n_atoms)
    xDt = x @ D.T                    # (batch, n_atoms)
    corr = xDt
    taken = torch.zeros(batch, n_atoms, dtype=torch.bool, device=x.device)
    support = torch.empty(batch, 0, dtype=torch.long, device=x.device)
    coef = xDt[:, :0]
    for _ in range(n_nonzero):
        score = corr.detach().abs().masked_fill(taken, -1.0)
        j = score.argmax(1)
        taken[rows, j] = True
        support = torch.cat([support, j[:, None]], 1)   # (batch, k)
        G_s = G[support[:, :, None], support[:, None, :]]  # (batch, k, k)
        try:
            coef = torch.linalg.solve(
                G_s, xDt.gather(1, support).unsqueeze(-1)).squeeze(-1)
        except RuntimeError as err:  # torch.linalg.LinAlgError
            raise ValueError(
                "omp: the chosen atoms are linearly dependent (D has "
                "repeated or collinear atoms, or n_nonzero exceeds its "
                "rank)") from err
        # correlations of the new residual: x D^T - coef G[support]
        corr = xDt - (coef.unsqueeze(1) @ G[support]).squeeze(1)
    a = torch.zeros(batch, n_atoms, device=x.device, dtype=coef.dtype)
    return a.scatter(1, support, coef)


class LISTA(torch.nn.Module):
    """Learned ISTA: ``n_layers`` unrolled ISTA steps with learned weights.

    ``a_1 = soft_tau(x W_e^T)``, ``a_{t+1} = soft_tau(x W_e^T + a_t S)``
    with the soft threshold at ``tau``, initialised as ISTA on ``D`` --
    ``W_e = D / L`` (so ``x W_e^T = x D^T / L``), ``S = I - D D^T / L``,
    ``tau = lam / L`` (one threshold per atom, the parameter ``tau``) -- and
    then trained, typically to regress the converged codes of
    :func:`fista` (Gregor & LeCun 2010). With its initial weights,
    ``LISTA(D, lam, T)(x)`` equals ``ista(x, D, lam, T, tol=0)`` (``L``
    includes the factor ``STEP_SAFETY``).
    Input ``(batch, n_inputs)``, output ``(batch, n_atoms)``.
    Chapter "Sparse coding as optimisation".
    """

    def __init__(self, D: torch.Tensor, lam, n_layers: int):
        super().__init__()
        n_layers = check_int("n_layers", n_layers, minimum=1)
        check_tensor("D", D, ndim=2, floating=True, finite=True)
        lam = _check_lam(lam, D.shape[0], like=D)
        D = D.detach()
        L = STEP_SAFETY * lipschitz(D)
        n_atoms = D.shape[0]
        self.n_layers = n_layers
        self.W_e = torch.nn.Parameter(D / L)
        self.S = torch.nn.Parameter(
            torch.eye(n_atoms, device=D.device, dtype=D.dtype) -
            D @ D.T / L)
        tau = torch.full((n_atoms,), 1.0, device=D.device,
                         dtype=D.dtype) * lam / L
        self.tau = torch.nn.Parameter(tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(batch, n_atoms)`` for inputs ``(batch, n_inputs)``."""
        # shape, dtype and device only: no values read on every forward
        check_tensor("x", x)
        if x.ndim != 2 or x.shape[1] != self.W_e.shape[1]:
            raise ValueError(f"x must be (batch, {self.W_e.shape[1]}); got "
                             f"{tuple(x.shape)}")
        check_same({"x": x, "LISTA weights": self.W_e})
        b = x @ self.W_e.T
        tau = self.tau.clamp_min(0)
        a = _shrink(b, tau, False)
        for _ in range(self.n_layers - 1):
            a = _shrink(b + a @ self.S, tau, False)
        return a


# ---------------------------------------------------------------- dictionaries


@torch.no_grad()
def project_atoms_(D: torch.Tensor) -> torch.Tensor:
    """Scale, in place, every atom (row) of norm > 1 back to norm 1.

    The projection onto the constraint set ``||d_j|| <= 1``; atoms inside
    the ball are left alone. Returns ``D``.
    """
    norms = D.norm(dim=1, keepdim=True)
    D.div_(norms.clamp_min(1.0))
    return D


def init_dictionary(x: torch.Tensor, n_atoms: int, *, generator=None,
                    from_data: bool = True) -> torch.Tensor:
    """A starting dictionary ``(n_atoms, n_inputs)`` with unit-norm atoms.

    ``from_data``: randomly chosen inputs (normalised; zero rows replaced by
    noise); otherwise Gaussian noise. Chapter "Sparse coding as optimisation".
    """
    check_tensor("x", x, ndim=2, floating=True)
    n_atoms = check_int("n_atoms", n_atoms, minimum=1)
    if from_data:
        idx = torch.randperm(x.shape[0], generator=generator,
                             device="cpu")[:n_atoms].to(x.device)
        D = x[idx].clone()
        if D.shape[0] < n_atoms:
            extra = torch.randn(n_atoms - D.shape[0], x.shape[1],
                                generator=generator).to(x)
            D = torch.cat([D, extra])
    else:
        D = torch.randn(n_atoms, x.shape[1], generator=generator).to(x)
    norms = D.norm(dim=1, keepdim=True)
    bad = norms.squeeze(1) < 1e-8
    if bad.any():
        D[bad] = torch.randn(int(bad.sum()), x.shape[1],
                             generator=generator).to(x)
        norms = D.norm(dim=1, keepdim=True)
    return D / norms


@dataclass
class DictionaryHistory:
    """Per-epoch record of :func:`learn_dictionary`.

    ``objective``: mean objective over the epoch's batches (codes from
    FISTA, before the dictionary update); ``seconds``: wall-clock training
    time since the start (callbacks excluded); ``max_atom_norm``,
    ``mean_code_l1``.
    """

    objective: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    max_atom_norm: list = field(default_factory=list)
    mean_code_l1: list = field(default_factory=list)


def _lipschitz_exact(D):
    """``||D||_2^2`` from the eigenvalues of the smaller Gram matrix.

    Exact (to rounding) and cheap when one side of ``D`` is small, as in
    dictionary learning (``n_inputs`` of 64 or so): the learner needs it
    for every mini-batch, after every dictionary update.
    """
    G = D @ D.T if D.shape[0] <= D.shape[1] else D.T @ D
    return float(torch.linalg.eigvalsh(G)[-1])


@torch.no_grad()
def _update_atoms_(D, A, B, project):
    """One block-coordinate pass over the atoms, in place.

    ``d_j <- d_j + (B_j - A_j D) / A_jj`` then, with ``project``, the
    projection onto the unit ball -- atom by atom, each step seeing the
    atoms updated before it. Atoms with ``A_jj = 0`` (never used) are left
    alone; written without reading values on the host, so a GPU is never
    waited for.
    """
    diag = A.diagonal()
    used = diag > 1e-12
    inv = torch.where(used, 1.0 / diag.clamp_min(1e-12), 0.0)
    for j in range(D.shape[0]):
        dj = D[j] + (B[j] - A[j] @ D) * inv[j]
        if project:
            dj = dj / dj.norm().clamp_min(1.0)
        D[j] = torch.where(used[j], dj, D[j])


def learn_dictionary(x: torch.Tensor, n_atoms: int, lam: float, *,
                     n_epochs: int = 10, batch_size: int = 256,
                     D0: torch.Tensor | None = None, project: bool = True,
                     n_iter: int = 100, tol: float = 1e-4,
                     forget="auto", nonneg: bool = False,
                     generator=None,
                     progress_bar: bool | None = None, callback=None):
    """Learn a dictionary by alternating sparse coding and atom updates.

    For each mini-batch: codes by warm-started :func:`fista`; then the
    sufficient statistics ``A = sum a^T a`` and ``B = sum a^T x`` are updated
    (older batches discounted by a factor, see ``forget``) and every atom
    takes one block coordinate step ``d_j <- d_j + (B_j - A_j D) / A_jj``
    followed by the projection onto the unit ball (Mairal, Bach, Ponce &
    Sapiro 2009). ``project=False`` drops the projection -- the chapter's
    demonstration of why the constraint is needed.
    Chapter "Sparse coding as optimisation".

    Parameters
    ----------
    x : torch.Tensor
        ``(n_samples, n_inputs)`` training inputs.
    n_atoms : int
        Dictionary size.
    lam : float
        L1 weight of the codes.
    n_epochs : int
        Passes over ``x``.
    batch_size : int
        Mini-batch size.
    D0 : torch.Tensor, optional
        Starting dictionary ``(n_atoms, n_inputs)`` (default
        :func:`init_dictionary`).
    project : bool
        Keep every atom in the unit ball.
    n_iter : int
        FISTA's iteration budget per mini-batch.
    tol : float
        FISTA's stopping rule per mini-batch, a relative duality gap (see
        :func:`ista`).
    forget : str, float or callable
        Weight of the old statistics at each batch. ``"auto"`` (the
        default) follows :func:`forget_factor` with ``nu = 10``: it
        forgets the early batches quickly and then tends to 1, so the
        statistics average ever more batches and the dictionary settles. A
        number in [0, 1) is a fixed factor, which follows the latest
        batches. A callable ``forget(step) -> float`` in [0, 1] sets any
        other schedule, e.g. ``lambda t: forget_factor(t, nu=1)``.
    nonneg : bool
        Constrain the codes to be non-negative (parts-based dictionaries,
        as for digits).
    generator : torch.Generator, optional
        Random source of the initial dictionary and the batch order.
    progress_bar : bool, optional
        Show a progress bar over the epochs (default: the scale's setting).
    callback : callable, optional
        ``callback(epoch, D)`` after every epoch; returning True stops the
        training. Its time is left out of ``history.seconds``.

    Returns
    -------
    tuple
        ``(D, history)``: the dictionary ``(n_atoms, n_inputs)`` and a
        :class:`DictionaryHistory`.
    """
    import time

    # Every check here, once: the loop below calls the unchecked solver.
    check_tensor("x", x, ndim=2, floating=True, finite=True)
    n_atoms = check_int("n_atoms", n_atoms, minimum=1)
    lam = _check_lam(lam, n_atoms, like=x)
    n_epochs = check_int("n_epochs", n_epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    n_iter = check_int("n_iter", n_iter, minimum=1)
    tol = check_real("tol", tol, minimum=0)
    if isinstance(forget, str):
        check_choice("forget", forget, ("auto",))
        schedule = forget_factor
    elif callable(forget):
        schedule = forget
    else:
        try:
            fixed = check_real("forget", forget, minimum=0, maximum=1,
                               max_open=True)
        except TypeError:
            raise TypeError(f'forget must be "auto", a number in [0, 1) or '
                            f'a callable step -> factor; got {forget!r}') \
                from None
        schedule = lambda step: fixed  # noqa: E731
    if D0 is None:
        D = init_dictionary(x, n_atoms, generator=generator)
    else:
        check_tensor("D0", D0, ndim=2)
        check_same({"x": x, "D0": D0})
        D = D0.detach().clone()
    if D.shape != (n_atoms, x.shape[1]):
        raise ValueError(f"D0 must be ({n_atoms}, {x.shape[1]}); got "
                         f"{tuple(D.shape)}")
    _check_xD(x, D)
    n = x.shape[0]
    A = torch.zeros(n_atoms, n_atoms, device=x.device, dtype=x.dtype)
    B = torch.zeros(n_atoms, x.shape[1], device=x.device, dtype=x.dtype)
    codes = torch.zeros(n, n_atoms, device=x.device, dtype=x.dtype)
    hist = DictionaryHistory()
    start = time.perf_counter()
    paused = 0.0  # time spent in the callback, left out of the record
    step = 0  # mini-batches seen, for the forgetting schedule
    for epoch in progress(range(1, n_epochs + 1), "dictionary epochs",
                          enabled=progress_bar):
        perm = torch.randperm(n, generator=generator).to(x.device)
        objs, l1s = [], []
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb = x[idx]
            with torch.no_grad():
                # fista(xb, D, lam, n_iter, tol=tol, a0=codes[idx],
                # nonneg=nonneg) without its per-call checks
                step_size = 1.0 / (STEP_SAFETY * _lipschitz_exact(D))
                a, _ = _iterate(xb, D, lam, n_iter, tol, step_size, nonneg,
                                codes[idx], True, False)
                codes[idx] = a
                objs.append(float(_objective(xb, D, a, lam).mean()))
                l1s.append(float(a.abs().sum(1).mean()))
                phi = check_real(f"forget({step})", schedule(step),
                                 minimum=0, maximum=1)
                step += 1
                A.mul_(phi).add_(a.T @ a)
                B.mul_(phi).add_(a.T @ xb)
                _update_atoms_(D, A, B, project)
        hist.objective.append(sum(objs) / len(objs))
        hist.seconds.append(time.perf_counter() - start - paused)
        hist.max_atom_norm.append(float(D.norm(dim=1).max()))
        hist.mean_code_l1.append(sum(l1s) / len(l1s))
        if callback is not None:
            t_cb = time.perf_counter()
            stop = callback(epoch, D)
            paused += time.perf_counter() - t_cb
            if stop:
                break
    return D, hist


def forget_factor(step: int, nu: float = 10.0) -> float:
    """Weight ``phi_t`` of the old statistics at mini-batch ``step``.

    ``(t / (t + 1))^nu`` with ``t = step`` (0, 1, ...): Mairal, Bach, Ponce
    & Sapiro's (2010) scaling of the past, ``(1 - 1/t)^nu`` for their
    batches counted from 1. A batch seen at a fraction ``f`` of the way
    through training keeps a weight of about ``f^nu``, so the statistics
    remember about the last ``1/(nu + 1)`` of the batches: the codes
    computed with the poor early dictionaries fade quickly, while the
    memory still grows without bound and the factor tends to 1. ``nu = 0``
    weighs all the batches seen alike; ``nu = 1`` weighs batch ``s`` of
    ``t`` by ``s / t``, as scikit-learn's ``MiniBatchDictionaryLearning``
    does at first. Chapter "Sparse coding as optimisation".
    """
    step = check_int("step", step, minimum=0)
    nu = check_real("nu", nu, minimum=0)
    return (step / (step + 1)) ** nu


def atom_recovery(D_learned: torch.Tensor, D_true: torch.Tensor) -> float:
    """Mean over true atoms of the best ``|cosine|`` with any learned atom.

    1 when every true atom is found (up to sign and scale).
    Chapter "Sparse coding as optimisation".
    """
    check_tensor("D_learned", D_learned, floating=True)
    check_tensor("D_true", D_true, floating=True)
    check_same({"D_learned": D_learned, "D_true": D_true})
    if D_learned.ndim != 2 or D_true.ndim != 2 or \
            D_learned.shape[1] != D_true.shape[1]:
        raise ValueError(f"dictionaries must be (n_atoms, n_inputs) with the"
                         f" same n_inputs; got {tuple(D_learned.shape)} and "
                         f"{tuple(D_true.shape)}")
    a = D_learned / D_learned.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = D_true / D_true.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((b @ a.T).abs().max(dim=1).values.mean())
