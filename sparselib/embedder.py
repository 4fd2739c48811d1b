"""Binary SDR embeddings: k-winners-take-all on the last layer, triplet loss.

A small network maps an image to a binary sparse distributed representation
(SDR): ``k`` of ``D`` bits on, the ``k`` units with the largest values
("k-winners-take-all", kWTA). The source is EmbedderSDR (Ulianych 2018-2020,
github.com/dizcza/EmbedderSDR, MIT licence; its helpers come from
pytorch-mighty); this module re-derives its pieces from their formulas:

* :func:`binary_kwta` -- hard kWTA. ``k = ceil(sparsity * D)``; the
  threshold of each row lies halfway between its ``k``-th and ``(k+1)``-th
  largest values (:func:`kwta_threshold`); the output is ``x > threshold``
  as 0/1 floats. Its backward pass is the straight-through estimator
  (Bengio, Leonard and Courville 2013): the incoming gradient passes
  unchanged to every unit, winners and losers alike.
* :func:`soft_kwta` -- the training-time relaxation:
  ``sigmoid(hardness * (x - threshold))`` (or a hard sigmoid), with the
  same threshold, through which the gradient flows as well (as in the
  source, whose threshold comes from a differentiable sort), so that the
  gradient of each row sums to zero. :class:`KWTAEmbedding` is soft in
  training mode and binary in evaluation mode; :class:`KWTAScheduler`
  anneals its sparsity down and its hardness up, epoch by epoch.
* :class:`SynapticScaling` -- homeostasis before the kWTA:
  ``x * exp(boost * (target - rate))`` per unit, ``rate`` a running mean of
  how often the unit wins. Units that win too often are damped, units that
  rarely win are amplified (Turrigiano 2008 for the biology).
* :class:`SDREmbedder` -- the source's MLP ``784 -> 64 -> 256`` with a
  ReLU after the first layer, synaptic scaling and kWTA on the output;
  :func:`mlp` builds the same MLP for the cross-entropy baseline
  (``mlp(784, 64, 10)``), so both share one definition.
* :func:`triplet_loss_cosine` -- the loss the embedder trains with:
  triplets (anchor, positive of the same class, negative of another class)
  drawn from the batch, ``relu(cos(a, n) - cos(a, p) + margin)`` (Schroff,
  Kalenichenko and Philbin 2015), averaged over all valid triplets or over
  each anchor's hardest pair (Hermans, Beyer and Leibe 2017).
* :func:`class_centroids`, :func:`nearest_centroid_predict`,
  :func:`nearest_centroid_accuracy` -- how the source scores an embedding:
  each class's mean code, binarised by the same kWTA, and the label of the
  nearest centroid; :func:`embedding_accuracy` does all three for a model.
* :func:`train_embedder` and :func:`fit_softmax` -- the two training
  protocols the chapter compares: the embedder with the triplet loss
  (scored by :func:`embedding_accuracy`) and the same MLP with a softmax
  head and cross-entropy (scored by its arg-max), both with Adam on the
  same batches, evaluated on a validation split after every epoch and
  returned at their best epoch (:class:`TrainResult`).

How often each bit fires, how many never do and the entropy of the code
are measured with :func:`sparselib.metrics.duty_cycle`,
:func:`sparselib.metrics.dead_units` and
:func:`sparselib.metrics.unit_entropy` on the binary codes.

Where this module departs from the source's code (read at
github.com/dizcza/EmbedderSDR, models/kwta.py, and pytorch-mighty,
mighty/loss/triplet.py), it says so in the docstring concerned: ``k`` is
computed without floating-point artefacts, ``k = D`` is an error (the
source warns and uses ``D - 1``), the synaptic scaling follows a moving
average of the *binary* winners and also applies at evaluation, and the
triplet loss averages over every valid triplet instead of a random sample.

Introduced in the chapter "k-winners-take-all and binary SDR embeddings".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .data import loader as make_loader
from .train import History, accuracy, batched_apply, fit
from .utils import (check_choice, check_int, check_probability, check_real,
                    check_same, check_tensor, progress)

__all__ = [
    "SOFT_KINDS",
    "SCHEDULE_KINDS",
    "MINING_KINDS",
    "CENTROID_METRICS",
    "kwta_k",
    "kwta_threshold",
    "binary_kwta",
    "soft_kwta",
    "KWTAEmbedding",
    "KWTAScheduler",
    "SynapticScaling",
    "mlp",
    "SDREmbedder",
    "triplet_loss_cosine",
    "class_centroids",
    "nearest_centroid_predict",
    "nearest_centroid_accuracy",
    "embedding_accuracy",
    "TrainResult",
    "train_embedder",
    "fit_softmax",
]

#: The squashing functions of :func:`soft_kwta`.
SOFT_KINDS = ("hardsigmoid", "sigmoid")
#: The interpolations of :class:`KWTAScheduler`.
SCHEDULE_KINDS = ("geometric", "linear")
#: The triplet selections of :func:`triplet_loss_cosine`.
MINING_KINDS = ("all", "hard")
#: The distances of :func:`nearest_centroid_predict`.
CENTROID_METRICS = ("cosine", "euclidean")

# Relative tolerance below which sparsity * D counts as an integer: 0.07 *
# 100 is 7.000000000000001 in floating point, and its ceiling would be 8.
_K_RTOL = 1e-9
# Elements of the (anchors, positives, negatives) block that
# triplet_loss_cosine builds at once (16 Mi float32 = 64 MiB).
_TRIPLET_BLOCK = 1 << 24


def kwta_k(sparsity: float, n: int) -> int:
    """The number of winners ``k = ceil(sparsity * n)``, checked ``< n``.

    The product is first compared with the integer below it: when it is
    within a relative ``1e-9`` of it (``0.07 * 100 = 7.000000000000001`` in
    floating point), that integer is used, so the rounding error of the
    product never adds a winner. The source takes the plain ceiling (it
    would give 8 there). Chapter "k-winners-take-all and binary SDR
    embeddings".

    Parameters
    ----------
    sparsity : float
        Fraction of active units, in (0, 1).
    n : int
        Number of units ``D`` (>= 2).

    Returns
    -------
    int
        ``k``, with ``1 <= k <= n - 1``.

    Raises
    ------
    TypeError
        If ``sparsity`` is not a real number or ``n`` not an integer.
    ValueError
        If ``sparsity`` is not in (0, 1), ``n < 2``, or ``k`` reaches
        ``n`` (the threshold needs a ``(k+1)``-th value).
    """
    sparsity = check_probability("sparsity", sparsity, open_low=True,
                                 open_high=True)
    n = check_int("n", n, minimum=2)
    p = sparsity * n
    k = math.ceil(p)
    if k > 1 and math.isclose(p, k - 1, rel_tol=_K_RTOL, abs_tol=0.0):
        k -= 1
    if k >= n:
        raise ValueError(
            f"sparsity {sparsity!r} gives k = ceil({sparsity!r} * {n}) = {k} "
            f"winners of {n} units; kWTA needs k < {n} (its threshold lies "
            f"between the k-th and (k+1)-th largest values): use a sparsity "
            f"<= {(n - 1) / n:g}")
    return k


def _check_x(x, name="x"):
    # dtype and shape only: no value is read, so this runs on every step
    check_tensor(name, x, ndim=2, floating=True)
    if x.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 units (columns); got "
                         f"shape {tuple(x.shape)}")
    return x


def kwta_threshold(x: torch.Tensor, k: int) -> torch.Tensor:
    """The kWTA threshold of each row: midway between its k-th and (k+1)-th.

    ``t_i = (x_i(k) + x_i(k+1)) / 2``, with ``x_i(j)`` the ``j``-th largest
    value of row ``i``: exactly the ``k`` largest values lie above it when
    the two differ. The threshold is differentiable (through
    :func:`torch.topk`: half the gradient goes to each of the two values),
    and :func:`soft_kwta` keeps that gradient. Chapter
    "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, D)`` floating-point values.
    k : int
        Number of winners, ``1 <= k <= D - 1``.

    Returns
    -------
    torch.Tensor
        ``(batch, 1)`` thresholds, dtype and device of ``x``.

    Raises
    ------
    TypeError
        If ``x`` is not a floating-point tensor or ``k`` not an integer.
    ValueError
        If ``x`` is not 2-d with at least 2 columns, or ``k`` is outside
        ``[1, D - 1]``.
    """
    _check_x(x)
    k = check_int("k", k, minimum=1, maximum=x.shape[1] - 1)
    top = x.topk(k + 1, dim=1, sorted=True).values
    return (top[:, k - 1:k] + top[:, k:k + 1]) / 2


class _BinaryKWTA(torch.autograd.Function):
    """Forward: ``x > threshold`` as 0/1. Backward: the gradient unchanged."""

    @staticmethod
    def forward(ctx, x, k):
        return (x > kwta_threshold(x, k)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None


def binary_kwta(x: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Hard k-winners-take-all: 1 for the ``k`` largest values of each row.

    ``k = ceil(sparsity * D)`` (:func:`kwta_k`); the output is
    ``x > t`` as floats, ``t`` the midpoint threshold of
    :func:`kwta_threshold`. The backward pass is the straight-through
    estimator: the gradient with respect to ``x`` is the incoming gradient,
    unchanged, for every unit (winners and losers), as in the source
    (EmbedderSDR, models/kwta.py). Works under ``torch.no_grad``. Chapter
    "k-winners-take-all and binary SDR embeddings".

    Ties: when the ``k``-th and ``(k+1)``-th largest values of a row are
    equal, the threshold equals that value and ``>`` excludes every unit
    holding it, so the row has *fewer* than ``k`` ones (none at all for a
    constant row). Rows without such a tie have exactly ``k`` ones.

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, D)`` floating-point values, ``D >= 2``.
    sparsity : float
        Fraction of winners, in (0, 1), with ``ceil(sparsity * D) < D``.

    Returns
    -------
    torch.Tensor
        ``(batch, D)`` of 0.0 and 1.0, dtype and device of ``x``.

    Raises
    ------
    TypeError
        If ``x`` is not a floating-point tensor or ``sparsity`` not a real
        number.
    ValueError
        If ``x`` is not 2-d with at least 2 columns, or ``sparsity`` is not
        in (0, 1) or leaves no loser (``k = D``).
    """
    _check_x(x)
    k = kwta_k(sparsity, x.shape[1])
    return _BinaryKWTA.apply(x, k)


