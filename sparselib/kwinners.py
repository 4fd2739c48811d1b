"""k-winners-take-all layers with boosting and duty cycles.

A k-winners-take-all (kWTA) layer keeps the ``k`` largest of a layer's
``n`` activations and sets the others to zero. The layers here follow the
semantics of nupic.torch's ``KWinners`` and ``KWinners2d`` (Numenta; Ahmad
and Scheinkman 2019, "How Can We Be So Dense?"), so that a nupic user can
switch without surprises:

* ``k = round(n * percent_on)`` winners in training; at inference
  ``k_inference = int(k * k_inference_factor)`` for :class:`KWinners` and
  ``round(n * percent_on * k_inference_factor)`` for :class:`KWinners2d`.
* **Boosting.** Winners are chosen on the boosted value
  ``x * exp(boost_strength * (k / n - duty_cycle))``, but the *original*
  ``x`` is passed on; gradients reach the winners only.
* **Ties.** By default (``break_ties=False``) every unit whose boosted value
  equals the k-th largest one wins too, so a row can have more than ``k``
  winners; ``break_ties=True`` keeps exactly ``k``.
* **Duty cycles.** Each training forward updates the running fraction of
  inputs on which each unit fired (output > 0), over a window of
  ``duty_cycle_period`` samples: ``period = min(duty_cycle_period,
  samples seen)``, ``duty = (duty * (period - batch) + count) / period``.
* ``update_boost_strength`` (for ``model.apply``) multiplies the boost
  strength by ``boost_strength_factor``, once per epoch.

Two traps of the reference are closed here. A training batch larger than
``duty_cycle_period`` gives the old estimate a negative weight and makes it
oscillate: the layers raise a ``ValueError`` instead. Without ``relu=True``,
negative values can win when a row has fewer than ``k`` positive entries,
while the duty cycle counts only positive outputs, so such a unit looks
silent and gets the largest boost factor, ``exp(boost_strength * k / n)``,
which pushes a negative value further down: the semantics are kept (a
nupic model gives the same outputs, up to floating-point rounding), and
``relu=True``, an option of both libraries, avoids the trap; the chapter
shows both.

**Speed.** On the CPU, for inputs of at least ``2 ** 17`` values, the
winners of a row are found with one ``topk(k + 1)``, which also reveals ties at the threshold (the k-th and
(k + 1)-th values are equal); the output, its gradient and the duty-cycle
counts are then formed from the ``k`` winners' indices, never from a full
mask. Smaller inputs, a batch with a tie at some row's threshold, the
local 2-d mode and other devices take the straightforward path (threshold, mask, fill), which
gives the same result.

Introduced in the chapter "k-winners-take-all and binary SDR embeddings".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .utils import check_int, check_real, check_tensor

__all__ = [
    "kwinners",
    "kwinners2d",
    "KWinnersBase",
    "KWinners",
    "KWinners2d",
    "update_boost_strength",
    "binary_entropy",
    "max_entropy",
]


# --------------------------------------------------------------------------
# entropy of duty cycles


def binary_entropy(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary entropy in bits of each unit's firing probability, and its sum.

    ``p`` is a tensor of probabilities (any shape, e.g. a layer's duty
    cycles); returns ``(H(p), H(p).sum())`` with
    ``H(p) = -p log2 p - (1 - p) log2 (1 - p)`` and ``H(0) = H(1) = 0``.
    Chapter "k-winners-take-all and binary SDR embeddings".
    """
    check_tensor("p", p, floating=True)
    ent = -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)) / math.log(2)
    return ent, ent.sum()


def max_entropy(n: int, k: int) -> float:
    """The largest total entropy, in bits, of ``n`` units with ``k`` active.

    Reached when every unit fires on a fraction ``k / n`` of the inputs:
    ``n * H(k / n)``; 0 when ``k`` is 0 or ``n``. Chapter "k-winners-take-all
    and binary SDR embeddings".
    """
    n = check_int("n", n, minimum=1)
    k = check_int("k", k, minimum=0, maximum=n)
    s = k / n
    if s in (0.0, 1.0):
        return 0.0
    return -n * (s * math.log2(s) + (1 - s) * math.log2(1 - s))


# --------------------------------------------------------------------------
# the k-winners operation


