"""Reconstruction losses and sparsity penalties, as pure functions.

Shapes: ``x`` and ``x_hat`` are ``(batch, ...)``; ``h`` hidden activations
``(batch, n_units)``.

* :func:`reconstruction_loss` -- squared error, either the mean over every
  element (``"mse"``, :func:`torch.nn.functional.mse_loss`), UFLDL's
  ``1/2 ||x_hat - x||^2`` per example averaged over the batch
  (``"half_sum"``), or ``||x_hat - x||^2`` per example averaged over the
  batch (``"sum"``, the autoencoder loss of the blog post "Sparse coding: a
  simple exploration").
* :func:`normalized_mse` -- ``||x_hat - x||^2 / ||x - mean(x)||^2``, the
  error relative to predicting the batch mean (Gao et al. 2024): 1 is no
  better than the mean image, 0 is perfect.
* :func:`l1_activity` -- ``mean over the batch of sum_j |h_j|``, the L1
  activity penalty (used in the autoencoder and classifier chapters).
* :func:`kl_bernoulli` and :func:`kl_sparsity` -- UFLDL's penalty
  ``sum_j KL(rho || rho_hat_j)`` between a target mean activation ``rho``
  and each unit's mean activation ``rho_hat_j`` over the batch (Ng, CS294A
  lecture notes).
* :func:`weight_decay` -- ``1/2 sum W^2`` over the weight matrices (not the
  biases) of a module, UFLDL's ``lambda`` term without ``lambda``.

Introduced in the chapter "Sparse autoencoders".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .utils import check_choice, check_probability, check_same, check_tensor

__all__ = ["reconstruction_loss", "normalized_mse", "l1_activity",
           "kl_bernoulli", "kl_sparsity", "weight_decay"]

#: Mean activations are kept in ``[KL_EPS, 1 - KL_EPS]`` inside the KL
#: penalty so that a saturated float32 sigmoid (exactly 0 or 1) gives a
#: large finite penalty instead of ``inf``. Values outside [0, 1] are an
#: error, not clipped.
KL_EPS = 1e-7


#: The kinds of :func:`reconstruction_loss`.
RECON_KINDS = ("mse", "half_sum", "sum")


def _check_pair(x_hat, x):
    # shapes, dtypes and devices only: cheap enough for every training step
    check_tensor("x_hat", x_hat)
    check_tensor("x", x)
    check_same({"x_hat": x_hat, "x": x})
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat has shape {tuple(x_hat.shape)} but x has "
                         f"{tuple(x.shape)}: they must match")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x must have a non-empty batch axis; got shape "
                         f"{tuple(x.shape)}")


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor,
                        kind: str = "mse") -> torch.Tensor:
    """Squared reconstruction error of ``x_hat`` against ``x`` (same shape).

    ``kind="mse"``: mean over all elements. ``kind="half_sum"``:
    ``1/2 sum of squares`` over each example's features, averaged over the
    batch (UFLDL's convention; ``n_features / 2`` times the MSE).
    ``kind="sum"``: the sum of squares over each example's features,
    averaged over the batch (``n_features`` times the MSE).
    """
    _check_pair(x_hat, x)
    check_choice("kind", kind, RECON_KINDS)
    sq = (x_hat - x).pow(2)
    if kind == "mse":
        return sq.mean()
    if kind == "half_sum":
        return 0.5 * sq.flatten(1).sum(dim=1).mean()
    return sq.flatten(1).sum(dim=1).mean()


def normalized_mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum ||x_hat - x||^2 / sum ||x - mean(x)||^2`` over the batch.

    ``mean(x)`` is the mean example of the batch. Needs at least two
    different examples (checked: this reads a value, so training loops
    use ``_normalized_mse``). (Gao et al. 2024.)
    Chapter "Sparse autoencoders".
    """
    _check_pair(x_hat, x)
    den = (x - x.mean(dim=0, keepdim=True)).pow(2).sum()
    if den == 0:
        raise ValueError("normalized_mse needs a batch whose examples are not "
                         "all equal (the variance of x is 0)")
    return (x_hat - x).pow(2).sum() / den


def _normalized_mse(x_hat, x):
    """:func:`normalized_mse` without its value check, for training steps.

    The same arithmetic; where every example of ``x`` is equal (variance
    0) it returns 0 instead of raising, without waiting for the device.
    """
    den = (x - x.mean(dim=0, keepdim=True)).pow(2).sum()
    ok = den > 0
    safe = torch.where(ok, den, torch.ones_like(den))
    return torch.where(ok, (x_hat - x).pow(2).sum() / safe,
                       torch.zeros_like(den))


def _check_h(h):
    check_tensor("h", h)
    if h.ndim != 2 or h.shape[0] == 0:
        raise ValueError(f"h must be (batch, n_units) with batch >= 1; got "
                         f"shape {tuple(h.shape)}")


def l1_activity(h: torch.Tensor) -> torch.Tensor:
    """``sum_j |h_j|`` averaged over the batch: the L1 activity penalty.

    Chapter "Sparse activity in classifiers".
    """
    _check_h(h)
    return h.abs().sum(dim=1).mean()


def kl_bernoulli(rho: float, rho_hat: torch.Tensor) -> torch.Tensor:
    """``KL(rho || rho_hat)`` between Bernoulli laws, elementwise.

    ``rho * log(rho / rho_hat) + (1 - rho) * log((1 - rho) / (1 - rho_hat))``
    for a target ``rho`` in (0, 1) and ``rho_hat`` in [0, 1] (kept within
    ``[KL_EPS, 1 - KL_EPS]``). Its derivative in ``rho_hat`` is
    ``-rho / rho_hat + (1 - rho) / (1 - rho_hat)``.

    ``rho_hat`` is checked (this reads its values, so a training loop whose
    ``rho_hat`` lies in [0, 1] by construction calls the unchecked
    ``_kl_bernoulli``).
    Chapter "Sparse autoencoders".
    """
    rho = check_probability("rho", rho, open_low=True, open_high=True)
    if not isinstance(rho_hat, torch.Tensor):
        rho_hat = torch.as_tensor(rho_hat, dtype=torch.get_default_dtype())
    if not bool(((rho_hat >= 0) & (rho_hat <= 1)).all()):  # also NaN
        raise ValueError(
            f"rho_hat must lie in [0, 1] (mean activations of sigmoid "
            f"units); got values from {rho_hat.min().item()!r} to "
            f"{rho_hat.max().item()!r} (or NaN)")
    return _kl_bernoulli(rho, rho_hat)


def _kl_bernoulli(rho, rho_hat):
    """:func:`kl_bernoulli` on checked arguments (no values read)."""
    r = rho_hat.clamp(KL_EPS, 1 - KL_EPS)
    return (rho * (math.log(rho) - torch.log(r))
            + (1 - rho) * (math.log(1 - rho) - torch.log1p(-r)))


def kl_sparsity(h: torch.Tensor, rho: float) -> torch.Tensor:
    """``sum_j KL(rho || rho_hat_j)``, ``rho_hat_j`` the batch mean of ``h_j``.

    ``h`` ``(batch, n_units)`` are activations in [0, 1] (sigmoid units).
    UFLDL's sparsity penalty, to be weighted by ``beta``.
    Chapter "Sparse autoencoders".
    """
    _check_h(h)
    return kl_bernoulli(rho, h.mean(dim=0)).sum()


def weight_decay(module: nn.Module) -> torch.Tensor:
    """``1/2 sum W^2`` over every parameter named ``weight`` with ndim >= 2.

    Biases (and 1-d weights) are excluded, as in UFLDL.
    """
    terms = [p.pow(2).sum() for name, p in module.named_parameters()
             if name.endswith("weight") and p.ndim >= 2]
    if not terms:
        raise ValueError("module has no weight matrices")
    return 0.5 * torch.stack(terms).sum()
