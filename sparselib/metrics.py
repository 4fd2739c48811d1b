"""Sparsity metrics for activations ``h`` of shape ``(batch, n_units)``.

"Sparse" means different things, and the chapters keep them apart:

* **L0** -- active units per input, ``|h| > eps`` (:func:`l0`); its mean over
  inputs is the *average activity* that the source of the classifier
  chapter ("Sparse coding: a simple exploration") calls AVR (:func:`avr`).
* **activity ratio** -- the same as a fraction of the units
  (:func:`activity_ratio`).
* **population sparsity** -- how few units respond to *one input*, and
  **lifetime sparsity** -- how few inputs drive *one unit*: the Treves-Rolls
  measure ``(1 - (mean r)^2 / mean r^2) / (1 - 1/N)`` taken across units or
  across inputs (Willmore & Tolhurst 2001; Vinje & Gallant 2000), in [0, 1],
  1 for a single active unit (input), 0 for uniform activity.
* **Hoyer sparsity** -- ``(sqrt(N) - |h|_1 / |h|_2) / (sqrt(N) - 1)``
  (Hoyer 2004), in [0, 1].
* **dead units** -- units that never fire over a set of inputs.
* **unit activity entropy** -- the binary entropy (bits) of each unit's firing
  probability (its duty cycle); a layer whose units all fire equally often has
  the largest total entropy (Ahmad & Scheinkman 2019, boosting).

Every measure above takes the whole matrix ``h``. :func:`activity_stats`
computes the same numbers for a layer too large to hold over a whole data
set (10,000 inputs x 39,200 units is 1.6 GB in float32): it streams the
inputs in batches and keeps per-input values and per-unit moment sums, and
returns them as an :class:`ActivityStats`. Both paths share one
Treves-Rolls formula, written on the moments ``mean r`` and ``mean r^2``.

:func:`no_loss` is the book's one rule for "without loss of accuracy"
(the notation page, "Evidence conventions"): it compares the test
accuracies of two settings over several seeds and returns a
:class:`NoLoss`.

Introduced in the chapter "Sparse coding as optimisation"; used in the
autoencoder and classifier chapters (the streaming statistics in "Sparse
activity in classifiers").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .utils import check_int, check_probability, check_real, check_tensor

__all__ = [
    "l0",
    "avr",
    "activity_ratio",
    "population_sparsity",
    "lifetime_sparsity",
    "hoyer_sparsity",
    "duty_cycle",
    "dead_units",
    "unit_entropy",
    "ActivityStats",
    "activity_stats",
    "NoLoss",
    "no_loss",
    "remaining_error_reduction",
]


def _check_h(h, name="h"):
    check_tensor(name, h, ndim=2)
    if h.shape[0] == 0 or h.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty; got shape "
                         f"{tuple(h.shape)}")
    if torch.isnan(h).any():
        raise ValueError(f"{name} contains NaN")
    return h


def _check_eps(eps):
    return check_real("eps", eps, minimum=0, allow_inf=True)


def _active(h, eps):
    return h.abs() > _check_eps(eps)


def l0(h: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Number of active units (``|h| > eps``) in each input: ``(batch,)``.

    Chapter "Sparse autoencoders".
    """
    return _active(_check_h(h), eps).sum(dim=1).to(torch.float32)


def avr(h: torch.Tensor, eps: float = 0.0) -> float:
    """Average activity: mean number of active units per input (AVR).

    Chapter "Sparse coding as optimisation"; the classifier chapter
    compares it with the AVR of its source, "Sparse coding: a simple
    exploration".
    """
    return float(l0(h, eps).mean())


def activity_ratio(h: torch.Tensor, eps: float = 0.0) -> float:
    """Fraction of (input, unit) pairs that are active: ``avr / n_units``.

    Chapter "Sparse autoencoders".
    """
    return float(_active(_check_h(h), eps).float().mean())