class _Gate(torch.autograd.Function):
    """``y[r, idx[r, j]] = x[r, idx[r, j]]`` for the winners, 0 elsewhere.

    ``idx`` (batch, m) holds the winners' columns plus, in column ``drop``
    of each row, one that must stay 0 (the (k + 1)-th largest value, which
    ``topk(k + 1)`` returns with the winners); ``keep`` (batch, m) is an
    optional mask of the others. Linear in ``x``: the backward pass is the
    same gate applied to the incoming gradient, so it can be
    differentiated again.
    """

    @staticmethod
    def forward(ctx, x, idx, drop, keep):
        vals = x.gather(1, idx)
        if keep is not None:
            vals = torch.where(keep, vals, 0)
        y = torch.zeros_like(x).scatter_(1, idx, vals)
        if drop is not None:
            y.scatter_(1, drop, 0)
        ctx.save_for_backward(idx, drop, keep)
        return y

    @staticmethod
    def backward(ctx, grad):
        idx, drop, keep = ctx.saved_tensors
        return _Gate.apply(grad, idx, drop, keep), None, None, None


def _boost_factors(duty, k, n, boost_strength):
    """``exp(boost_strength * (k / n - duty))``, or ``None`` without boost."""
    if boost_strength > 0.0:
        return torch.exp((float(k) / n - duty) * boost_strength)
    return None


#: Below this many values a batch takes the mask path (fewer operations).
_FAST_PATH_MIN = 1 << 17


def _fast_select(b, k, relu, break_ties):
    """Winners of each row of ``b`` (batch, n) as ``(idx, drop, keep)``
    for :class:`_Gate`, or ``None`` when some row has a tie at its
    threshold in threshold mode (the winners can then lie outside the
    ``topk`` block)."""
    if break_ties:
        vals, idx = b.topk(k, dim=1, sorted=False)
        return idx, None, (vals > 0 if relu else None)
    vals, idx = b.topk(k + 1, dim=1, sorted=False)
    # the (k+1)-th and the k-th largest values of each row
    low, pos = vals.topk(2, dim=1, largest=False, sorted=True)
    if bool((low[:, 0] == low[:, 1]).any()):  # CPU tensors only: no sync
        return None
    return idx, idx.gather(1, pos[:, :1]), (vals > 0 if relu else None)


def _mask_off(b, k, dim, relu, break_ties):
    """Boolean mask of the units that are switched off (not winners)."""
    if break_ties:
        idx = b.topk(k, dim=dim, sorted=False).indices
        off = torch.ones_like(b, dtype=torch.bool).scatter_(dim, idx, False)
    else:
        kth = b.topk(k, dim=dim, sorted=False).values.amin(dim, keepdim=True)
        off = b < kth
    if relu:
        off |= b <= 0
    return off


def _kwinners_rows(x2, bf, k, relu, break_ties, counts=True):
    """k-winners over the rows of ``x2`` (batch, n) with per-unit boost
    factors ``bf`` (n,) or ``None``.

    Returns ``(y2, counts)``: the output and, if asked, the number of
    positive outputs per unit (n,) in ``x2``'s dtype (else ``None``).
    """
    n = x2.shape[1]
    with torch.no_grad():
        b = x2.detach() if bf is None else x2.detach() * bf
        sel = (_fast_select(b, k, relu, break_ties)
               if x2.device.type == "cpu" and k < n
               and x2.numel() >= _FAST_PATH_MIN else None)
    if sel is None:
        with torch.no_grad():
            off = _mask_off(b, k, 1, relu, break_ties)
        y2 = x2.masked_fill(off, 0)
        c = (y2.detach() > 0).sum(0).to(x2.dtype) if counts else None
        return y2, c
    y2 = _Gate.apply(x2, *sel)
    c = None
    if counts:
        with torch.no_grad():
            idx = sel[0]
            won = y2.detach().gather(1, idx) > 0  # the dropped one is 0
            c = torch.zeros(n, dtype=x2.dtype, device=x2.device).index_add_(
                0, idx.reshape(-1), won.reshape(-1).to(x2.dtype))
    return y2, c


def _check_k(k, n):
    return check_int("k", k, minimum=1, maximum=n)


def _check_boost(boost_strength):
    return check_real("boost_strength", boost_strength, minimum=0.0)