def soft_kwta(x: torch.Tensor, sparsity: float, hardness: float,
              kind: str = "hardsigmoid") -> torch.Tensor:
    """Soft k-winners-take-all: a sigmoid step at the kWTA threshold.

    ``y = f(hardness * (x - t))`` with ``t`` the midpoint threshold of
    :func:`kwta_threshold` (``k = ceil(sparsity * D)``). The gradient
    reaches ``x`` through ``f`` and through ``t`` (whose gradient goes to
    the ``k``-th and ``(k+1)``-th largest values of the row), as in the
    source, where the threshold comes from a differentiable sort. Adding
    a constant to a row moves ``t`` with it and leaves ``y`` unchanged, so
    the gradient of any loss sums to zero over each row (without ties). A
    detached threshold would break that: it reports a gradient along this
    direction, in which the output cannot change, and in our trial runs
    an embedder trained with it by Adam grew its pre-activations by two
    orders of magnitude and collapsed to one code for almost every input.
    ``f`` is the logistic
    sigmoid (``kind="sigmoid"``) or PyTorch's hard sigmoid
    ``clamp(z / 6 + 1/2, 0, 1)`` (``kind="hardsigmoid"``, exactly 0 or 1
    once ``|z| >= 3``). Winners give values above 1/2, losers below; as
    ``hardness`` grows, ``y`` tends to :func:`binary_kwta` for every value
    not equal to the threshold. (EmbedderSDR trains with this relaxation;
    the version of its code read here uses the sigmoid.) Chapter
    "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, D)`` floating-point values, ``D >= 2``.
    sparsity : float
        Fraction of winners, in (0, 1), with ``ceil(sparsity * D) < D``.
    hardness : float
        Slope multiplier, > 0 (a Python number: it is read on every call).
    kind : str, default "hardsigmoid"
        ``"hardsigmoid"`` or ``"sigmoid"``.

    Returns
    -------
    torch.Tensor
        ``(batch, D)`` values in [0, 1], dtype and device of ``x``.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If ``x`` is not 2-d with at least 2 columns, ``sparsity`` is out
        of range, ``hardness <= 0`` or ``kind`` unknown.
    """
    _check_x(x)
    k = kwta_k(sparsity, x.shape[1])
    hardness = check_real("hardness", hardness, minimum=0, min_open=True)
    kind = check_choice("kind", kind, SOFT_KINDS)
    z = hardness * (x - kwta_threshold(x, k))
    return torch.sigmoid(z) if kind == "sigmoid" else F.hardsigmoid(z)