def _treves_rolls_from_moments(m1: torch.Tensor, m2: torch.Tensor,
                               n: int) -> torch.Tensor:
    # The one Treves-Rolls formula: m1 = mean r, m2 = mean r^2 over n >= 2
    # non-negative responses (float64); NaN where all responses are zero.
    if n < 2:
        raise ValueError(f"Treves-Rolls sparsity needs at least 2 values; "
                         f"got {n}")
    ratio = torch.where(m2 > 0, m1 ** 2 / m2.clamp_min(1e-300),
                        torch.full_like(m2, float("nan")))
    return (1 - ratio) / (1 - 1 / n)


def _treves_rolls(r: torch.Tensor, dim: int) -> torch.Tensor:
    r = r.abs().to(torch.float64)
    m1 = r.mean(dim=dim)
    m2 = (r ** 2).mean(dim=dim)
    return _treves_rolls_from_moments(m1, m2, r.shape[dim]).to(torch.float32)


def population_sparsity(h: torch.Tensor) -> torch.Tensor:
    """Treves-Rolls sparsity of each input's response across units.

    Returns ``(batch,)``: 1 when one unit alone responds, 0 when all respond
    equally; NaN for an input to which no unit responds. Uses ``|h|``.
    Chapter "Sparse autoencoders".
    """
    return _treves_rolls(_check_h(h), dim=1)


def lifetime_sparsity(h: torch.Tensor) -> torch.Tensor:
    """Treves-Rolls sparsity of each unit's response across inputs.

    Returns ``(n_units,)``: 1 when a unit responds to one input alone, 0 when
    it responds equally to all; NaN for a unit that never responds (a dead
    unit). Uses ``|h|``. Chapter "Sparse autoencoders".
    """
    return _treves_rolls(_check_h(h), dim=0)


def hoyer_sparsity(h: torch.Tensor) -> torch.Tensor:
    """Hoyer's sparsity of each input ``(sqrt(N) - L1/L2) / (sqrt(N) - 1)``.

    Returns ``(batch,)`` in [0, 1]: 1 for one non-zero unit, 0 for equal
    magnitudes; NaN for an all-zero row. Needs ``N >= 2``.
    """
    h = _check_h(h).to(torch.float64)
    n = h.shape[1]
    if n < 2:
        raise ValueError(f"Hoyer sparsity needs n_units >= 2; got {n}")
    l1 = h.abs().sum(dim=1)
    l2 = h.norm(dim=1)
    ratio = torch.where(l2 > 0, l1 / l2.clamp_min(1e-300),
                        torch.full_like(l2, float("nan")))
    return ((math.sqrt(n) - ratio) / (math.sqrt(n) - 1)).to(torch.float32)