def kwinners(x: torch.Tensor, duty_cycles: torch.Tensor, k: int,
             boost_strength: float, break_ties: bool = False,
             relu: bool = False) -> torch.Tensor:
    """Keep the ``k`` winners of each row of ``x``, zero the rest.

    Parameters
    ----------
    x : torch.Tensor
        Activations ``(batch, n)``.
    duty_cycles : torch.Tensor
        Each unit's duty cycle ``(n,)``: the fraction of inputs on which it
        fired. Only used for boosting.
    k : int
        Number of winners, ``1 <= k <= n``.
    boost_strength : float
        ``>= 0``; winners are chosen on
        ``x * exp(boost_strength * (k / n - duty_cycles))``. 0 turns
        boosting off.
    break_ties : bool, default False
        ``False`` keeps every unit tied with the k-th boosted value (a row
        can have more than ``k`` winners); ``True`` keeps exactly ``k``.
    relu : bool, default False
        Also switch off units whose boosted value is ``<= 0``, as a ReLU
        before the layer would.

    Returns
    -------
    torch.Tensor
        ``(batch, n)``: the original values of the winners, 0 elsewhere.
        Gradients reach the winners only.

    Follows nupic.torch's ``functions.kwinners`` (Ahmad and Scheinkman
    2019). Chapter "k-winners-take-all and binary SDR embeddings".
    """
    check_tensor("x", x, ndim=2, floating=True)
    n = x.shape[1]
    check_tensor("duty_cycles", duty_cycles)
    if tuple(duty_cycles.shape) != (n,):
        raise ValueError(f"duty_cycles must have shape ({n},) for x of "
                         f"shape {tuple(x.shape)}; got "
                         f"{tuple(duty_cycles.shape)}")
    k = _check_k(k, n)
    boost = _check_boost(boost_strength)
    bf = _boost_factors(duty_cycles.to(x.dtype), k, n, boost)
    return _kwinners_rows(x, bf, k, bool(relu), bool(break_ties),
                          counts=False)[0]


def _kwinners2d(x, duty_cycles, k, boost_strength, local, break_ties,
                relu, counts=True):
    """:func:`kwinners2d` returning ``(y, counts per channel (C,) or
    None)``; the counts are divided by ``H * W``."""
    bsz, c, h, w = x.shape
    hw = h * w
    duty = duty_cycles.to(x.dtype)
    if local:
        bf = _boost_factors(duty, k, c, boost_strength)
        with torch.no_grad():
            b = x.detach() if bf is None else x.detach() * bf
            off = _mask_off(b, k, 1, relu, break_ties)
        y = x.masked_fill(off, 0)
        cnt = ((y.detach() > 0).sum((0, 2, 3)).to(x.dtype) / hw
               if counts else None)
        return y, cnt
    bf = _boost_factors(duty, k, c * hw, boost_strength)
    if bf is not None:
        bf = bf.reshape(c, 1).expand(c, hw).reshape(c * hw)
    y2, cnt = _kwinners_rows(x.reshape(bsz, c * hw), bf, k, relu,
                             break_ties, counts)
    if cnt is not None:
        cnt = cnt.reshape(c, hw).sum(1) / hw
    return y2.reshape(x.shape), cnt


def _check_2d(x, duty_cycles):
    check_tensor("x", x, ndim=4, floating=True)
    check_tensor("duty_cycles", duty_cycles)
    c = x.shape[1]
    if duty_cycles.numel() != c or (duty_cycles.ndim == 4 and tuple(
            duty_cycles.shape) != (1, c, 1, 1)):
        raise ValueError(f"duty_cycles must have shape (1, {c}, 1, 1) for x "
                         f"of shape {tuple(x.shape)}; got "
                         f"{tuple(duty_cycles.shape)}")
    return duty_cycles.reshape(1, c, 1, 1)


def kwinners2d(x: torch.Tensor, duty_cycles: torch.Tensor, k: int,
               boost_strength: float, local: bool = True,
               break_ties: bool = False, relu: bool = False) -> torch.Tensor:
    """k-winners of feature maps ``x`` ``(batch, C, H, W)``.

    Parameters
    ----------
    x : torch.Tensor
        Feature maps ``(batch, C, H, W)``.
    duty_cycles : torch.Tensor
        Each channel's duty cycle ``(1, C, 1, 1)``.
    k : int
        Number of winners: among the ``C`` channels at each position when
        ``local``, among all ``C * H * W`` values of a sample otherwise.
    boost_strength : float
        ``>= 0``; the boost factor is
        ``exp(boost_strength * (k / N - duty_cycles))`` with ``N = C``
        (local) or ``C * H * W`` (global).
    local : bool, default True
        Choose the winners at each position (True) or over the whole sample
        (False). The module :class:`KWinners2d` defaults to global.
    break_ties : bool, default False
        As in :func:`kwinners`.
    relu : bool, default False
        As in :func:`kwinners`.

    Returns
    -------
    torch.Tensor
        ``(batch, C, H, W)``: the winners' original values, 0 elsewhere.

    Follows nupic.torch's ``functions.kwinners2d``; :class:`KWinners2d`
    is the module that keeps its duty cycles.
    """
    duty = _check_2d(x, duty_cycles)
    n = x.shape[1] if local else x.shape[1] * x.shape[2] * x.shape[3]
    k = _check_k(k, n)
    boost = _check_boost(boost_strength)
    return _kwinners2d(x, duty, k, boost, bool(local), bool(break_ties),
                       bool(relu), counts=False)[0]


