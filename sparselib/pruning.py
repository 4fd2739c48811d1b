"""Magnitude pruning, lottery tickets and dynamic sparse training.

Two ways to get a network whose weights are mostly zero:

**Prune a trained dense network.** :func:`magnitude_prune` zeroes the
weights of smallest magnitude, over all layers at once (``scope="global"``)
or layer by layer, through ``torch.nn.utils.prune``: the module's weight
becomes ``weight_orig * weight_mask``, recomputed before every forward,
so the pruned entries stay exactly zero whatever the optimiser does to
``weight_orig``. The mask is multiplied into a *dense* weight: a pruned
network runs no faster with dense kernels (:func:`make_permanent` folds
the mask in and drops it). Pruning in rounds with retraining in between
(iterative magnitude pruning, :func:`iterative_sparsities` gives the
geometric schedule) keeps more accuracy at high sparsity. The *lottery
ticket* experiment (Frankle and Carbin 2019) resets the surviving weights
after each pruning round to their values at initialisation, or, with
*rewinding* (Frankle et al. 2020), at an early iteration ``k``, and
retrains: :func:`snapshot`, :func:`rewind` and :func:`lottery_ticket`.

``torch.nn.utils.prune`` reads two things in a way that is easy to get
wrong, and :func:`magnitude_prune` compensates for both:

* an integer ``amount`` counts the weights to prune *among those not yet
  pruned* (the new method joins a ``PruningContainer`` that only sees the
  surviving entries), so the amount that reaches a *total* sparsity is the
  target count minus the count already pruned;
* the magnitudes it ranks by default are the module's ``weight``
  attribute, which the pruning hook recomputes only in a forward: after an
  optimiser step and before the next forward it is one step out of date.
  The magnitudes are therefore passed as ``importance_scores``, computed
  from ``weight_orig * weight_mask`` at the time of the call.

**Train sparse from the start.** :class:`DynamicSparsity` keeps a fixed
number of active weights per layer and every ``update_every`` optimiser
steps drops the ``k`` active weights of smallest magnitude and activates
``k`` inactive ones: at random in SET (Mocanu et al. 2018), where the
dense gradient is largest in RigL (Evci et al. 2020), whose drop fraction
decays along a cosine until ``stop_step``. The layer sparsities are equal
(``"uniform"``) or follow the Erdős–Rényi-kernel rule of RigL
(``"erk"``, :func:`layer_keep_counts`).

Where this module departs from, or had to choose between, the sources:

* SET drops the smallest positive and the largest negative weights, a
  fraction of each sign; here, as in RigL's code, the ``k`` smallest
  magnitudes, whatever their signs.
* ``k = round(f * n_active)`` per layer (RigL's code truncates).
* RigL's code skips the optimiser step on the iterations that update the
  masks and grows by the gradient at the weights before that step; here the
  optimiser steps on every iteration (the caller runs it) and the growth
  uses the gradient of that iteration's backward, taken at the weights
  before the step.
* RigL's code can regrow a connection dropped in the same update (it then
  keeps its weight); here the regrown entries are drawn among those that
  were inactive *before* the update, so exactly ``k`` connections leave and
  ``k`` different ones arrive.

References: J. Frankle and M. Carbin, "The Lottery Ticket Hypothesis:
Finding Sparse, Trainable Neural Networks", ICLR 2019; J. Frankle,
G. K. Dziugaite, D. M. Roy and M. Carbin, "Linear Mode Connectivity and
the Lottery Ticket Hypothesis", ICML 2020; D. C. Mocanu, E. Mocanu,
P. Stone, P. H. Nguyen, M. Gibescu and A. Liotta, "Scalable training of
artificial neural networks with adaptive sparse connectivity inspired by
network science", Nature Communications 9, 2383 (2018); U. Evci, T. Gale,
J. Menick, P. S. Castro and E. Elsen, "Rigging the Lottery: Making All
Tickets Winners", ICML 2020 (the schedule and the ERK rule; values only,
no code is copied).

Introduced in the chapter "Dendrites, pruning and what sparsity costs".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from .sparse_weights import _Mask
from .utils import check_choice, check_int, check_probability, check_real

__all__ = [
    "PRUNABLE_TYPES",
    "prunable",
    "weight_sparsity",
    "layer_sparsities",
    "magnitude_prune",
    "make_permanent",
    "iterative_sparsities",
    "snapshot",
    "rewind",
    "lottery_ticket",
    "layer_keep_counts",
    "DynamicSparsity",
]

#: The layer kinds whose ``weight`` is pruned by default (their biases never
#: are).
PRUNABLE_TYPES = (nn.Linear, nn.Conv2d)


# --------------------------------------------------------------------------
# which weights, and how sparse they are


def _check_model(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got "
                        f"{type(model).__name__}")
    return model


def _check_types(types):
    if isinstance(types, type):
        types = (types,)
    if not isinstance(types, tuple) or not types or not all(
            isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise TypeError(f"types must be a non-empty tuple of nn.Module "
                        f"classes, got {types!r}")
    return types


def _named_prunable(model, types=PRUNABLE_TYPES):
    """``[(name, module), ...]``: the modules of ``types`` with a weight.

    ``name`` is the weight's name in the model (``"fc1.weight"``; just
    ``"weight"`` when ``model`` itself is the layer).
    """
    _check_model(model)
    types = _check_types(types)
    out = []
    for mname, module in model.named_modules():
        if isinstance(module, types) and \
                isinstance(getattr(module, "weight", None), torch.Tensor):
            out.append((f"{mname}.weight" if mname else "weight", module))
    return out


def _need_prunable(model, types):
    layers = _named_prunable(model, types)
    if not layers:
        names = ", ".join(t.__name__ for t in _check_types(types))
        raise ValueError(f"model has no prunable layer (no {names} with a "
                         f"weight)")
    return layers


def _torch_pruned(module):
    return hasattr(module, "weight_orig") and hasattr(module, "weight_mask")


@torch.no_grad()
def _effective(module):
    """The weight the layer uses, recomputed now (never a stale copy)."""
    if _torch_pruned(module):
        return module.weight_orig * module.weight_mask
    # a parametrisation recomputes the weight on access
    return module.weight.detach()


def _stored(module):
    """The parameter the optimiser updates for the layer's weight."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    if _torch_pruned(module):
        return module.weight_orig
    return module.weight