def duty_cycle(h: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Fraction of inputs on which each unit is active: ``(n_units,)``.

    Chapter "Sparse autoencoders".
    """
    return _active(_check_h(h), eps).float().mean(dim=0)


def dead_units(h: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Boolean mask ``(n_units,)`` of units never active over the batch.

    Chapter "Sparse autoencoders".
    """
    return ~_active(_check_h(h), eps).any(dim=0)


def unit_entropy(h: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Binary entropy in bits of each unit's duty cycle: ``(n_units,)``.

    ``H(p) = -p log2 p - (1 - p) log2 (1 - p)`` with ``p`` the unit's duty
    cycle; 0 for units that never or always fire, 1 bit for a unit active on
    half the inputs. Sum it for a layer's total. Chapter "k-winners-take-all
    and binary SDR embeddings".
    """
    p = duty_cycle(h, eps).to(torch.float64)
    ent = -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)) / math.log(2)
    return ent.to(torch.float32)


@dataclass
class ActivityStats:
    """What :func:`activity_stats` measured over a set of inputs.

    Chapter "Sparse activity in classifiers".

    Attributes
    ----------
    l0 : torch.Tensor
        ``(n_inputs,)``: active units per input, as :func:`l0`.
    population : torch.Tensor
        ``(n_inputs,)``: Treves-Rolls sparsity of each input's response, as
        :func:`population_sparsity`.
    duty : torch.Tensor
        ``(n_units,)``: share of inputs on which each unit is active, as
        :func:`duty_cycle`.
    lifetime : torch.Tensor
        ``(n_units,)``: Treves-Rolls sparsity of each unit's responses (NaN
        for dead units), as :func:`lifetime_sparsity`.
    mean : torch.Tensor
        ``(n_units,)``: each unit's mean absolute activity.
    """

    l0: torch.Tensor
    population: torch.Tensor
    duty: torch.Tensor
    lifetime: torch.Tensor
    mean: torch.Tensor

    @property
    def n_units(self) -> int:
        """Number of units."""
        return self.duty.shape[0]

    @property
    def avr(self) -> float:
        """Mean active units per input (the AVR of the classifier chapter)."""
        return float(self.l0.mean())

    @property
    def activity_ratio(self) -> float:
        """AVR as a share of the units."""
        return self.avr / self.n_units

    @property
    def dead(self) -> torch.Tensor:
        """Mask of units active on no input."""
        return self.duty == 0

    @property
    def dead_share(self) -> float:
        """Share of units active on no input."""
        return float(self.dead.float().mean())

    def summary(self) -> dict:
        """The headline numbers as floats.

        Returns
        -------
        dict
            ``"avr"``, ``"activity_ratio"``, ``"dead_share"``, ``"l0_max"``,
            ``"l0_p99"`` (the 99th percentile of L0), ``"population"`` and
            ``"lifetime"`` (means over inputs and over live units).
        """
        return {"avr": self.avr, "activity_ratio": self.activity_ratio,
                "dead_share": self.dead_share,
                "l0_max": float(self.l0.max()),
                "l0_p99": float(self.l0.quantile(0.99)),
                "population": float(self.population.nanmean()),
                "lifetime": float(self.lifetime.nanmean())}


@torch.no_grad()
def activity_stats(units, x: torch.Tensor, batch_size: int = 500,
                   eps: float = 0.0) -> ActivityStats:
    """Sparsity of ``units(x)`` ``(n, n_units)``, computed batch by batch.

    Equal to :func:`l0`, :func:`population_sparsity`, :func:`duty_cycle`
    and :func:`lifetime_sparsity` on the whole ``(n, n_units)`` matrix,
    without ever holding it: per-unit sums of ``1[|h| > eps]``, ``|h|`` and
    ``h^2`` are accumulated in float64, and the lifetime sparsity is the
    same Treves-Rolls formula on their means.
    Chapter "Sparse activity in classifiers".

    Parameters
    ----------
    units : callable
        Maps a batch of ``x`` to activations ``(batch, n_units)``, e.g. a
        model's ``units`` method, in eval mode.
    x : torch.Tensor
        The inputs, at least 2 along the first dimension.
    batch_size : int, default 500
        Inputs per call of ``units``.
    eps : float, default 0
        A unit is active where ``|h| > eps``.

    Returns
    -------
    ActivityStats
        Per-input and per-unit values, on the CPU.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    eps = _check_eps(eps)
    check_tensor("x", x)
    if x.ndim < 1 or x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 inputs along its first "
                         f"dimension; got shape {tuple(x.shape)}")
    l0s, pop = [], []
    count = s1 = s2 = None
    for i in range(0, x.shape[0], batch_size):
        h = units(x[i:i + batch_size])
        if not isinstance(h, torch.Tensor) or h.ndim != 2:
            raise ValueError("units(x) must return (batch, n_units); got "
                             f"{getattr(h, 'shape', type(h).__name__)}")
        if torch.isnan(h).any():
            raise ValueError("units(x) returned NaN")
        a = h.abs().to(torch.float64)
        active = a > eps
        l0s.append(active.sum(dim=1).float().cpu())
        pop.append(population_sparsity(h).cpu())
        if count is None:
            count = torch.zeros(h.shape[1], dtype=torch.float64,
                                device=h.device)
            s1, s2 = torch.zeros_like(count), torch.zeros_like(count)
        count += active.sum(dim=0)
        s1 += a.sum(dim=0)
        s2 += (a * a).sum(dim=0)
    n = x.shape[0]
    m1 = s1 / n
    life = _treves_rolls_from_moments(m1, s2 / n, n)
    return ActivityStats(l0=torch.cat(l0s), population=torch.cat(pop),
                         duty=(count / n).float().cpu(),
                         lifetime=life.float().cpu(), mean=m1.float().cpu())