# --------------------------------------------------------------------------
# modules


def update_boost_strength(m: nn.Module) -> None:
    """Decay the boost strength of ``m`` if it is a k-winners layer.

    For ``model.apply(sl.kwinners.update_boost_strength)`` once per epoch.
    Chapter "k-winners-take-all and binary SDR embeddings".
    """
    if isinstance(m, KWinnersBase):
        m.update_boost_strength()


class KWinnersBase(nn.Module):
    """What :class:`KWinners` and :class:`KWinners2d` share.

    Buffers: ``boost_strength`` (0-d) and ``duty_cycle`` (set by the
    subclasses).
    Chapter "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    percent_on : float
        Fraction of units that win in training, in (0, 1).
    k_inference_factor : float
        At inference ``percent_on * k_inference_factor`` of the units win;
        the product must lie in (0, 1).
    boost_strength : float
        ``>= 0`` (0 turns boosting off).
    boost_strength_factor : float
        In [0, 1]: :meth:`update_boost_strength` multiplies the boost
        strength by it.
    duty_cycle_period : int
        Number of samples over which the duty cycles average (>= 1). A
        training batch may not be larger.
    """

    def __init__(self, percent_on: float, k_inference_factor: float = 1.0,
                 boost_strength: float = 1.0,
                 boost_strength_factor: float = 1.0,
                 duty_cycle_period: int = 1000):
        super().__init__()
        percent_on = check_real("percent_on", percent_on, minimum=0.0,
                                maximum=1.0, min_open=True, max_open=True)
        k_inference_factor = check_real("k_inference_factor",
                                        k_inference_factor, minimum=0.0,
                                        min_open=True)
        if not percent_on * k_inference_factor < 1.0:
            raise ValueError(
                f"percent_on * k_inference_factor must be < 1 (the share of "
                f"winners at inference); got {percent_on} * "
                f"{k_inference_factor} = {percent_on * k_inference_factor}")
        boost_strength = _check_boost(boost_strength)
        self.boost_strength_factor = check_real(
            "boost_strength_factor", boost_strength_factor, minimum=0.0,
            maximum=1.0)
        self.duty_cycle_period = check_int("duty_cycle_period",
                                           duty_cycle_period, minimum=1)
        self.percent_on = percent_on
        self.percent_on_inference = percent_on * k_inference_factor
        self.k_inference_factor = k_inference_factor
        self.learning_iterations = 0
        self.n = 0
        self.k = 0
        self.k_inference = 0
        # the buffer is saved in the state dict; the float copy is read in
        # Python without a device synchronisation
        self.register_buffer("boost_strength",
                             torch.tensor(boost_strength, dtype=torch.float))
        self._cached_boost_strength = boost_strength

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._cached_boost_strength = float(self.boost_strength)

    def extra_repr(self) -> str:
        return (f"n={self.n}, percent_on={self.percent_on}, "
                f"boost_strength={self._cached_boost_strength}, "
                f"boost_strength_factor={self.boost_strength_factor}, "
                f"k_inference_factor={self.k_inference_factor}, "
                f"duty_cycle_period={self.duty_cycle_period}")

    def update_boost_strength(self) -> None:
        """Multiply the boost strength by ``boost_strength_factor``."""
        self._cached_boost_strength *= self.boost_strength_factor
        self.boost_strength.fill_(self._cached_boost_strength)

    def _check_batch(self, batch: int) -> None:
        if batch > self.duty_cycle_period:
            raise ValueError(
                f"a training batch of {batch} samples is larger than "
                f"duty_cycle_period={self.duty_cycle_period}: the duty-cycle "
                f"update would weight the old estimate by "
                f"{self.duty_cycle_period - batch} < 0 and make it "
                f"oscillate; use duty_cycle_period >= the batch size")

    def _update_from_counts(self, counts: torch.Tensor, batch: int) -> None:
        """``duty = (duty * (period - batch) + counts) / period``."""
        self.learning_iterations += batch
        period = min(self.duty_cycle_period, self.learning_iterations)
        duty = self.duty_cycle.view(-1)
        # nupic.torch's order of operations, so that the duty cycles agree
        # to the last bit (ties on quantised inputs depend on them)
        duty.mul_(period - batch).add_(counts.to(duty.dtype)).div_(period)

    def entropy(self) -> torch.Tensor:
        """Total binary entropy of the duty cycles, in bits (0-d)."""
        return binary_entropy(self.duty_cycle)[1]

    def max_entropy(self) -> float:
        """The entropy of ``n`` units each firing on ``percent_on`` of the
        inputs (:func:`max_entropy` with ``int(n * percent_on)``)."""
        return max_entropy(self.n, int(self.n * self.percent_on))