class KWTAEmbedding(nn.Module):
    """kWTA as a module: soft in training mode, binary in evaluation mode.

    ``forward(x)`` takes ``(batch, D)`` and returns ``(batch, D)``:
    :func:`soft_kwta` while ``self.training`` (values in [0, 1]),
    :func:`binary_kwta` otherwise (0/1, straight-through gradient). With
    ``soft=False`` it is binary in both modes (the hidden kWTA of
    :class:`SDREmbedder`). ``sparsity`` and ``hardness`` are plain
    attributes, checked when set, so that :class:`KWTAScheduler` can
    change them between epochs. Chapter "k-winners-take-all and binary SDR
    embeddings".

    Parameters
    ----------
    sparsity : float
        Fraction of winners, in (0, 1) (the source: 0.05).
    hardness : float, default 10.0
        Slope of the soft version, > 0 (our default; the source's is 1,
        raised by its scheduler).
    kind : str, default "hardsigmoid"
        Squashing function of the soft version, ``"hardsigmoid"`` or
        ``"sigmoid"``.
    soft : bool, default True
        Use the soft version in training mode (False: always binary).
    """

    def __init__(self, sparsity: float, hardness: float = 10.0,
                 kind: str = "hardsigmoid", soft: bool = True):
        super().__init__()
        self.sparsity = sparsity
        self.hardness = hardness
        self.kind = check_choice("kind", kind, SOFT_KINDS)
        if not isinstance(soft, bool):
            raise TypeError(f"soft must be a bool, got {soft!r}")
        self.soft = soft

    @property
    def sparsity(self) -> float:
        """Fraction of winners, in (0, 1); settable."""
        return self._sparsity

    @sparsity.setter
    def sparsity(self, value) -> None:
        self._sparsity = check_probability("sparsity", value, open_low=True,
                                           open_high=True)

    @property
    def hardness(self) -> float:
        """Slope multiplier of the soft version, > 0; settable."""
        return self._hardness

    @hardness.setter
    def hardness(self, value) -> None:
        self._hardness = check_real("hardness", value, minimum=0,
                                    min_open=True)

    def extra_repr(self) -> str:
        """The settings, shown by ``print(module)``."""
        text = f"sparsity={self.sparsity:g}"
        if self.soft:
            text += f", hardness={self.hardness:g}, kind={self.kind!r}"
        return text + f", soft={self.soft}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Soft (training) or binary kWTA of ``x`` ``(batch, D)``."""
        if self.training and self.soft:
            return soft_kwta(x, self.sparsity, self.hardness, self.kind)
        return binary_kwta(x, self.sparsity)


def _check_range(name, value, *, probability: bool):
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be a pair (start, end) or None, got "
                        f"{value!r}")
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair (start, end), got "
                         f"{len(value)} values: {value!r}")
    if probability:
        return tuple(check_probability(f"{name}[{i}]", v, open_low=True,
                                       open_high=True)
                     for i, v in enumerate(value))
    return tuple(check_real(f"{name}[{i}]", v, minimum=0, min_open=True)
                 for i, v in enumerate(value))


class KWTAScheduler:
    """Anneal a kWTA's sparsity down and its hardness up, one step an epoch.

    EmbedderSDR anneals the kWTA during training: it starts with many
    winners and a gentle slope, and ends with few winners and a steep one,
    so that the soft code it trains on approaches the binary code it is
    scored on. The schedule here is our own choice: after step ``t`` of
    ``n_steps`` each quantity is
    ``start * (end / start) ** (t / n_steps)`` (``kind="geometric"``) or
    ``start + (end - start) * t / n_steps`` (``kind="linear"``), and
    from step ``n_steps`` on it stays exactly at ``end``.

    Construction sets the start values (step 0); call :meth:`step` once at
    the end of each epoch. Works on any object with settable ``sparsity``
    and ``hardness`` attributes: a :class:`KWTAEmbedding` or an
    :class:`SDREmbedder` (which passes the sparsity on to its synaptic
    scaling target too). Chapter "k-winners-take-all and binary SDR
    embeddings".

    Parameters
    ----------
    module : object
        The kWTA to drive (has ``sparsity`` and ``hardness`` attributes).
    sparsity_range : tuple of float or None, default (0.5, 0.05)
        ``(start, end)`` sparsities, each in (0, 1); None leaves the
        sparsity alone.
    hardness_range : tuple of float or None, default (1.0, 10.0)
        ``(start, end)`` hardnesses, each > 0; None leaves it alone.
    n_steps : int, default 10
        Steps (epochs) from start to end, >= 1.
    kind : str, default "geometric"
        ``"geometric"`` or ``"linear"`` interpolation.
    """

    def __init__(self, module, sparsity_range=(0.5, 0.05),
                 hardness_range=(1.0, 10.0), n_steps: int = 10,
                 kind: str = "geometric"):
        for attr in ("sparsity", "hardness"):
            if not hasattr(module, attr):
                raise TypeError(f"module must have a settable {attr!r} "
                                f"attribute (a KWTAEmbedding or an "
                                f"SDREmbedder); got {type(module).__name__}")
        self.module = module
        self.sparsity_range = _check_range("sparsity_range", sparsity_range,
                                           probability=True)
        self.hardness_range = _check_range("hardness_range", hardness_range,
                                           probability=False)
        self.n_steps = check_int("n_steps", n_steps, minimum=1)
        self.kind = check_choice("kind", kind, SCHEDULE_KINDS)
        self.last_step = 0
        self._apply()

    def value(self, value_range, t: int) -> float:
        """The value of ``value_range`` ``(start, end)`` at step ``t``."""
        t = check_int("t", t, minimum=0)
        start, end = value_range
        if t >= self.n_steps:
            return end
        frac = t / self.n_steps
        if self.kind == "geometric":
            v = start * (end / start) ** frac
        else:
            v = start + (end - start) * frac
        # rounding never carries a value past either end
        return min(max(v, min(start, end)), max(start, end))

    def _apply(self) -> None:
        if self.sparsity_range is not None:
            self.module.sparsity = self.value(self.sparsity_range,
                                              self.last_step)
        if self.hardness_range is not None:
            self.module.hardness = self.value(self.hardness_range,
                                              self.last_step)

    def step(self) -> None:
        """Advance one step (an epoch) and set the module's new values."""
        self.last_step += 1
        self._apply()

    def __repr__(self) -> str:
        return (f"KWTAScheduler(sparsity_range={self.sparsity_range}, "
                f"hardness_range={self.hardness_range}, "
                f"n_steps={self.n_steps}, kind={self.kind!r}, "
                f"last_step={self.last_step})")