def _mask(module):
    """The layer's boolean mask (True = kept), or None without one."""
    if _torch_pruned(module):
        return module.weight_mask != 0
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if isinstance(getattr(p, "mask", None), torch.Tensor):
                return p.mask
    return None


def prunable(model: nn.Module, types: tuple = PRUNABLE_TYPES) -> list:
    """The ``(module, "weight")`` pairs that pruning acts on.
    Chapter "Dendrites, pruning and what sparsity costs".

    Every submodule of ``model`` (``model`` included) that is an instance
    of one of ``types`` and has a ``weight`` tensor, in the order of
    ``model.named_modules()``; biases are never pruned. The pairs are what
    ``torch.nn.utils.prune.global_unstructured`` takes.

    Parameters
    ----------
    model : nn.Module
        The network.
    types : tuple of type, default (nn.Linear, nn.Conv2d)
        The layer kinds to prune.

    Returns
    -------
    list of tuple
        ``[(module, "weight"), ...]``, possibly empty.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module`` or ``types`` is not a tuple of
        module classes.
    """
    return [(m, "weight") for _, m in _named_prunable(model, types)]


def layer_sparsities(model: nn.Module,
                     types: tuple = PRUNABLE_TYPES) -> dict:
    """Fraction of exact zeros in each prunable weight.
    Chapter "Dendrites, pruning and what sparsity costs".

    Counts the entries of the weight the layer uses: ``weight_orig *
    weight_mask`` for a layer pruned by ``torch.nn.utils.prune``
    (recomputed, not the copy cached at the last forward), the
    parametrised weight for a :class:`DynamicSparsity` or
    :mod:`~sparselib.sparse_weights` layer. Reads the device once.

    Parameters
    ----------
    model : nn.Module
        The network.
    types : tuple of type, default (nn.Linear, nn.Conv2d)
        The layer kinds counted.

    Returns
    -------
    dict
        Weight name (``"fc1.weight"``) -> fraction of zeros (a float).

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``.
    ValueError
        If ``model`` has no layer of ``types``.
    """
    layers = _need_prunable(model, types)
    zeros = torch.stack([(_effective(m) == 0).sum() for _, m in layers])
    counts = zeros.tolist()
    return {name: c / m.weight.numel()
            for (name, m), c in zip(layers, counts)}


def weight_sparsity(model: nn.Module,
                    types: tuple = PRUNABLE_TYPES) -> float:
    """Fraction of exact zeros among all prunable weights of ``model``.
    Chapter "Dendrites, pruning and what sparsity costs".

    The effective weights are counted, as in :func:`layer_sparsities`;
    biases and the other layers are not. Reads the device once.

    Parameters
    ----------
    model : nn.Module
        The network.
    types : tuple of type, default (nn.Linear, nn.Conv2d)
        The layer kinds counted.

    Returns
    -------
    float
        Zeros over entries, pooled over the layers.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``.
    ValueError
        If ``model`` has no layer of ``types``.
    """
    layers = _need_prunable(model, types)
    zeros = torch.stack([(_effective(m) == 0).sum() for _, m in layers])
    total = sum(m.weight.numel() for _, m in layers)
    return int(zeros.sum()) / total


# --------------------------------------------------------------------------
# magnitude pruning


def _check_not_parametrised(layers):
    for name, m in layers:
        if parametrize.is_parametrized(m, "weight"):
            raise ValueError(
                f"{name} is parametrised (a DynamicSparsity or sparse-"
                f"weights layer); magnitude_prune works on plain layers or "
                f"layers pruned by torch.nn.utils.prune")


