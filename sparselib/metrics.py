"""Sparsity metrics for activations ``h`` of shape ``(batch, n_units)``.

"Sparse" means different things, and the chapters keep them apart:

* **L0** -- active units per input, ``|h| > eps`` (:func:`l0`); its mean over
  inputs is the *average activity* that seed 001 calls AVR (:func:`avr`).
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

Introduced in chapter 1 ("Neural codes"); used in the classifier and
autoencoder chapters.
"""

from __future__ import annotations

import math

import torch

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
]


def _check_h(h, name="h"):
    if not isinstance(h, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got "
                        f"{type(h).__name__}")
    if h.ndim != 2:
        raise ValueError(f"{name} must be 2-d (batch, n_units); got shape "
                         f"{tuple(h.shape)}")
    if h.shape[0] == 0 or h.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty; got shape "
                         f"{tuple(h.shape)}")
    if torch.isnan(h).any():
        raise ValueError(f"{name} contains NaN")
    return h


def _check_eps(eps):
    if not isinstance(eps, (int, float)) or eps < 0 or math.isnan(eps):
        raise ValueError(f"eps must be a number >= 0; got {eps!r}")
    return float(eps)


def _active(h, eps):
    return h.abs() > _check_eps(eps)


def l0(h: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Number of active units (``|h| > eps``) in each input: ``(batch,)``.

    Chapter 1.
    """
    return _active(_check_h(h), eps).sum(dim=1).to(torch.float32)


def avr(h: torch.Tensor, eps: float = 0.0) -> float:
    """Average activity: mean number of active units per input (seed 001).

    Chapter 1; the classifier chapter compares it with seed 001's AVR.
    """
    return float(l0(h, eps).mean())


def activity_ratio(h: torch.Tensor, eps: float = 0.0) -> float:
    """Fraction of (input, unit) pairs that are active: ``avr / n_units``.

    Chapter 1.
    """
    return float(_active(_check_h(h), eps).float().mean())


def _treves_rolls(r: torch.Tensor, dim: int) -> torch.Tensor:
    # r >= 0 expected; returns NaN where all responses are zero.
    r = r.abs().to(torch.float64)
    n = r.shape[dim]
    if n < 2:
        raise ValueError("Treves-Rolls sparsity needs at least 2 values "
                         f"along dim {dim}; got {n}")
    m1 = r.mean(dim=dim)
    m2 = (r ** 2).mean(dim=dim)
    ratio = torch.where(m2 > 0, m1 ** 2 / m2.clamp_min(1e-300),
                        torch.full_like(m2, float("nan")))
    return ((1 - ratio) / (1 - 1 / n)).to(torch.float32)


def population_sparsity(h: torch.Tensor) -> torch.Tensor:
    """Treves-Rolls sparsity of each input's response across units: ``(batch,)``.

    1 when one unit alone responds, 0 when all respond equally; NaN for an
    input to which no unit responds. Uses ``|h|``. Chapter 1.
    """
    return _treves_rolls(_check_h(h), dim=1)


def lifetime_sparsity(h: torch.Tensor) -> torch.Tensor:
    """Treves-Rolls sparsity of each unit's response across inputs: ``(n_units,)``.

    1 when a unit responds to one input alone, 0 when it responds equally to
    all; NaN for a unit that never responds (a dead unit). Chapter 1.
    """
    return _treves_rolls(_check_h(h), dim=0)


def hoyer_sparsity(h: torch.Tensor) -> torch.Tensor:
    """Hoyer's sparsity of each input ``(sqrt(N) - L1/L2) / (sqrt(N) - 1)``.

    Returns ``(batch,)`` in [0, 1]: 1 for one non-zero unit, 0 for equal
    magnitudes; NaN for an all-zero row. Needs ``N >= 2``. Chapter 1.
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

    Chapter 1.
    """
    return _active(_check_h(h), eps).float().mean(dim=0)


def dead_units(h: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Boolean mask ``(n_units,)`` of units never active over the batch.

    Chapter 1.
    """
    return ~_active(_check_h(h), eps).any(dim=0)


def unit_entropy(h: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Binary entropy in bits of each unit's duty cycle: ``(n_units,)``.

    ``H(p) = -p log2 p - (1 - p) log2 (1 - p)`` with ``p`` the unit's duty
    cycle; 0 for units that never or always fire, 1 bit for a unit active on
    half the inputs. Sum it for a layer's total. Chapter 1.
    """
    p = duty_cycle(h, eps).to(torch.float64)
    ent = -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)) / math.log(2)
    return ent.to(torch.float32)