@dataclass(frozen=True)
class NoLoss:
    """The verdict of :func:`no_loss` and the numbers behind it.

    Chapter "Sparse activity in classifiers".

    Attributes
    ----------
    baseline_mean, baseline_sd : float
        Mean and sample standard deviation (``n - 1`` in the denominator)
        of the baseline's test accuracies over its seeds.
    baseline_se : float
        Binomial standard error of the baseline's mean accuracy,
        ``sqrt(p (1 - p) / n_test)``.
    other_mean, other_sd : float
        The same for the setting compared with the baseline.
    margin : float
        ``max(baseline_sd, baseline_se)``: how far below the baseline's
        mean the other mean may lie.
    difference : float
        ``other_mean - baseline_mean`` (negative: the other is worse).
    holds : bool
        ``other_mean >= baseline_mean - margin``: the other setting loses
        no accuracy against the baseline.
    n_test : int
        Test examples behind each accuracy.
    """

    baseline_mean: float
    baseline_sd: float
    baseline_se: float
    other_mean: float
    other_sd: float
    margin: float
    difference: float
    holds: bool
    n_test: int


def _accuracies(name, values):
    """``values`` as a list of floats in [0, 1], at least 3 of them."""
    if isinstance(values, torch.Tensor):
        if values.ndim != 1:
            raise ValueError(f"{name} must be 1-d, got shape "
                             f"{tuple(values.shape)}")
        values = values.tolist()
    elif hasattr(values, "ndim") and hasattr(values, "tolist"):
        if values.ndim != 1:
            raise ValueError(f"{name} must be 1-d, got shape "
                             f"{tuple(values.shape)}")
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") \
            or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of accuracies (one per "
                        f"seed), got {type(values).__name__}")
    values = [check_probability(f"{name}[{i}]", v)
              for i, v in enumerate(values)]
    if len(values) < 3:
        raise ValueError(f"{name} must hold at least 3 accuracies (one per "
                         f"seed), got {len(values)}")
    return values


def _mean_sd(values):
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def no_loss(acc_baseline, acc_other, n_test: int) -> NoLoss:
    """Does a setting lose no test accuracy against a baseline?

    The book's one rule for "without loss of accuracy": over at least 3
    seeds each, the other setting B loses no accuracy against the baseline
    A when ``mean_B >= mean_A - max(sd_A, se_A)``, with ``sd_A`` the
    seed-to-seed sample standard deviation of A's accuracies and
    ``se_A = sqrt(p_A (1 - p_A) / n_test)`` the binomial standard error of
    A's mean accuracy ``p_A``. The margin is whichever is larger: the
    spread between seeds, or the sampling noise of a test set of this size.
    Chapter "Sparse activity in classifiers".

    Parameters
    ----------
    acc_baseline : sequence of float
        Test accuracies of the baseline A, one per seed, in [0, 1]
        (a list, tuple, 1-d array or 1-d tensor); at least 3.
    acc_other : sequence of float
        Test accuracies of the setting B, one per seed; at least 3.
    n_test : int
        Number of test examples behind each accuracy, >= 1.

    Returns
    -------
    NoLoss
        Means, standard deviations, the margin, the difference
        ``mean_B - mean_A`` and the verdict ``holds``.

    Raises
    ------
    TypeError
        If an accuracy list is not a sequence, an accuracy is not a real
        number, or ``n_test`` is not an integer.
    ValueError
        If an accuracy lies outside [0, 1] or is NaN, a list holds fewer
        than 3 accuracies, or ``n_test < 1``.
    """
    a = _accuracies("acc_baseline", acc_baseline)
    b = _accuracies("acc_other", acc_other)
    n_test = check_int("n_test", n_test, minimum=1)
    mean_a, sd_a = _mean_sd(a)
    mean_b, sd_b = _mean_sd(b)
    se_a = math.sqrt(mean_a * (1 - mean_a) / n_test)
    margin = max(sd_a, se_a)
    return NoLoss(baseline_mean=mean_a, baseline_sd=sd_a, baseline_se=se_a,
                  other_mean=mean_b, other_sd=sd_b, margin=margin,
                  difference=mean_b - mean_a,
                  holds=bool(mean_b >= mean_a - margin), n_test=n_test)