def magnitude_prune(model: nn.Module, sparsity: float, *,
                    scope: str = "global",
                    types: tuple = PRUNABLE_TYPES) -> float:
    """Prune the smallest-magnitude weights up to a total ``sparsity``.
    Chapter "Dendrites, pruning and what sparsity costs".

    With ``N`` prunable weights (of layer ``l``: ``N_l``) and ``M`` already
    pruned, ``scope="global"`` prunes the ``round(sparsity * N) - M``
    surviving weights of smallest ``|w|`` over all layers together
    (``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``);
    ``scope="layer"`` prunes ``round(sparsity * N_l) - M_l`` in each layer
    (``l1_unstructured``). The magnitudes are those of the effective weights
    at the time of the call. A second call with a higher target continues
    from the current masks; weights already pruned stay pruned. Ties
    between equal magnitudes are broken by ``torch.topk`` (in no stated
    order).

    The number of *pruned* entries is exact; :func:`weight_sparsity` counts
    exact zeros, which can exceed it if a surviving weight happens to be
    zero.

    Parameters
    ----------
    model : nn.Module
        The network; its prunable layers must be plain or already pruned
        by ``torch.nn.utils.prune`` (not parametrised). Pruned in place;
        an optimiser built before the call keeps working (the parameter
        object becomes ``weight_orig``).
    sparsity : float
        Target fraction of pruned weights after the call, in [0, 1]:
        pooled over the layers (global), or in every layer (layer).
    scope : {"global", "layer"}, default "global"
        Rank the magnitudes over all layers, or within each layer.
    types : tuple of type, default (nn.Linear, nn.Conv2d)
        The layer kinds to prune.

    Returns
    -------
    float
        The fraction of pruned weights reached, pooled over the layers
        (``round(sparsity * N) / N`` for the global scope).

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module`` or ``sparsity`` is not a
        number.
    ValueError
        If ``sparsity`` lies outside [0, 1], ``scope`` is unknown, the model
        has no prunable layer or a parametrised one, or the target is below
        the fraction already pruned (globally, or in a layer for the layer
        scope).
    """
    sparsity = check_probability("sparsity", sparsity)
    scope = check_choice("scope", scope, ("global", "layer"))
    layers = _need_prunable(model, types)
    _check_not_parametrised(layers)
    sizes = [m.weight_orig.numel() if _torch_pruned(m) else m.weight.numel()
             for _, m in layers]
    pruned = [(~_mask(m)).sum() if _torch_pruned(m) else None
              for _, m in layers]
    held = [t for t in pruned if t is not None]
    read = iter(torch.stack(held).tolist() if held else [])
    pruned = [0 if t is None else int(next(read)) for t in pruned]
    scores = {(m, "weight"): _effective(m).abs() for _, m in layers}
    total = sum(sizes)
    if scope == "global":
        target = round(sparsity * total)
        if target < sum(pruned):
            raise ValueError(
                f"sparsity={sparsity} asks for {target} pruned weights of "
                f"{total}, but {sum(pruned)} are pruned already; expected a "
                f"target >= {sum(pruned) / total:.6g}")
        prune.global_unstructured(
            [(m, "weight") for _, m in layers],
            pruning_method=prune.L1Unstructured,
            importance_scores=scores, amount=target - sum(pruned))
        return target / total
    targets = [round(sparsity * n) for n in sizes]
    for (name, _), t, p, n in zip(layers, targets, pruned, sizes):
        if t < p:
            raise ValueError(
                f"sparsity={sparsity} asks for {t} pruned weights in "
                f"{name}, but {p} of its {n} are pruned already; expected a "
                f"target >= {p / n:.6g}")
    for (_, m), t, p in zip(layers, targets, pruned):
        prune.l1_unstructured(m, "weight", amount=t - p,
                              importance_scores=scores[(m, "weight")])
    return sum(targets) / total


def make_permanent(model: nn.Module,
                   types: tuple = PRUNABLE_TYPES) -> None:
    """Fold the pruning masks into the weights and remove them.

    ``torch.nn.utils.prune.remove`` on every pruned prunable layer: the
    weight becomes a plain parameter again (the same parameter object, now
    holding ``weight_orig * weight_mask``), with exact zeros where it was
    pruned, but nothing keeps them at zero any more: further training
    moves them. Layers that are not pruned are left alone.

    Parameters
    ----------
    model : nn.Module
        The network, changed in place.
    types : tuple of type, default (nn.Linear, nn.Conv2d)
        The layer kinds to consider.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``.
    """
    for _, m in _named_prunable(model, types):
        if _torch_pruned(m):
            prune.remove(m, "weight")


def iterative_sparsities(final: float, n_rounds: int) -> list:
    """The sparsity after each round of iterative pruning.

    Each round keeps the same fraction ``(1 - final) ** (1 / n_rounds)`` of
    the weights that survived the round before, so round ``r`` (from 1)
    ends at ``1 - (1 - final) ** (r / n_rounds)``; the last entry is
    ``final`` itself, not a rounded power.

    Parameters
    ----------
    final : float
        The sparsity after the last round, in [0, 1).
    n_rounds : int
        The number of rounds, >= 1.

    Returns
    -------
    list of float
        ``n_rounds`` increasing sparsities.

    Raises
    ------
    TypeError
        If an argument is not a number of the right kind.
    ValueError
        If ``final`` lies outside [0, 1) or ``n_rounds < 1``.
    """
    final = check_real("final", final, minimum=0.0, maximum=1.0,
                       max_open=True)
    n_rounds = check_int("n_rounds", n_rounds, minimum=1)
    out = [1.0 - (1.0 - final) ** (r / n_rounds) for r in range(1, n_rounds)]
    return out + [final]