class SynapticScaling(nn.Module):
    """Scale each unit by ``exp(boost * (target - rate))`` before a kWTA.

    ``forward(x)`` takes ``(batch, n)`` and returns
    ``x * exp(boost * (target - firing_rate))`` (same shape), the scale a
    constant for autograd. ``firing_rate`` is a buffer ``(n,)`` that starts
    at ``target`` (scale 1) and is moved by :meth:`update_` towards the
    mean activity of each unit: ``rate <- (1 - momentum) rate + momentum
    mean_batch(activity)``. :class:`SDREmbedder` calls :meth:`update_` with
    the binary winners of each training batch, so a unit that wins more
    often than ``target`` is damped and one that wins less often is
    amplified. Chapter "k-winners-take-all and binary SDR embeddings".

    The source (EmbedderSDR, models/kwta.py) scales by
    ``exp(-boost * rate)``, which ranks units the same way (it differs by
    the common factor ``exp(boost * target)``), keeps a cumulative mean of
    the *soft* training outputs rather than a moving average of the
    winners, and scales in training mode only; here the scaling also
    applies at evaluation, so the binary codes are those of the trained
    network. The scale multiplies ``x``: a negative value that is
    amplified moves further *below* the threshold, so the scaling helps a
    rarely-winning unit only where its values are positive.

    Parameters
    ----------
    n : int
        Number of units (>= 1).
    target : float
        Firing rate the scaling aims for, in (0, 1) (the kWTA's sparsity).
    boost : float, default 1.0
        Strength, >= 0 (0 turns the scaling off; the source's default 1).
    momentum : float, default 0.01
        Weight of each batch in the moving average, in (0, 1] (our choice).
    """

    def __init__(self, n: int, target: float, boost: float = 1.0,
                 momentum: float = 0.01):
        super().__init__()
        self.n = check_int("n", n, minimum=1)
        self.target = target
        self.boost = check_real("boost", boost, minimum=0)
        self.momentum = check_probability("momentum", momentum,
                                          open_low=True)
        self.register_buffer("firing_rate",
                             torch.full((self.n,), self.target))

    @property
    def target(self) -> float:
        """Target firing rate, in (0, 1); settable."""
        return self._target

    @target.setter
    def target(self, value) -> None:
        self._target = check_probability("target", value, open_low=True,
                                         open_high=True)

    def extra_repr(self) -> str:
        """The settings, shown by ``print(module)``."""
        return (f"n={self.n}, target={self.target:g}, boost={self.boost:g}, "
                f"momentum={self.momentum:g}")

    def _check(self, name, t):
        check_tensor(name, t, ndim=2, floating=True)
        if t.shape[1] != self.n:
            raise ValueError(f"{name} must have shape (batch, {self.n}); got "
                             f"{tuple(t.shape)}")

    def scale(self) -> torch.Tensor:
        """The factors ``exp(boost * (target - firing_rate))``: ``(n,)``."""
        return torch.exp(self.boost * (self.target - self.firing_rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(batch, n)`` times the factors of :meth:`scale`."""
        self._check("x", x)
        return x * self.scale().to(x.dtype)

    @torch.no_grad()
    def update_(self, activity: torch.Tensor) -> "SynapticScaling":
        """Move ``firing_rate`` towards the mean of ``activity``.

        ``rate <- (1 - momentum) rate + momentum mean_batch(activity)``, in
        place and outside autograd; ``activity`` is ``(batch, n)`` (the
        binary winners). Nothing is read back to the host. Returns the
        module.
        """
        self._check("activity", activity)
        batch_rate = activity.detach().mean(dim=0).to(self.firing_rate.dtype)
        self.firing_rate.lerp_(batch_rate, self.momentum)
        return self


def mlp(in_features: int = 784, hidden: int = 64, n_out: int = 256,
        activation: nn.Module | None = None) -> nn.Sequential:
    """``Flatten -> Linear(in, hidden) -> activation -> Linear(hidden, out)``.

    The MLP of EmbedderSDR (784 -> 64 -> 256, ReLU) and of its
    cross-entropy baseline (``mlp(784, 64, 10)`` trained on the logits):
    one definition for both. Inputs ``(batch, in_features)`` or images that
    flatten to it; outputs ``(batch, n_out)``. PyTorch's default
    initialisation; the two linear layers are created in the same order as
    in :class:`sparselib.classifiers.SparseMLP`, so the same seed gives the
    same weights. Chapter "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    in_features : int, default 784
        Size of a flattened input (>= 1).
    hidden : int, default 64
        Hidden units (>= 1).
    n_out : int, default 256
        Outputs (>= 1).
    activation : torch.nn.Module or None, default None
        The hidden activation; None for :class:`torch.nn.ReLU`.

    Returns
    -------
    torch.nn.Sequential
        Layers ``[Flatten, Linear, activation, Linear]``.
    """
    in_features = check_int("in_features", in_features, minimum=1)
    hidden = check_int("hidden", hidden, minimum=1)
    n_out = check_int("n_out", n_out, minimum=1)
    if activation is None:
        activation = nn.ReLU()
    elif not isinstance(activation, nn.Module):
        raise TypeError(f"activation must be a torch.nn.Module or None, got "
                        f"{type(activation).__name__}")
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden),
                         activation, nn.Linear(hidden, n_out))


class SDREmbedder(nn.Module):
    """An MLP whose output layer is a kWTA: images to binary sparse codes.

    ``forward(x)`` maps ``(batch, in_features)`` (or images that flatten to
    it) through :func:`mlp` (``in -> hidden -> n_out``, ReLU), then
    :class:`SynapticScaling` (optional), then :class:`KWTAEmbedding`, and
    returns ``(batch, n_out)``: soft values in [0, 1] in training mode,
    the binary code in evaluation mode. In training mode each forward also
    updates the scaling's firing rates with that batch's binary winners.
    :meth:`embed` returns the binary code without gradients, in either
    mode, and changes nothing. EmbedderSDR's MNIST model (MLP 784 -> 64
    -> 256, sparsity 0.05, triplet loss). Chapter "k-winners-take-all and
    binary SDR embeddings".

    ``hidden_kwta=True`` replaces the ReLU by a binary kWTA at the same
    sparsity (straight-through gradient), to test the source's claim that
    replacing every ReLU by kWTA leaves the network unable to learn.

    Parameters
    ----------
    in_features : int, default 784
        Size of a flattened input.
    hidden : int, default 64
        Hidden units.
    n_out : int, default 256
        Bits of the code (the source's README: 512).
    sparsity : float, default 0.05
        Fraction of active bits, in (0, 1): ``k = ceil(sparsity * n_out)``.
    hardness : float, default 10.0
        Slope of the soft kWTA used in training, > 0.
    kind : str, default "hardsigmoid"
        ``"hardsigmoid"`` or ``"sigmoid"``, the soft kWTA's squashing.
    synaptic_scaling : bool, default True
        Put a :class:`SynapticScaling` (target = ``sparsity``) before the
        kWTA.
    boost : float, default 1.0
        The scaling's strength, >= 0.
    momentum : float, default 0.01
        The scaling's moving-average weight, in (0, 1].
    hidden_kwta : bool, default False
        Replace the hidden ReLU by a binary kWTA at ``sparsity``.
    """

    def __init__(self, in_features: int = 784, hidden: int = 64,
                 n_out: int = 256, sparsity: float = 0.05,
                 hardness: float = 10.0, kind: str = "hardsigmoid",
                 synaptic_scaling: bool = True, boost: float = 1.0,
                 momentum: float = 0.01, hidden_kwta: bool = False):
        super().__init__()
        for name, flag in (("synaptic_scaling", synaptic_scaling),
                           ("hidden_kwta", hidden_kwta)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        n_out = check_int("n_out", n_out, minimum=2)
        kwta_k(sparsity, n_out)
        if hidden_kwta:
            hidden = check_int("hidden", hidden, minimum=2)
            kwta_k(sparsity, hidden)
            activation = KWTAEmbedding(sparsity, soft=False)
        else:
            activation = None
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.mlp = mlp(in_features, hidden, n_out, activation)
        self.scaling = (SynapticScaling(n_out, sparsity, boost, momentum)
                        if synaptic_scaling else None)
        self.kwta = KWTAEmbedding(sparsity, hardness, kind)

    @property
    def n_out(self) -> int:
        """Bits of the code."""
        return self.mlp[-1].out_features

    @property
    def k(self) -> int:
        """Active bits of a code without ties, ``ceil(sparsity * n_out)``."""
        return kwta_k(self.sparsity, self.n_out)

    @property
    def sparsity(self) -> float:
        """The output kWTA's sparsity; setting it sets the scaling target."""
        return self.kwta.sparsity

    @sparsity.setter
    def sparsity(self, value) -> None:
        value = check_probability("sparsity", value, open_low=True,
                                  open_high=True)
        kwta_k(value, self.n_out)
        self.kwta.sparsity = value
        if self.scaling is not None:
            self.scaling.target = value

    @property
    def hardness(self) -> float:
        """The output kWTA's hardness; settable."""
        return self.kwta.hardness

    @hardness.setter
    def hardness(self, value) -> None:
        self.kwta.hardness = value

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """The values the output kWTA ranks: ``(batch, n_out)``.

        The MLP's output, times the synaptic scaling's current factors when
        there is one; updates nothing.
        """
        check_tensor("x", x, floating=True)
        if x.ndim < 2 or x[0].numel() != self.in_features:
            raise ValueError(f"x must have shape (batch, {self.in_features}) "
                             f"or flatten to it; got {tuple(x.shape)}")
        h = self.mlp(x)
        return h if self.scaling is None else self.scaling(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Soft (training) or binary (evaluation) code ``(batch, n_out)``."""
        h = self.preactivation(x)
        out = self.kwta(h)
        if self.training and self.scaling is not None:
            with torch.no_grad():
                winners = binary_kwta(h.detach(), self.sparsity)
            self.scaling.update_(winners)
        return out

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The binary code ``(batch, n_out)`` of ``x``, without gradients.

        Uses the current firing rates and changes neither them nor the
        module's mode.
        """
        return binary_kwta(self.preactivation(x), self.sparsity)


def _check_labels(labels, n, name="labels"):
    # shape and dtype only (no device synchronisation)
    check_tensor(name, labels, ndim=1)
    if labels.is_floating_point() or labels.is_complex() or \
            labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class labels, got dtype "
                        f"{labels.dtype}")
    if labels.shape[0] != n:
        raise ValueError(f"{name} must hold one label per row: {n}; got "
                         f"{labels.shape[0]}")
    return labels


def triplet_loss_cosine(emb: torch.Tensor, labels: torch.Tensor,
                        margin: float = 0.5,
                        mining: str = "all") -> torch.Tensor:
    """Triplet loss on cosine similarity, triplets drawn from the batch.

    A valid triplet is ``(a, p, n)``: ``p != a`` with the label of ``a``,
    ``n`` with another label. Its loss is
    ``relu(cos(e_a, e_n) - cos(e_a, e_p) + margin)``, i.e. the triplet loss
    of Schroff et al. (2015) with the distance ``1 - cos``. Computed from
    the ``(B, B)`` cosine matrix, with no loop over triplets.

    * ``mining="all"``: the mean over *every* valid triplet, those already
      satisfied (loss 0) included. This is the expectation of what the
      source computes (pytorch-mighty's triplet sampler draws random
      triplets, keeps the valid ones and averages their losses), without
      the sampling noise. Memory: blocks of at most 16 Mi elements of the
      ``(B, B, B)`` array.
    * ``mining="hard"``: batch-hard (Hermans et al. 2017): for each anchor
      with at least one positive and one negative, its least similar
      positive and most similar negative; the mean over those anchors.

    A batch with no valid triplet (one class, or no class with two rows)
    gives 0 (connected to ``emb``, so ``backward`` works): detecting it
    would need reading values back from the device. Zero rows have cosine
    0 with everything. Chapter "k-winners-take-all and binary SDR
    embeddings".

    Parameters
    ----------
    emb : torch.Tensor
        ``(B, D)`` floating-point embeddings (e.g. :class:`SDREmbedder`
        outputs).
    labels : torch.Tensor
        ``(B,)`` integer class labels.
    margin : float, default 0.5
        The margin, >= 0 (the source: 0.5).
    mining : str, default "all"
        ``"all"`` or ``"hard"``.

    Returns
    -------
    torch.Tensor
        A 0-d tensor, the loss, dtype and device of ``emb``.

    Raises
    ------
    TypeError
        If ``emb`` is not a floating-point tensor, ``labels`` not integer,
        ``margin`` not a real number or ``mining`` not a string.
    ValueError
        If the shapes disagree, ``margin < 0`` or ``mining`` is unknown.
    """
    check_tensor("emb", emb, ndim=2, floating=True)
    B = emb.shape[0]
    _check_labels(labels, B)
    check_same({"emb": emb, "labels": labels}, dtype=False)
    margin = check_real("margin", margin, minimum=0)
    mining = check_choice("mining", mining, MINING_KINDS)
    e = F.normalize(emb, dim=1)
    cos = e @ e.T
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(B, dtype=torch.bool, device=emb.device)
    neg = ~same
    if mining == "hard":
        hardest_pos = cos.masked_fill(~pos, math.inf).amin(dim=1)
        hardest_neg = cos.masked_fill(~neg, -math.inf).amax(dim=1)
        valid = pos.any(dim=1) & neg.any(dim=1)
        per = torch.relu(hardest_neg - hardest_pos + margin)
        per = torch.where(valid, per, torch.zeros_like(per))
        return per.sum() / valid.sum().clamp(min=1).to(emb.dtype)
    total = cos.new_zeros(())
    chunk = max(1, _TRIPLET_BLOCK // max(1, B * B))
    for s in range(0, B, chunk):
        c = cos[s:s + chunk]
        # loss[a, p, n] = relu(cos[a, n] - cos[a, p] + margin)
        loss = torch.relu(c[:, None, :] - c[:, :, None] + margin)
        mask = pos[s:s + chunk, :, None] & neg[s:s + chunk, None, :]
        total = total + torch.where(mask, loss, torch.zeros_like(loss)).sum()
    count = (pos.sum(dim=1) * neg.sum(dim=1)).sum()
    return total / count.clamp(min=1).to(emb.dtype)


def class_centroids(codes: torch.Tensor, labels: torch.Tensor,
                    n_classes: int, sparsity: float | None) -> torch.Tensor:
    """Each class's mean code, binarised by kWTA: ``(n_classes, D)``.

    The mean of the rows of ``codes`` with each label, then
    :func:`binary_kwta` at ``sparsity`` (the source's "binarised class
    centroids"); ``sparsity=None`` returns the plain means. Ties in a mean
    (several units equally often on) can leave a binarised centroid with
    fewer than ``k`` bits, as in :func:`binary_kwta`. A class without rows
    gets a zero centroid. Reads the labels once to check their range: an
    evaluation function, not for every training step. Chapter
    "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    codes : torch.Tensor
        ``(N, D)`` floating-point codes (binary ones from
        :meth:`SDREmbedder.embed`).
    labels : torch.Tensor
        ``(N,)`` integer labels in ``[0, n_classes)``.
    n_classes : int
        Number of classes (>= 1).
    sparsity : float or None
        The kWTA sparsity that binarises the means, in (0, 1), or None
        for none.

    Returns
    -------
    torch.Tensor
        ``(n_classes, D)`` centroids, dtype and device of ``codes``.

    Raises
    ------
    TypeError
        If ``codes`` is not a floating-point tensor or ``labels`` not
        integer.
    ValueError
        If the shapes disagree or a label is outside ``[0, n_classes)``.
    """
    check_tensor("codes", codes, ndim=2, floating=True)
    _check_labels(labels, codes.shape[0])
    check_same({"codes": codes, "labels": labels}, dtype=False)
    n_classes = check_int("n_classes", n_classes, minimum=1)
    if labels.numel() and (int(labels.min()) < 0 or
                           int(labels.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}); got values "
                         f"from {int(labels.min())} to {int(labels.max())}")
    if sparsity is not None:
        kwta_k(sparsity, codes.shape[1])
    sums = codes.new_zeros(n_classes, codes.shape[1]).index_add(
        0, labels, codes)
    counts = torch.bincount(labels, minlength=n_classes).clamp(min=1)
    means = sums / counts.to(codes.dtype)[:, None]
    return means if sparsity is None else binary_kwta(means, sparsity)


def _check_codes_centroids(codes, centroids, metric):
    check_tensor("codes", codes, ndim=2, floating=True)
    check_tensor("centroids", centroids, ndim=2, floating=True)
    check_same({"codes": codes, "centroids": centroids})
    if codes.shape[1] != centroids.shape[1]:
        raise ValueError(f"codes ({codes.shape[1]} columns) and centroids "
                         f"({centroids.shape[1]} columns) must have the same "
                         f"width D")
    if centroids.shape[0] < 1:
        raise ValueError("centroids must have at least one row")
    return check_choice("metric", metric, CENTROID_METRICS)


def nearest_centroid_predict(codes: torch.Tensor, centroids: torch.Tensor,
                             metric: str = "cosine") -> torch.Tensor:
    """The index of the nearest centroid of each code: ``(N,)`` labels.

    ``"cosine"``: the largest cosine similarity (a zero vector has cosine
    0 with everything); ``"euclidean"``: the smallest Euclidean distance
    (for binary vectors, the smallest Hamming distance). Ties go to the
    lowest index. Chapter "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    codes : torch.Tensor
        ``(N, D)`` floating-point codes.
    centroids : torch.Tensor
        ``(C, D)`` centroids (:func:`class_centroids`), same dtype and
        device.
    metric : str, default "cosine"
        ``"cosine"`` or ``"euclidean"``.

    Returns
    -------
    torch.Tensor
        ``(N,)`` int64 indices into ``centroids``.
    """
    metric = _check_codes_centroids(codes, centroids, metric)
    if metric == "cosine":
        sim = F.normalize(codes, dim=1) @ F.normalize(centroids, dim=1).T
        return sim.argmax(dim=1)
    return torch.cdist(codes, centroids).argmin(dim=1)


def nearest_centroid_accuracy(codes: torch.Tensor, labels: torch.Tensor,
                              centroids: torch.Tensor,
                              metric: str = "cosine") -> float:
    """Fraction of codes whose nearest centroid has their label.

    :func:`nearest_centroid_predict` compared with ``labels``; the source's
    accuracy for an embedding (centroids from the training codes, scored
    on the test codes). Returns a Python float (one device
    synchronisation). Chapter "k-winners-take-all and binary SDR
    embeddings".

    Parameters
    ----------
    codes : torch.Tensor
        ``(N, D)`` floating-point codes, ``N >= 1``.
    labels : torch.Tensor
        ``(N,)`` integer true labels.
    centroids : torch.Tensor
        ``(C, D)`` centroids, row ``c`` for label ``c``.
    metric : str, default "cosine"
        ``"cosine"`` or ``"euclidean"``.

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    pred = nearest_centroid_predict(codes, centroids, metric)
    _check_labels(labels, codes.shape[0])
    check_same({"codes": codes, "labels": labels}, dtype=False)
    if labels.shape[0] == 0:
        raise ValueError("codes must have at least one row")
    return float((pred == labels).to(torch.float64).mean())


@torch.no_grad()
def embedding_accuracy(model: nn.Module, x_ref: torch.Tensor,
                       y_ref: torch.Tensor, x: torch.Tensor,
                       y: torch.Tensor, n_classes: int = 10,
                       metric: str = "cosine",
                       batch_size: int = 1024) -> float:
    """Nearest-binarised-centroid accuracy of an embedder on ``(x, y)``.

    The source's score for an embedding: the binary codes of the reference
    inputs ``x_ref`` (the training set) give one centroid per class
    (:func:`class_centroids`, binarised at the model's sparsity); each
    code of ``x`` is labelled by its nearest centroid
    (:func:`nearest_centroid_accuracy`). Codes come from ``model.embed``
    in batches; nothing in the model changes. Chapter "k-winners-take-all
    and binary SDR embeddings".

    Parameters
    ----------
    model : torch.nn.Module
        Has ``embed(x) -> (batch, D)`` binary codes and a ``sparsity``
        attribute, e.g. :class:`SDREmbedder`.
    x_ref : torch.Tensor
        ``(N_ref, ...)`` inputs that define the centroids.
    y_ref : torch.Tensor
        ``(N_ref,)`` integer labels in ``[0, n_classes)``.
    x : torch.Tensor
        ``(N, ...)`` inputs to score, ``N >= 1``.
    y : torch.Tensor
        ``(N,)`` integer labels.
    n_classes : int, default 10
        Number of classes (>= 1).
    metric : str, default "cosine"
        ``"cosine"`` or ``"euclidean"`` (:func:`nearest_centroid_predict`).
    batch_size : int, default 1024
        Inputs embedded at once (>= 1).

    Returns
    -------
    float
        Accuracy in [0, 1].

    Raises
    ------
    TypeError
        If ``model`` has no ``embed`` method or ``sparsity``, or a label
        tensor is not integer.
    ValueError
        If the shapes disagree or a reference label is out of range.
    """
    _check_embedder(model)
    codes_ref = batched_apply(model.embed, x_ref, batch_size)
    centroids = class_centroids(codes_ref, y_ref, n_classes, model.sparsity)
    codes = batched_apply(model.embed, x, batch_size)
    return nearest_centroid_accuracy(codes, y, centroids, metric)


def _check_embedder(model):
    if not callable(getattr(model, "embed", None)) or \
            not hasattr(model, "sparsity"):
        raise TypeError(f"model must have an embed() method and a sparsity "
                        f"attribute (an SDREmbedder); got "
                        f"{type(model).__name__}")
    return model


@dataclass
class TrainResult:
    """What :func:`train_embedder` and :func:`fit_softmax` return.

    The model itself is changed in place and left at its best epoch.
    Chapter "k-winners-take-all and binary SDR embeddings".

    Attributes
    ----------
    history : sparselib.train.History
        ``step["loss"]``: every optimiser step's loss. ``epoch`` holds one
        value per epoch: ``"epoch"`` (from 1), ``"loss"`` (mean training
        loss), ``"seconds"`` (training time, evaluation excluded),
        ``"accuracy"`` (validation accuracy at the end of the epoch) and,
        for a model with them, ``"sparsity"`` and ``"hardness"`` (the
        values the epoch was trained and evaluated with).
    best_epoch : int
        The selected epoch (from 1): the highest validation accuracy among
        the epochs from ``select_from`` on, the earliest on ties.
    best_accuracy : float
        Its validation accuracy.
    """

    history: History
    best_epoch: int
    best_accuracy: float


def _check_xy(x, y, name_x, name_y):
    check_tensor(name_x, x, floating=True)
    if x.ndim < 2:
        raise ValueError(f"{name_x} must hold one input per row (at least "
                         f"2-d); got shape {tuple(x.shape)}")
    _check_labels(y, x.shape[0], name_y)
    if x.shape[0] == 0:
        raise ValueError(f"{name_x} must have at least one row")


def _train_selected(model, loss_fn, score, x, y, n_epochs, *, scheduler,
                    select_from, batch_size, lr, weight_decay, seed,
                    show, desc):
    """Adam on shuffled batches; score after each epoch; keep the best."""
    n_epochs = check_int("n_epochs", n_epochs, minimum=1)
    select_from = check_int("select_from", select_from, minimum=1,
                            maximum=n_epochs)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_real("lr", lr, minimum=0, min_open=True)
    weight_decay = check_real("weight_decay", weight_decay, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    if scheduler is not None and not callable(getattr(scheduler, "step",
                                                      None)):
        raise TypeError(f"scheduler must have a step() method (a "
                        f"KWTAScheduler) or be None; got "
                        f"{type(scheduler).__name__}")
    data = make_loader(x, y, batch_size=batch_size,
                       generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr,
                           weight_decay=weight_decay)
    knobs = [k for k in ("sparsity", "hardness") if hasattr(model, k)]
    hist = History()
    best_acc, best_epoch, best_state, best_knobs = -math.inf, 0, None, {}
    for epoch in progress(range(1, n_epochs + 1), desc=desc, enabled=show):
        h = fit(model, data, loss_fn, opt, 1, progress=False)
        model.eval()
        with torch.no_grad():
            acc = float(score(model))
        model.train()
        hist.step["loss"].extend(h.step["loss"])
        hist.epoch["epoch"].append(epoch)
        for key in ("loss", "seconds"):
            hist.epoch[key].append(h.epoch[key][0])
        hist.epoch["accuracy"].append(acc)
        now = {k: getattr(model, k) for k in knobs}
        for k, v in now.items():
            hist.epoch[k].append(float(v))
        if epoch >= select_from and acc > best_acc:
            best_acc, best_epoch, best_knobs = acc, epoch, now
            best_state = {k: v.detach().clone()
                          for k, v in model.state_dict().items()}
        if scheduler is not None:
            scheduler.step()
    model.load_state_dict(best_state)
    for k, v in best_knobs.items():
        setattr(model, k, v)
    model.eval()
    return TrainResult(history=hist, best_epoch=best_epoch,
                       best_accuracy=best_acc)


def train_embedder(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   x_val: torch.Tensor, y_val: torch.Tensor, n_epochs: int,
                   *, margin: float = 0.5, mining: str = "all",
                   scheduler=None, select_from: int = 1,
                   batch_size: int = 64, lr: float = 1e-3,
                   weight_decay: float = 1e-5, seed: int = 0,
                   n_classes: int = 10, progress: bool | None = None,
                   desc: str = "triplet") -> TrainResult:
    """Train an embedder with the triplet loss; keep its best epoch.

    Each epoch runs Adam (learning rate ``lr``, ``weight_decay``) over
    shuffled batches of ``(x, y)`` (the order fixed by ``seed``),
    minimising :func:`triplet_loss_cosine` of the model's (soft) outputs
    (:func:`sparselib.train.fit`, which reads no value back during the
    epoch). After each epoch the model is scored on the validation split
    with :func:`embedding_accuracy` (centroids from the codes of ``x``),
    and then ``scheduler.step()`` is called, so an epoch is trained and
    scored with the same sparsity and hardness. At the end the model is
    loaded with the weights, buffers (synaptic scaling's firing rates),
    sparsity and hardness of the best epoch from ``select_from`` on, and
    left in evaluation mode. Adam with learning rate ``1e-3`` and weight
    decay ``1e-5`` is the optimiser of EmbedderSDR's code (main.py); the
    batch size is our choice. Chapter "k-winners-take-all and binary SDR
    embeddings".

    Parameters
    ----------
    model : torch.nn.Module
        An embedder with ``embed`` and ``sparsity`` (:class:`SDREmbedder`);
        its forward output goes into the loss.
    x : torch.Tensor
        ``(N, ...)`` floating-point training inputs.
    y : torch.Tensor
        ``(N,)`` integer labels in ``[0, n_classes)``.
    x_val : torch.Tensor
        ``(N_val, ...)`` validation inputs (held out of ``x``).
    y_val : torch.Tensor
        ``(N_val,)`` their labels.
    n_epochs : int
        Passes over ``(x, y)`` (>= 1).
    margin : float, default 0.5
        The triplet margin (the source's 0.5).
    mining : str, default "all"
        ``"all"`` or ``"hard"`` (:func:`triplet_loss_cosine`).
    scheduler : object, optional
        Stepped once after each epoch's evaluation, e.g. a
        :class:`KWTAScheduler` on ``model``.
    select_from : int, default 1
        The first epoch eligible for selection, in ``[1, n_epochs]`` (e.g.
        the first epoch trained at the schedule's final sparsity).
    batch_size : int, default 64
        Examples per step (>= 1). The ``"all"`` loss costs ``B**3``.
    lr : float, default 1e-3
        Adam's learning rate (> 0).
    weight_decay : float, default 1e-5
        Adam's L2 weight decay (>= 0).
    seed : int, default 0
        Seeds the shuffling (not the model's initial weights).
    n_classes : int, default 10
        Number of classes, for the centroids.
    progress : bool, optional
        Show a bar over the epochs (``None``: yes unless at quick scale).
    desc : str, default "triplet"
        The bar's label.

    Returns
    -------
    TrainResult
        The history, the selected epoch and its validation accuracy.

    Raises
    ------
    TypeError
        If an argument has the wrong type (the model without ``embed``).
    ValueError
        If the shapes disagree or a number is out of range.
    """
    _check_embedder(model)
    _check_xy(x, y, "x", "y")
    _check_xy(x_val, y_val, "x_val", "y_val")
    margin = check_real("margin", margin, minimum=0)
    mining = check_choice("mining", mining, MINING_KINDS)
    n_classes = check_int("n_classes", n_classes, minimum=1)

    def loss_fn(m, xb, yb):
        return triplet_loss_cosine(m(xb), yb, margin, mining)

    def score(m):
        return embedding_accuracy(m, x, y, x_val, y_val, n_classes)

    return _train_selected(model, loss_fn, score, x, y, n_epochs,
                           scheduler=scheduler, select_from=select_from,
                           batch_size=batch_size, lr=lr,
                           weight_decay=weight_decay, seed=seed,
                           show=progress, desc=desc)


def fit_softmax(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                x_val: torch.Tensor, y_val: torch.Tensor, n_epochs: int, *,
                select_from: int = 1, batch_size: int = 64,
                lr: float = 1e-3, weight_decay: float = 1e-5, seed: int = 0,
                progress: bool | None = None,
                desc: str = "softmax") -> TrainResult:
    """Train a classifier with cross-entropy; keep its best epoch.

    The baseline of :func:`train_embedder`, with the same protocol: Adam
    (``lr``, ``weight_decay``) over the same shuffled batches (same
    ``seed``), minimising the cross-entropy of the model's logits; after
    each epoch the arg-max accuracy on the validation split
    (:func:`sparselib.train.accuracy`); at the end the model is loaded
    with the best epoch's weights (from ``select_from`` on) and left in
    evaluation mode. For :func:`mlp` ``(784, 64, 10)``, EmbedderSDR's
    softmax network. Chapter "k-winners-take-all and binary SDR
    embeddings".

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(batch, ...)`` inputs to ``(batch, n_classes)`` logits.
    x : torch.Tensor
        ``(N, ...)`` floating-point training inputs.
    y : torch.Tensor
        ``(N,)`` integer labels.
    x_val : torch.Tensor
        ``(N_val, ...)`` validation inputs.
    y_val : torch.Tensor
        ``(N_val,)`` their labels.
    n_epochs : int
        Passes over ``(x, y)`` (>= 1).
    select_from : int, default 1
        The first epoch eligible for selection, in ``[1, n_epochs]``.
    batch_size : int, default 64
        Examples per step (>= 1).
    lr : float, default 1e-3
        Adam's learning rate (> 0).
    weight_decay : float, default 1e-5
        Adam's L2 weight decay (>= 0).
    seed : int, default 0
        Seeds the shuffling.
    progress : bool, optional
        Show a bar over the epochs (``None``: yes unless at quick scale).
    desc : str, default "softmax"
        The bar's label.

    Returns
    -------
    TrainResult
        The history, the selected epoch and its validation accuracy.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If the shapes disagree or a number is out of range.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got "
                        f"{type(model).__name__}")
    _check_xy(x, y, "x", "y")
    _check_xy(x_val, y_val, "x_val", "y_val")

    def loss_fn(m, xb, yb):
        return F.cross_entropy(m(xb), yb)

    def score(m):
        return accuracy(m, x_val, y_val)

    return _train_selected(model, loss_fn, score, x, y, n_epochs,
                           scheduler=None, select_from=select_from,
                           batch_size=batch_size, lr=lr,
                           weight_decay=weight_decay, seed=seed,
                           show=progress, desc=desc)