def _rer_accuracies(name, values):
    """``values`` as a float, or a list of floats, each in [0, 1]."""
    if isinstance(values, (torch.Tensor, np.ndarray)) and values.ndim == 0:
        return check_probability(name, values)
    if isinstance(values, (torch.Tensor, np.ndarray)):
        if values.ndim != 1:
            raise ValueError(f"{name} must be a number or 1-d, got shape "
                             f"{tuple(values.shape)}")
        values = values.tolist()
    if isinstance(values, (list, tuple)):
        out = [check_probability(f"{name}[{i}]", v)
               for i, v in enumerate(values)]
        if not out:
            raise ValueError(f"{name} must hold at least one accuracy, got "
                             f"an empty sequence")
        return out
    return check_probability(name, values)


def remaining_error_reduction(acc_base, acc_new, *,
                              per_seed: bool = False):
    """Share of the baseline's errors that the new setting removes (RER).
    Chapter "Dendrites, pruning and what sparsity costs".

    With errors ``E = 1 - accuracy``, ``RER = (E_base - E_new) / E_base``:
    0 when nothing changes, 1 when every error is gone, negative when the
    new setting is worse. It puts gains near the top of the scale in
    proportion: 99.26 % -> 99.42 % removes 21.6 % of the errors that were
    left, 97.4 % -> 97.7 % only 11.5 %, although the second step is the
    larger one in points.

    Parameters
    ----------
    acc_base, acc_new : float or sequence of float
        Accuracies in [0, 1] (not percent): two numbers, or two sequences
        of equal length (a list, tuple, 1-d array or 1-d tensor), one
        accuracy per seed, paired by position.
    per_seed : bool, default False
        With sequences: return the RER of each pair instead of the RER of
        the mean errors.

    Returns
    -------
    float or list of float
        For numbers, their RER. For sequences, the RER of the mean errors
        (equal to the RER of the mean accuracies, as papers report it),
        or with ``per_seed=True`` a list with the RER of each pair.

    Raises
    ------
    TypeError
        If an accuracy is not a real number, one argument is a number and
        the other a sequence, or ``per_seed`` is not a bool.
    ValueError
        If an accuracy lies outside [0, 1] or is NaN, a sequence is empty
        or not 1-d, the sequences differ in length, or a baseline error
        is 0 (``acc_base`` of 1: no error left to reduce).
    """
    if not isinstance(per_seed, bool):
        raise TypeError(f"per_seed must be a bool, got "
                        f"{type(per_seed).__name__}")
    base = _rer_accuracies("acc_base", acc_base)
    new = _rer_accuracies("acc_new", acc_new)
    if isinstance(base, list) != isinstance(new, list):
        raise TypeError("acc_base and acc_new must both be numbers or both "
                        "sequences (one accuracy per seed); got "
                        f"{type(acc_base).__name__} and "
                        f"{type(acc_new).__name__}")

    def rer(a, b, what):
        e_base, e_new = 1.0 - a, 1.0 - b
        if e_base == 0:
            raise ValueError(f"{what} is 1 (no errors): the remaining "
                             f"error reduction is undefined")
        return (e_base - e_new) / e_base

    if not isinstance(base, list):
        return rer(base, new, "acc_base")
    if len(base) != len(new):
        raise ValueError(f"acc_base and acc_new must hold one accuracy per "
                         f"seed each, paired; got {len(base)} and "
                         f"{len(new)}")
    if per_seed:
        return [rer(a, b, f"acc_base[{i}]")
                for i, (a, b) in enumerate(zip(base, new))]
    n = len(base)
    return rer(math.fsum(base) / n, math.fsum(new) / n,
               "the mean of acc_base")