# --------------------------------------------------------------------------
# lottery tickets


def _tensors(model):
    """Name -> the stored tensor, for every parameter and buffer of
    ``model`` except the pruning masks; a pruned or parametrised weight
    appears under its plain name (``"fc1.weight"``), as the tensor the
    optimiser updates."""
    out = {}
    for mname, module in model.named_modules():
        if "parametrizations" in mname.split("."):
            continue
        prefix = f"{mname}." if mname else ""
        for pname, p in module.named_parameters(recurse=False):
            if pname.endswith("_orig") and \
                    hasattr(module, pname[:-5] + "_mask"):
                pname = pname[:-5]
            out[prefix + pname] = p
        for bname, b in module.named_buffers(recurse=False):
            if bname.endswith("_mask") and \
                    hasattr(module, bname[:-5] + "_orig"):
                continue
            out[prefix + bname] = b
        if parametrize.is_parametrized(module):
            for tname, plist in module.parametrizations.items():
                original = getattr(plist, "original", None)
                if isinstance(original, torch.Tensor):
                    out[prefix + tname] = original
    return out


def snapshot(model: nn.Module) -> dict:
    """Copies of the model's weights, for :func:`rewind`.
    Chapter "Dendrites, pruning and what sparsity costs".

    Every parameter and buffer except the pruning masks: the prunable
    weights as stored (``weight_orig`` when pruned), the biases, and the
    rest (batch-norm parameters and running statistics too, so that a
    rewound network is the network of that moment, mask aside). Take it at
    initialisation (a lottery ticket) or after ``k`` training iterations
    (rewinding).

    Parameters
    ----------
    model : nn.Module
        The network.

    Returns
    -------
    dict
        Name (``"fc1.weight"``, ``"fc1.bias"``, ...) -> a detached copy,
        on the tensor's device.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``.
    """
    _check_model(model)
    return {k: v.detach().clone() for k, v in _tensors(model).items()}


def _check_snapshot(model, snap, name="snap"):
    if not isinstance(snap, dict):
        raise TypeError(f"{name} must be a dict from snapshot(), got "
                        f"{type(snap).__name__}")
    have = _tensors(model)
    missing = sorted(set(have) - set(snap))
    extra = sorted(set(snap) - set(have))
    if missing or extra:
        raise ValueError(f"{name} does not match the model: missing "
                         f"{missing[:5]}, unknown {extra[:5]}")
    for k, v in have.items():
        if not isinstance(snap[k], torch.Tensor) or snap[k].shape != v.shape:
            got = getattr(snap[k], "shape", type(snap[k]).__name__)
            raise ValueError(f"{name}[{k!r}] must be a tensor of shape "
                             f"{tuple(v.shape)}, got {got}")
    return have


@torch.no_grad()
def rewind(model: nn.Module, snap: dict) -> None:
    """Reset the weights to a :func:`snapshot`, keeping the masks.

    Every tensor of the snapshot is copied back in place (so an optimiser
    over the model's parameters stays attached, with its old state: build
    a fresh one to retrain); the pruned entries of each masked weight are
    then set to zero in the stored weight, so the surviving weights hold
    their snapshot values and the pruned ones stay pruned.

    Parameters
    ----------
    model : nn.Module
        The network, changed in place.
    snap : dict
        From :func:`snapshot` of this model (or one of the same
        architecture).

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module`` or ``snap`` not a dict.
    ValueError
        If ``snap`` lacks a tensor of the model, has one the model lacks,
        or a shape differs.
    """
    _check_model(model)
    have = _check_snapshot(model, snap)
    for k, v in have.items():
        v.copy_(snap[k])
    for _, m in _named_prunable(model):
        mask = _mask(m)
        if mask is not None:
            _stored(m).masked_fill_(~mask, 0)
        if _torch_pruned(m):
            # what the pruning hook would compute at the next forward
            m.weight = m.weight_orig * m.weight_mask


