"""Layers with a fixed random sparse weight matrix that stays sparse.

Ahmad and Scheinkman (2019, "How Can We Be So Dense?") make a layer
weight-sparse by giving each output unit a fixed random subset of its
inputs: with ``sparsity`` the fraction of *zero* weights, every unit keeps
exactly ``n_keep = round((1 - sparsity) * fan_in)`` randomly chosen inputs
(``fan_in = in_features`` for a linear layer, ``in_channels / groups *
kh * kw`` for a convolution). The layers here re-derive the semantics of
nupic.torch's ``SparseWeights`` and ``SparseWeights2d`` (Numenta):
:class:`SparseWeights` wraps an ``nn.Linear``,
:class:`SparseWeights2d` an ``nn.Conv2d``.

**The trap closed here.** In the reference the zeroed weights are ordinary
entries of the parameter: the optimiser moves them away from zero
(momentum, weight decay, Adam's update) unless the user calls
``model.apply(rezero_weights)`` after *every* optimiser step. Here the
wrapped module's weight is parametrised
(``torch.nn.utils.parametrize``): the weight the layer uses in every
forward is ``where(mask, weight_orig, 0)``, where ``weight_orig`` is the
stored parameter and ``mask`` a fixed boolean buffer (True = kept). So

* the effective weight has exact zeros off the mask, whatever happens to
  the stored parameter, with no call from the user;
* the gradient of a kept entry is the dense layer's gradient, that of a
  masked entry exactly 0;
* the masked entries of the stored parameter are set to zero at
  construction, and a standard optimiser (SGD with momentum and weight
  decay, Adam, AdamW, RMSprop, ...) leaves a parameter entry with zero
  gradient, zero value and zero state at zero, so they stay zero too.

No forward pre-hook re-zeroes the stored parameter (an in-place write
into a parameter on every forward could clash with autograd's version
checks for no benefit: the effective weight is already exact).
:func:`rezero_weights` does it on request, for ``model.apply`` code
written for the reference; it is never needed here.

Serialisation: use ``state_dict`` / ``load_state_dict`` (the mask is in
the state dict); ``torch.save`` of the whole parametrised module is not
supported by PyTorch.

Introduced in the chapter "Noise-robust sparse networks".
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .utils import check_int, check_real

__all__ = [
    "sparse_weight_mask",
    "SparseWeightsBase",
    "SparseWeights",
    "SparseWeights2d",
    "rezero_weights",
]


def _check_sparsity(sparsity) -> float:
    return check_real("sparsity", sparsity, minimum=0.0, maximum=1.0,
                      max_open=True)


def _n_keep(sparsity: float, fan_in: int) -> int:
    n_keep = round((1.0 - sparsity) * fan_in)
    if n_keep < 1:
        raise ValueError(
            f"sparsity={sparsity} leaves round((1 - sparsity) * fan_in) = "
            f"round({(1.0 - sparsity) * fan_in}) = {n_keep} inputs per unit "
            f"with fan_in={fan_in}; expected a sparsity that keeps at "
            f"least one input")
    return n_keep


def sparse_weight_mask(n_units: int, fan_in: int, sparsity: float, *,
                       generator: torch.Generator | None = None,
                       device: torch.device | str | None = None
                       ) -> torch.Tensor:
    """A random boolean mask that keeps the same number of inputs per unit.
    Chapter "Noise-robust sparse networks".

    Row ``i`` of the ``(n_units, fan_in)`` result has exactly
    ``round((1 - sparsity) * fan_in)`` True entries (the kept inputs of
    unit ``i``), chosen uniformly at random and independently per row. The
    rule of Ahmad and Scheinkman (2019).

    Parameters
    ----------
    n_units : int
        Number of output units (rows), ``>= 1``.
    fan_in : int
        Number of inputs of each unit (columns), ``>= 1``.
    sparsity : float
        Fraction of zero weights, in [0, 1) (0 gives an all-True mask). It
        must keep at least one input per unit.
    generator : torch.Generator, optional
        Source of randomness; the mask is drawn on its device.
    device : torch.device or str, optional
        Where the returned mask lives (default: the generator's device,
        else the CPU).

    Returns
    -------
    torch.Tensor
        Boolean mask ``(n_units, fan_in)``, True where a weight is kept.
    """
    n_units = check_int("n_units", n_units, minimum=1)
    fan_in = check_int("fan_in", fan_in, minimum=1)
    sparsity = _check_sparsity(sparsity)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got "
                        f"{type(generator).__name__}")
    n_keep = _n_keep(sparsity, fan_in)
    draw_on = generator.device if generator is not None else device
    scores = torch.rand(n_units, fan_in, generator=generator, device=draw_on)
    keep = scores.argsort(dim=1)[:, :n_keep]
    mask = torch.zeros(n_units, fan_in, dtype=torch.bool, device=draw_on)
    mask.scatter_(1, keep, True)
    return mask if device is None else mask.to(device)


class _Mask(nn.Module):
    """Parametrisation ``weight = where(mask, weight_orig, 0)``.

    Holds the boolean ``mask`` buffer (the weight's shape, True = kept).
    ``right_inverse`` masks the value, so assigning ``module.weight = w``
    stores zeros off the mask.
    """

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, weight, 0)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, weight, 0)


class SparseWeightsBase(nn.Module):
    """What :class:`SparseWeights` and :class:`SparseWeights2d` share.

    Wraps ``module`` (kept as the child ``module``) and parametrises its
    ``weight`` so that every forward uses ``where(mask, weight_orig, 0)``;
    the masked entries of the stored parameter are zeroed at construction.
    The mask is a buffer of the parametrisation, saved in the state dict
    under ``module.parametrizations.weight.0.mask``; the stored parameter
    is ``module.parametrizations.weight.original``.

    Parameters
    ----------
    module : nn.Module
        The layer to make weight-sparse; its ``weight`` has the output
        units along dimension 0 and must not be parametrised already.
    sparsity : float
        Fraction of zero weights of each unit, in [0, 1) (0 = dense).
    generator : torch.Generator, optional
        Source of randomness for the mask (drawn on the generator's device,
        then moved to the weight's).
    """

    def __init__(self, module: nn.Module, sparsity: float, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        sparsity = _check_sparsity(sparsity)
        weight = module.weight
        if isinstance(weight, nn.parameter.UninitializedParameter):
            raise ValueError("module has an uninitialised (lazy) weight; "
                             "expected a layer with known sizes")
        if parametrize.is_parametrized(module, "weight"):
            raise ValueError(f"module's weight is already parametrised "
                             f"({type(module).__name__}); expected a plain "
                             f"layer")
        n_units = weight.shape[0]
        fan_in = weight[0].numel()
        mask = sparse_weight_mask(n_units, fan_in, sparsity,
                                  generator=generator)
        mask = mask.to(weight.device).reshape(weight.shape)
        self.sparsity = sparsity
        self.fan_in = fan_in
        self.n_keep = _n_keep(sparsity, fan_in)
        with torch.no_grad():
            weight.masked_fill_(~mask, 0)
        parametrize.register_parametrization(module, "weight", _Mask(mask))
        self.module = module

    @property
    def mask(self) -> torch.Tensor:
        """Boolean mask, the weight's shape, True where a weight is kept."""
        return self.module.parametrizations.weight[0].mask

    @property
    def weight(self) -> torch.Tensor:
        """The effective (masked) weight the layer uses."""
        return self.module.weight

    @property
    def weight_orig(self) -> nn.Parameter:
        """The stored parameter the optimiser updates."""
        return self.module.parametrizations.weight.original

    @property
    def bias(self) -> torch.Tensor | None:
        """The wrapped module's bias (dense), or None."""
        return self.module.bias

    def nonzero_count(self) -> int:
        """Number of non-zero entries of the effective weight.

        Reads the device (a synchronisation on a GPU): for reporting, not
        for a training loop.
        """
        with torch.no_grad():
            return int(torch.count_nonzero(self.module.weight))

    @property
    def weight_density(self) -> float:
        """Fraction of non-zero entries of the effective weight (reads the
        device, like :meth:`nonzero_count`)."""
        return self.nonzero_count() / self.mask.numel()

    def rezero_weights(self) -> None:
        """Set the stored parameter's masked entries to zero (in place).

        Never needed: the effective weight is exact whatever the stored
        entries hold.
        """
        with torch.no_grad():
            self.weight_orig.masked_fill_(~self.mask, 0)

    def extra_repr(self) -> str:
        return (f"sparsity={self.sparsity}, fan_in={self.fan_in}, "
                f"n_keep={self.n_keep}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped module applied to ``x`` with the masked weight."""
        return self.module(x)


class SparseWeights(SparseWeightsBase):
    """A linear layer whose units each keep a fixed random set of inputs.
    Chapter "Noise-robust sparse networks".

    Input ``(batch, in_features)`` (or ``(*, in_features)``), output
    ``(*, out_features)`` = ``F.linear(x, W * mask, b)``. Each row of the
    ``(out_features, in_features)`` mask keeps exactly
    ``round((1 - sparsity) * in_features)`` inputs. Follows nupic.torch's
    ``SparseWeights``, except that the zeros need no
    ``model.apply(rezero_weights)`` after the optimiser step (see the
    module docstring).

    Parameters
    ----------
    module : nn.Linear
        The layer to wrap (its weight is parametrised in place and its
        masked entries set to zero).
    sparsity : float
        Fraction of zero weights of each unit, in [0, 1) (0 = dense).
    generator : torch.Generator, optional
        Source of randomness for the mask.
    """

    def __init__(self, module: nn.Linear, sparsity: float, *,
                 generator: torch.Generator | None = None):
        if not isinstance(module, nn.Linear):
            raise TypeError(f"module must be an nn.Linear; got "
                            f"{type(module).__name__} (use SparseWeights2d "
                            f"for nn.Conv2d)")
        super().__init__(module, sparsity, generator=generator)


class SparseWeights2d(SparseWeightsBase):
    """A 2-d convolution whose output channels each keep a fixed random set
    of inputs.

    Input ``(batch, in_channels, H, W)``, output as the wrapped
    ``nn.Conv2d`` with the weight ``W * mask``. The mask of each output
    channel, over its ``in_channels / groups * kh * kw`` weights, keeps
    exactly ``round((1 - sparsity) * fan_in)`` of them. Follows
    nupic.torch's ``SparseWeights2d``, except that the zeros need no
    ``model.apply(rezero_weights)`` after the optimiser step.

    Parameters
    ----------
    module : nn.Conv2d
        The convolution to wrap (its weight is parametrised in place and
        its masked entries set to zero).
    sparsity : float
        Fraction of zero weights of each output channel, in [0, 1)
        (0 = dense).
    generator : torch.Generator, optional
        Source of randomness for the mask.
    """

    def __init__(self, module: nn.Conv2d, sparsity: float, *,
                 generator: torch.Generator | None = None):
        if not isinstance(module, nn.Conv2d):
            raise TypeError(f"module must be an nn.Conv2d; got "
                            f"{type(module).__name__} (use SparseWeights "
                            f"for nn.Linear)")
        super().__init__(module, sparsity, generator=generator)


def rezero_weights(m: nn.Module) -> None:
    """Zero the stored masked weights of ``m`` if it is a sparse layer.

    For ``model.apply(rezero_weights)``, as in code written for
    nupic.torch; a no-op on other modules. Unnecessary with these layers:
    their effective weight is exactly zero off the mask in every forward.

    Parameters
    ----------
    m : nn.Module
        Any module; only :class:`SparseWeightsBase` instances change.
    """
    if isinstance(m, SparseWeightsBase):
        m.rezero_weights()