class KWinners(KWinnersBase):
    """k-winners-take-all over the units of a layer ``(batch, n)``.

    In training mode each forward updates the buffer ``duty_cycle``
    ``(n,)``; in eval mode ``k_inference`` units win and nothing is
    updated. Follows nupic.torch's ``KWinners``. Chapter "k-winners-take-all
    and binary SDR embeddings".

    Parameters
    ----------
    n : int
        Number of units.
    percent_on : float
        Fraction of winners in training: ``k = round(n * percent_on)``.
    k_inference_factor : float, default 1.5
        At inference ``k_inference = int(k * k_inference_factor)`` win.
    boost_strength : float, default 1.0
        Boosting strength (0 turns it off).
    boost_strength_factor : float, default 0.9
        Decay of the boost strength per :meth:`update_boost_strength`.
    duty_cycle_period : int, default 1000
        Samples over which the duty cycles average.
    break_ties : bool, default False
        Keep exactly ``k`` winners (True) or all units tied with the k-th.
    relu : bool, default False
        Switch off non-positive values as a ReLU would.
    """

    def __init__(self, n: int, percent_on: float,
                 k_inference_factor: float = 1.5,
                 boost_strength: float = 1.0,
                 boost_strength_factor: float = 0.9,
                 duty_cycle_period: int = 1000, break_ties: bool = False,
                 relu: bool = False):
        super().__init__(percent_on=percent_on,
                         k_inference_factor=k_inference_factor,
                         boost_strength=boost_strength,
                         boost_strength_factor=boost_strength_factor,
                         duty_cycle_period=duty_cycle_period)
        self.n = check_int("n", n, minimum=1)
        self.break_ties = bool(break_ties)
        self.relu = bool(relu)
        self.k = int(round(self.n * self.percent_on))
        self.k_inference = int(self.k * self.k_inference_factor)
        for name, value in (("k", self.k), ("k_inference", self.k_inference)):
            if not 1 <= value <= self.n:
                raise ValueError(
                    f"n={self.n} with percent_on={percent_on} and "
                    f"k_inference_factor={k_inference_factor} gives {name}="
                    f"{value} winners; expected 1 <= {name} <= n")
        self.register_buffer("duty_cycle", torch.zeros(self.n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The winners of ``x`` ``(batch, n)``; updates the duty cycles in
        training mode."""
        check_tensor("x", x, ndim=2, floating=True)
        if x.shape[1] != self.n:
            raise ValueError(f"x must have {self.n} units (shape (batch, "
                             f"{self.n})); got shape {tuple(x.shape)}")
        if self.training:
            self._check_batch(x.shape[0])
        k = self.k if self.training else self.k_inference
        bf = _boost_factors(self.duty_cycle.to(x.dtype), k, self.n,
                            self._cached_boost_strength)
        y, counts = _kwinners_rows(x, bf, k, self.relu, self.break_ties,
                                   counts=self.training)
        if self.training:
            with torch.no_grad():
                self._update_from_counts(counts, x.shape[0])
        return y

    def update_duty_cycle(self, x: torch.Tensor) -> None:
        """Update the duty cycles with an output ``x`` ``(batch, n)``:
        a unit fired where its value is > 0."""
        check_tensor("x", x, ndim=2)
        self._check_batch(x.shape[0])
        with torch.no_grad():
            self._update_from_counts((x > 0).sum(0), x.shape[0])

    def extra_repr(self) -> str:
        s = super().extra_repr() + f", break_ties={self.break_ties}"
        return s + (", relu=True" if self.relu else "")


class KWinners2d(KWinnersBase):
    """k-winners-take-all over feature maps ``(batch, C, H, W)``.

    The buffer ``duty_cycle`` ``(1, C, 1, 1)`` holds each channel's
    fraction of active positions. Follows nupic.torch's ``KWinners2d``.
    Chapter "k-winners-take-all and binary SDR embeddings".

    Parameters
    ----------
    channels : int
        Number of channels ``C``.
    percent_on : float, default 0.1
        Fraction of winners in training: ``k = round(N * percent_on)`` with
        ``N = C`` (local) or ``C * H * W`` (global, known at the first
        forward).
    k_inference_factor : float, default 1.5
        ``k_inference = round(N * percent_on * k_inference_factor)``.
    boost_strength : float, default 1.0
        Boosting strength (0 turns it off).
    boost_strength_factor : float, default 0.9
        Decay of the boost strength per :meth:`update_boost_strength`.
    duty_cycle_period : int, default 1000
        Samples over which the duty cycles average.
    local : bool, default False
        Winners among the channels at each position (True) or among all
        values of a sample (False).
    break_ties : bool, default False
        Keep exactly ``k`` winners (True) or all units tied with the k-th.
    relu : bool, default False
        Switch off non-positive values as a ReLU would.
    """

    def __init__(self, channels: int, percent_on: float = 0.1,
                 k_inference_factor: float = 1.5,
                 boost_strength: float = 1.0,
                 boost_strength_factor: float = 0.9,
                 duty_cycle_period: int = 1000, local: bool = False,
                 break_ties: bool = False, relu: bool = False):
        super().__init__(percent_on=percent_on,
                         k_inference_factor=k_inference_factor,
                         boost_strength=boost_strength,
                         boost_strength_factor=boost_strength_factor,
                         duty_cycle_period=duty_cycle_period)
        self.channels = check_int("channels", channels, minimum=1)
        self.local = bool(local)
        self.break_ties = bool(break_ties)
        self.relu = bool(relu)
        if self.local:
            self._set_k(self.channels)
        self.register_buffer("duty_cycle", torch.zeros((1, channels, 1, 1)))

    def _set_k(self, n):
        self.k = int(round(n * self.percent_on))
        self.k_inference = int(round(n * self.percent_on_inference))
        for name, value in (("k", self.k), ("k_inference", self.k_inference)):
            if not 1 <= value <= n:
                raise ValueError(
                    f"{n} units with percent_on={self.percent_on} and "
                    f"k_inference_factor={self.k_inference_factor} give "
                    f"{name}={value} winners; expected 1 <= {name} <= {n}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The winners of ``x`` ``(batch, C, H, W)``; updates the duty
        cycles in training mode."""
        check_tensor("x", x, ndim=4, floating=True)
        if x.shape[1] != self.channels:
            raise ValueError(f"x must have {self.channels} channels; got "
                             f"shape {tuple(x.shape)}")
        n = x.shape[1] * x.shape[2] * x.shape[3]
        if self.n == 0:
            if not self.local:
                self._set_k(n)  # raises before n is set if k would be 0
            self.n = n
        elif n != self.n:
            raise ValueError(f"x must have C * H * W = {self.n} values per "
                             f"sample, as at the first forward; got shape "
                             f"{tuple(x.shape)}")
        if self.training:
            self._check_batch(x.shape[0])
        k = self.k if self.training else self.k_inference
        y, counts = _kwinners2d(
            x, self.duty_cycle, k, self._cached_boost_strength, self.local,
            self.break_ties, self.relu, counts=self.training)
        if self.training:
            with torch.no_grad():
                self._update_from_counts(counts, x.shape[0])
        return y

    def update_duty_cycle(self, x: torch.Tensor) -> None:
        """Update the duty cycles with an output ``x`` ``(batch, C, H, W)``:
        each channel's count of values > 0 divided by ``H * W``."""
        check_tensor("x", x, ndim=4)
        self._check_batch(x.shape[0])
        with torch.no_grad():
            counts = (x > 0).sum((0, 2, 3)).float() / (x.shape[2] *
                                                       x.shape[3])
            self._update_from_counts(counts, x.shape[0])

    def entropy(self) -> torch.Tensor:
        """Total entropy in bits: the channels' duty-cycle entropy times
        ``n / channels`` (every position of a channel counted alike)."""
        return super().entropy() * self.n / self.channels

    def extra_repr(self) -> str:
        s = (f"channels={self.channels}, local={self.local}, "
             f"break_ties={self.break_ties}")
        s += ", relu=True" if self.relu else ""
        return s + ", " + super().extra_repr()