def lottery_ticket(model: nn.Module, train_fn: Callable,
                   sparsities: Sequence, *, rewind_to: dict,
                   scope: str = "global",
                   eval_fn: Callable | None = None) -> list:
    """Iterative magnitude pruning with rewinding: the lottery ticket.
    Chapter "Dendrites, pruning and what sparsity costs".

    ``model`` comes trained (the dense run, or the last round). For each
    target in ``sparsities``: :func:`magnitude_prune` the trained weights
    to it, :func:`rewind` the survivors to ``rewind_to``, call
    ``train_fn(model)``, then ``eval_fn(model)``. With ``rewind_to`` taken
    at initialisation this is Frankle and Carbin's procedure; taken after
    ``k`` iterations, Frankle et al.'s rewinding. One target is one-shot
    pruning with rewinding; :func:`iterative_sparsities` gives the usual
    schedule.

    Parameters
    ----------
    model : nn.Module
        The trained network (plain or pruned prunable layers), changed in
        place.
    train_fn : callable
        ``train_fn(model)`` trains it (any loop; it should build its own
        optimiser over ``model.parameters()``, which includes the
        ``weight_orig`` parameters). Its return value is ignored.
    sparsities : sequence of float
        Non-decreasing targets in [0, 1].
    rewind_to : dict
        A :func:`snapshot` of the model at initialisation or iteration k.
    scope : {"global", "layer"}, default "global"
        As in :func:`magnitude_prune`.
    eval_fn : callable, optional
        ``eval_fn(model)`` after each round's training; its value is
        recorded as is.

    Returns
    -------
    list of dict
        One record per round: ``"round"`` (from 1), ``"target"``,
        ``"sparsity"`` (:func:`weight_sparsity` after training) and
        ``"eval"`` (``eval_fn``'s value, or None).

    Raises
    ------
    TypeError
        If ``train_fn`` or ``eval_fn`` is not callable, or ``sparsities``
        not a sequence of numbers.
    ValueError
        If ``sparsities`` is empty, decreasing or outside [0, 1], or
        ``rewind_to`` does not match the model.
    """
    _check_model(model)
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable, got "
                        f"{type(train_fn).__name__}")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable or None, got "
                        f"{type(eval_fn).__name__}")
    if isinstance(sparsities, (str, bytes)) or \
            not isinstance(sparsities, Sequence):
        raise TypeError(f"sparsities must be a sequence of numbers, got "
                        f"{type(sparsities).__name__}")
    targets = [check_probability(f"sparsities[{i}]", s)
               for i, s in enumerate(sparsities)]
    if not targets:
        raise ValueError("sparsities is empty; expected at least one target")
    for i in range(1, len(targets)):
        if targets[i] < targets[i - 1]:
            raise ValueError(f"sparsities must be non-decreasing; got "
                             f"{targets[i - 1]} then {targets[i]} at "
                             f"index {i}")
    check_choice("scope", scope, ("global", "layer"))
    _check_snapshot(model, rewind_to, "rewind_to")
    records = []
    for i, target in enumerate(targets, start=1):
        magnitude_prune(model, target, scope=scope)
        rewind(model, rewind_to)
        train_fn(model)
        result = eval_fn(model) if eval_fn is not None else None
        records.append({"round": i, "target": target,
                        "sparsity": weight_sparsity(model), "eval": result})
    return records


# --------------------------------------------------------------------------
# dynamic sparse training


def layer_keep_counts(shapes: Sequence, sparsity: float,
                      distribution: str = "uniform") -> list:
    """How many weights each layer keeps at a given overall sparsity.

    ``"uniform"``: layer ``l`` of ``N_l`` weights keeps
    ``round((1 - sparsity) * N_l)``. ``"erk"`` (Erdős–Rényi-kernel, RigL):
    layer ``l`` of shape ``(n_1, ..., n_d)`` gets density
    ``eps * (n_1 + ... + n_d) / (n_1 * ... * n_d)``, with ``eps`` such that
    the kept counts add up to ``(1 - sparsity) * N``; a layer whose density
    would exceed 1 is kept dense and ``eps`` is solved again for the rest
    (the layers of largest raw density first, one value at a time). The
    real counts are then rounded by largest remainder so that their sum is
    exactly ``round((1 - sparsity) * N)``.

    Parameters
    ----------
    shapes : sequence of tuple of int
        The weight shapes, e.g. ``[(300, 784), (10, 300)]`` or a
        convolution's ``(out, in, kh, kw)``.
    sparsity : float
        Overall fraction of zero weights, in [0, 1).
    distribution : {"uniform", "erk"}, default "uniform"
        How the zeros are spread over the layers.

    Returns
    -------
    list of int
        The kept count of each layer.

    Raises
    ------
    TypeError
        If ``shapes`` is not a sequence of integer tuples.
    ValueError
        If ``shapes`` is empty, a size is below 1, ``sparsity`` lies outside
        [0, 1) or ``distribution`` is unknown.
    """
    if isinstance(shapes, (str, bytes)) or not isinstance(shapes, Sequence):
        raise TypeError(f"shapes must be a sequence of shapes, got "
                        f"{type(shapes).__name__}")
    if not shapes:
        raise ValueError("shapes is empty; expected at least one layer")
    dims = []
    for i, shape in enumerate(shapes):
        if isinstance(shape, torch.Size):
            shape = tuple(shape)
        if not isinstance(shape, (tuple, list)) or not shape:
            raise TypeError(f"shapes[{i}] must be a non-empty tuple of "
                            f"ints, got {shape!r}")
        dims.append([check_int(f"shapes[{i}][{j}]", n, minimum=1)
                     for j, n in enumerate(shape)])
    sparsity = check_real("sparsity", sparsity, minimum=0.0, maximum=1.0,
                          max_open=True)
    check_choice("distribution", distribution, ("uniform", "erk"))
    sizes = [math.prod(d) for d in dims]
    if distribution == "uniform" or sparsity == 0.0:
        return [round((1.0 - sparsity) * n) for n in sizes]
    total = sum(sizes)
    kept = (1.0 - sparsity) * total
    raw = [sum(d) / math.prod(d) for d in dims]
    dense = set()
    while True:
        rest = [i for i in range(len(sizes)) if i not in dense]
        if not rest:
            break
        budget = kept - sum(sizes[i] for i in dense)
        eps = budget / sum(raw[i] * sizes[i] for i in rest)
        over = [i for i in rest if eps * raw[i] > 1.0]
        if not over:
            break
        top = max(raw[i] for i in over)
        dense.update(i for i in over if raw[i] == top)
    real = [float(sizes[i]) if i in dense else eps * raw[i] * sizes[i]
            for i in range(len(sizes))]
    counts = [min(int(math.floor(r)), n) for r, n in zip(real, sizes)]
    left = round(kept) - sum(counts)
    order = sorted(range(len(sizes)), key=lambda i: counts[i] - real[i])
    for i in order:
        if left <= 0:
            break
        if counts[i] < sizes[i]:
            counts[i] += 1
            left -= 1
    return counts


class _DynamicMask(_Mask):
    """``where(mask, weight, 0)`` that can record the dense gradient.

    While ``capture`` is on, each forward with autograd registers a hook on
    the masked weight it returns; the hook adds the gradient of the loss
    with respect to that *effective* weight (all entries, masked ones
    included) into ``dense_grad``.
    """

    def __init__(self, mask: torch.Tensor):
        super().__init__(mask)
        self.capture = False
        self.dense_grad = None

    def _record(self, grad):
        g = grad.detach()
        self.dense_grad = g.clone() if self.dense_grad is None \
            else self.dense_grad + g

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        out = torch.where(self.mask, weight, 0)
        if self.capture and out.requires_grad:
            out.register_hook(self._record)
        return out


class DynamicSparsity:
    """Sparse training with a changing mask: SET or RigL.
    Chapter "Dendrites, pruning and what sparsity costs".

    At construction every prunable layer of ``model`` gets a random
    boolean mask with a fixed number of active (True) entries
    (:func:`layer_keep_counts`) and its weight is parametrised as
    ``where(mask, weight_orig, 0)`` (as in
    :mod:`~sparselib.sparse_weights`): the inactive weights are exactly
    zero in every forward under any optimiser, and their stored entries
    are zero too. Call :meth:`step` after every ``optimizer.step()`` (for
    instance from ``optimizer.register_step_post_hook``). At
    steps ``t = update_every, 2 * update_every, ...`` (counting the calls,
    and while ``t < stop_step`` when a stop is given), each layer with
    ``n`` active weights (and ``m`` inactive ones) drops the
    ``k = min(round(f_t * n), m)`` active ones of
    smallest ``|w|`` and activates ``k`` of those inactive before the
    update:

    * ``method="set"``: chosen uniformly at random (the seeded generator);
    * ``method="rigl"``: those with the largest ``|dL/dW|``, the gradient
      of the loss with respect to the *effective* weight at the last
      backward. It is recorded by a tensor hook on the parametrised
      weight, switched on only for the backward just before an update
      (step ``t - 1`` arms it, step ``t`` uses and clears it; several
      backwards in between add up).

    ``f_t`` is ``drop_fraction`` (``schedule="constant"``, SET's default)
    or ``drop_fraction / 2 * (1 + cos(pi * t / stop_step))``
    (``"cosine"``, RigL's default). Regrown weights start at zero
    (``grow_init="zero"``, RigL's default) or are drawn from
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, the bound of PyTorch's default
    initialisation of ``nn.Linear`` and ``nn.Conv2d`` (``"uniform"``, SET's
    default); dropped weights are set to zero in the stored parameter. The
    optimiser state of every changed entry (momentum buffer, Adam's
    moments: each state tensor of the weight's shape) is set to zero. A
    layer kept dense (ERK) never changes. The number of active weights in
    every layer, hence the sparsity, is the same after every update.

    :meth:`step` reads nothing from the device: ``k`` is computed on the
    host from counts known at construction. Right after a RigL update the
    regrown weights are exact zeros, which :func:`weight_sparsity` counts
    until the optimiser moves them; :attr:`sparsity` counts the masks.

    Parameters
    ----------
    model : nn.Module
        The network, on its final device (the masks and the generator are
        made there). Its prunable layers must be plain (not pruned or
        parametrised already).
    sparsity : float
        Overall fraction of zero weights, in [0, 1).
    optimizer : torch.optim.Optimizer or None
        The optimiser over the model's parameters whose state is reset for
        the changed entries (it may be built before or after this object:
        the parameter objects do not change). None: no state to reset.
    method : {"set", "rigl"}, default "set"
        How the regrown entries are chosen.
    drop_fraction : float, default 0.3
        The fraction of active weights changed per update (the initial one
        for the cosine schedule), in [0, 1].
    update_every : int, default 100
        Optimiser steps between mask updates.
    stop_step : int, optional
        No update at or after this step; required by the cosine schedule.
    distribution : {"uniform", "erk"}, default "uniform"
        The layer sparsities (:func:`layer_keep_counts`).
    schedule : {"constant", "cosine"}, optional
        The drop fraction's schedule (default: constant for SET, cosine for
        RigL).
    grow_init : {"zero", "uniform"}, optional
        The regrown weights' values (default: zero for RigL, uniform for
        SET).
    types : tuple of type, default (nn.Linear, nn.Conv2d)
        The layer kinds made sparse.
    seed : int, default 0
        Seeds the generator of the initial masks and of SET's choices.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If a number is out of range, the cosine schedule has no
        ``stop_step``, a layer would keep no weight, an update could not
        find ``k`` inactive entries to regrow, or a layer is already
        pruned or parametrised, or its weight is not in ``optimizer``.
    """

    def __init__(self, model: nn.Module, sparsity: float, *, optimizer,
                 method: str = "set", drop_fraction: float = 0.3,
                 update_every: int = 100, stop_step: int | None = None,
                 distribution: str = "uniform", schedule: str | None = None,
                 grow_init: str | None = None,
                 types: tuple = PRUNABLE_TYPES, seed: int = 0):
        layers = _need_prunable(model, types)
        sparsity = check_real("sparsity", sparsity, minimum=0.0, maximum=1.0,
                              max_open=True)
        if optimizer is not None and \
                not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or "
                            f"None, got {type(optimizer).__name__}")
        self.method = check_choice("method", method, ("set", "rigl"))
        self.drop_fraction = check_probability("drop_fraction",
                                               drop_fraction)
        self.update_every = check_int("update_every", update_every,
                                      minimum=1)
        self.stop_step = None if stop_step is None else check_int(
            "stop_step", stop_step, minimum=1)
        self.distribution = check_choice("distribution", distribution,
                                         ("uniform", "erk"))
        if schedule is None:
            schedule = "cosine" if method == "rigl" else "constant"
        self.schedule = check_choice("schedule", schedule,
                                     ("constant", "cosine"))
        if self.schedule == "cosine" and self.stop_step is None:
            raise ValueError("stop_step must be given for the cosine "
                             "schedule (the drop fraction reaches 0 there)")
        if grow_init is None:
            grow_init = "zero" if method == "rigl" else "uniform"
        self.grow_init = check_choice("grow_init", grow_init,
                                      ("zero", "uniform"))
        seed = check_int("seed", seed, minimum=0, maximum=2 ** 63 - 1)
        for name, m in layers:
            if _torch_pruned(m) or parametrize.is_parametrized(m, "weight"):
                raise ValueError(f"{name} is already pruned or parametrised;"
                                 f" expected plain layers")
        params = [m.weight for _, m in layers]
        if optimizer is not None:
            held = {id(p) for g in optimizer.param_groups
                    for p in g["params"]}
            for (name, _), p in zip(layers, params):
                if id(p) not in held:
                    raise ValueError(f"{name} is not a parameter of "
                                     f"optimizer; build the optimizer over "
                                     f"model.parameters()")
        shapes = [tuple(p.shape) for p in params]
        keep = layer_keep_counts(shapes, sparsity, self.distribution)
        sizes = [p.numel() for p in params]
        for (name, _), k, n in zip(layers, keep, sizes):
            if k < 1:
                raise ValueError(
                    f"sparsity={sparsity} ({self.distribution}) leaves no "
                    f"active weight in {name} ({n} weights); expected a "
                    f"sparsity that keeps at least one")
        self.device = params[0].device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.names = [name for name, _ in layers]
        self.modules = [m for _, m in layers]
        self.n_active = keep
        self.sizes = sizes
        self.optimizer = optimizer
        self.step_count = 0
        self.updates = []
        self._bounds = [1.0 / math.sqrt(p[0].numel()) for p in params]
        self._masks = []
        for m, p, k, n in zip(self.modules, params, keep, sizes):
            scores = torch.rand(n, generator=self.generator,
                                device=self.device)
            mask = torch.zeros(n, dtype=torch.bool, device=self.device)
            mask.index_fill_(0, scores.topk(k).indices, True)
            mask = mask.view(p.shape)
            parametrize.register_parametrization(m, "weight",
                                                 _DynamicMask(mask))
            self._masks.append(m.parametrizations.weight[0])
        self._arm(1)

    # -- read-only views ---------------------------------------------------

    @property
    def masks(self) -> list:
        """The boolean masks (True = active), one per layer, in place."""
        return [p.mask for p in self._masks]

    @property
    def weights(self) -> list:
        """The stored parameters (``weight_orig``), one per layer."""
        return [m.parametrizations.weight.original for m in self.modules]

    @property
    def sparsity(self) -> float:
        """The overall fraction of inactive weights (exact, no device
        read)."""
        return 1.0 - sum(self.n_active) / sum(self.sizes)

    @property
    def layer_densities(self) -> dict:
        """Weight name -> fraction of active weights (no device read)."""
        return {name: k / n for name, k, n in
                zip(self.names, self.n_active, self.sizes)}

    def drop_fraction_at(self, t: int) -> float:
        """The drop fraction ``f_t`` of an update at step ``t``.

        ``drop_fraction`` (constant) or ``drop_fraction / 2 * (1 + cos(pi
        * t / stop_step))`` (cosine); 0 at or after ``stop_step``.
        """
        t = check_int("t", t, minimum=0)
        if self.stop_step is not None and t >= self.stop_step:
            return 0.0
        if self.schedule == "constant":
            return self.drop_fraction
        return self.drop_fraction / 2 * (
            1 + math.cos(math.pi * t / self.stop_step))

    def is_update_step(self, t: int) -> bool:
        """Whether the mask changes at step ``t`` (from 1)."""
        return t >= 1 and t % self.update_every == 0 and \
            (self.stop_step is None or t < self.stop_step)

    def _largest_fraction(self):
        if self.schedule == "constant":
            return self.drop_fraction
        # the cosine decreases: the first update has the largest fraction
        first = self.update_every
        if first >= self.stop_step:
            return 0.0
        return self.drop_fraction / 2 * (
            1 + math.cos(math.pi * first / self.stop_step))

    def _arm(self, t):
        on = self.method == "rigl" and self.is_update_step(t)
        for p in self._masks:
            p.capture = on
            p.dense_grad = None

    # -- the update --------------------------------------------------------

    def step(self) -> None:
        """Count one optimiser step; update the masks if one is due.

        Call once after every ``optimizer.step()``. No device read.

        Raises
        ------
        RuntimeError
            On a RigL update step with no dense gradient recorded for a
            layer since the previous call (no backward through it).
        """
        self.step_count += 1
        t = self.step_count
        if self.is_update_step(t):
            self._update(t)
        self._arm(t + 1)

    @torch.no_grad()
    def _update(self, t):
        f = self.drop_fraction_at(t)
        # a nearly dense layer (ERK at low sparsity) may have fewer
        # inactive weights than f * k: it updates only that many, since a
        # regrown weight must be one that was inactive before the update
        ks = [min(round(f * k), n - k)
              for k, n in zip(self.n_active, self.sizes)]
        if self.method == "rigl":
            for name, p, k in zip(self.names, self._masks, ks):
                if k and p.dense_grad is None:
                    raise RuntimeError(
                        f"RigL update at step {t}: no gradient was recorded "
                        f"for {name}; call step() once after each "
                        f"backward and optimizer.step()")
        for i, (p, w, k) in enumerate(zip(self._masks, self.weights, ks)):
            if k == 0:
                continue
            mask = p.mask
            n = mask.numel()
            drop_score = torch.where(mask, w.abs(), math.inf).reshape(-1)
            dropped = torch.zeros(n, dtype=torch.bool, device=mask.device)
            dropped.index_fill_(0, drop_score.topk(k, largest=False).indices,
                                True)
            dropped = dropped.view(mask.shape)
            if self.method == "rigl":
                grow_score = p.dense_grad.abs().to(w.dtype)
            else:
                grow_score = torch.rand(mask.shape, generator=self.generator,
                                        device=self.device).to(w.dtype)
            grow_score = torch.where(mask, -math.inf, grow_score).reshape(-1)
            grown = torch.zeros(n, dtype=torch.bool, device=mask.device)
            grown.index_fill_(0, grow_score.topk(k).indices, True)
            grown = grown.view(mask.shape)
            mask.copy_((mask & ~dropped) | grown)
            w.masked_fill_(dropped, 0)
            if self.grow_init == "zero":
                w.masked_fill_(grown, 0)
            else:
                b = self._bounds[i]
                draw = torch.rand(mask.shape, generator=self.generator,
                                  device=self.device).to(w.dtype)
                w.copy_(torch.where(grown, (2 * draw - 1) * b, w))
            if self.optimizer is not None:
                changed = dropped | grown
                for v in self.optimizer.state.get(w, {}).values():
                    if isinstance(v, torch.Tensor) and v.shape == w.shape:
                        v.masked_fill_(changed, 0)
        self.updates.append({"step": t, "drop_fraction": f, "k": ks})

    def remove(self) -> None:
        """Fold the masks into the weights and remove the parametrisation.

        The weights become plain parameters (the same objects) with exact
        zeros off the masks, which further training moves; :meth:`step`
        must not be called afterwards.
        """
        for m in self.modules:
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight",
                                                    leave_parametrized=True)
        self._masks = []
        self.modules = []

    def __repr__(self) -> str:
        return (f"DynamicSparsity(method={self.method!r}, "
                f"sparsity={self.sparsity:.4g}, "
                f"distribution={self.distribution!r}, "
                f"drop_fraction={self.drop_fraction}, "
                f"schedule={self.schedule!r}, "
                f"update_every={self.update_every}, "
                f"stop_step={self.stop_step}, step={self.step_count})")
