"""Classifiers with an L1 penalty on their hidden activity (seed 001).

Seed 001 asks how sparse the hidden layer of an MNIST classifier can get
before accuracy suffers, by adding ``lam * sum |h|`` to the cross-entropy.
This module holds its three networks, written for PyTorch:

* :class:`SparseMLP` -- ``x -> h = ReLU(W x + b) -> logits``: one hidden
  layer (784 units in the seed), softmax output.
* :class:`SparseConvNet` -- ``x -> h = ReLU(conv(x)) -> logits``: one
  convolution (200 feature maps, 3x3, stride 2 in the seed: ``200 x 14 x
  14 = 39,200`` units), then a linear softmax layer on the flattened maps.
  Given a ``decoder`` (a :class:`sparselib.layers.ConvDecoder` kind), the
  same feature maps also reconstruct the image: a convolutional sparse
  autoencoder trained jointly with the classifier.

Every model has ``units(x)`` -- the penalised activity, flattened to
``(batch, n_units)`` for :mod:`sparselib.metrics` -- and ``loss(x, y)``
returning ``(total, logs)`` for :func:`sparselib.train.fit`:

``total = CE(logits, y) + recon_weight * mean_batch ||x_hat - x||^2
+ lam * mean_batch sum_j |h_j|``.

The penalty is a mean over the batch (:func:`sparselib.losses.l1_activity`),
so ``lam`` does not depend on the batch size. Seed 001 sums over the batch
of 100 instead: its weight ``c`` is our ``lam = 100 c``.

:func:`activity_stats` measures a layer too large to hold over a whole test
set (10,000 x 39,200 floats is 1.6 GB): it streams the inputs in batches
and keeps per-input and per-unit sums. :func:`normal_init_` is the
initialisation of the seed's TensorFlow code (weights N(0, 0.1^2), biases
0.1), and :func:`train_steps` its training protocol (Adam, batches of 100,
a fixed number of iterations, test accuracy every few iterations).

Introduced in the chapter "Sparse activity in classifiers".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .data import loader
from .layers import ConvDecoder
from .losses import l1_activity, reconstruction_loss
from .train import fit
from .utils import check_int

__all__ = ["normal_init_", "SparseMLP", "SparseConvNet", "train_steps",
           "ActivityStats", "activity_stats", "steps_to_reach"]


def _check_lam(lam):
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or \
            not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    return float(lam)


def normal_init_(module: nn.Module, std: float = 0.1,
                 bias: float = 0.1) -> nn.Module:
    """Weights ``N(0, std^2)`` and constant biases, in place; returns ``module``.

    Applies to every :class:`torch.nn.Linear`, :class:`torch.nn.Conv2d` and
    :class:`sparselib.layers.ConvDecoder` inside ``module``. With the
    defaults it is seed 001's initialisation; the positive bias starts
    every ReLU unit on. Chapter "Sparse activity in classifiers".
    """
    if not (isinstance(std, (int, float)) and std > 0):
        raise ValueError(f"std must be a number > 0, got {std!r}")
    if not (isinstance(bias, (int, float)) and math.isfinite(bias)):
        raise ValueError(f"bias must be a finite number, got {bias!r}")
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, ConvDecoder)):
                m.weight.normal_(0.0, std)
                if m.bias is not None:
                    m.bias.fill_(bias)
    return module


def _labels(y, n, n_classes):
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y must be a 1-d tensor of {n} class labels; got "
                         f"{getattr(y, 'shape', type(y).__name__)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class labels, got {y.dtype}")
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"y must lie in [0, {n_classes}); got values from "
                         f"{int(y.min())} to {int(y.max())}")
    return y


class _L1Classifier(nn.Module):
    """Shared parts: the penalised loss and the flattened units."""

    n_classes: int
    lam: float
    recon_weight: float = 0.0

    def units(self, x: torch.Tensor) -> torch.Tensor:
        """The penalised activity, flattened: ``(batch, n_units)``."""
        return self.hidden(x).flatten(1)

    def decode(self, h):
        """No decoder: None (models with one override this)."""
        return None

    def loss(self, x: torch.Tensor, y: torch.Tensor):
        """``(total, logs)``: cross-entropy + reconstruction + L1 activity.

        ``logs`` holds ``"ce"``, ``"l1"`` (the unweighted penalty, mean over
        the batch of ``sum_j h_j``), ``"avr"`` (mean active units per input
        in the batch) and, with a decoder, ``"recon"`` (the per-pixel MSE).
        """
        h = self.hidden(x)
        _labels(y, h.shape[0], self.n_classes)
        logits = self.classify(h)
        flat = h.flatten(1)
        ce = F.cross_entropy(logits, y)
        l1 = l1_activity(flat)
        total = ce + self.lam * l1
        logs = {"ce": ce.item(), "l1": l1.item(),
                "avr": (flat > 0).sum(dim=1).float().mean().item()}
        x_hat = self.decode(h)
        if x_hat is not None:
            target = self._image(x)
            total = total + self.recon_weight * reconstruction_loss(
                x_hat, target, "sum")
            logs["recon"] = F.mse_loss(x_hat, target).item()
        return total, logs


class SparseMLP(_L1Classifier):
    """One hidden ReLU layer with an L1 penalty on its activity.

    ``forward(x)`` takes ``(batch, n_inputs)`` (or images that flatten to
    it) and returns logits ``(batch, n_classes)``; ``hidden(x)`` returns
    ``h`` ``(batch, n_hidden)``. Chapter "Sparse activity in classifiers".

    Parameters
    ----------
    n_inputs, n_hidden, n_classes : int
        Layer widths (seed 001: 784, 784, 10).
    lam : float
        Weight of the penalty ``mean_batch sum_j h_j`` (>= 0; 0 for none).
    init : str
        ``"normal"`` (seed 001's N(0, 0.1^2) weights, biases 0.1, see
        :func:`normal_init_`) or ``"default"`` (PyTorch's).
    """

    def __init__(self, n_inputs: int = 784, n_hidden: int = 784,
                 n_classes: int = 10, lam: float = 0.0,
                 init: str = "normal"):
        super().__init__()
        self.n_inputs = check_int("n_inputs", n_inputs, minimum=1)
        self.n_hidden = check_int("n_hidden", n_hidden, minimum=1)
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        self.lam = _check_lam(lam)
        self.encoder = nn.Linear(self.n_inputs, self.n_hidden)
        self.out = nn.Linear(self.n_hidden, self.n_classes)
        _init(self, init)

    @property
    def n_units(self) -> int:
        """Number of penalised units."""
        return self.n_hidden

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """``h = ReLU(W x + b)``: ``(batch, n_hidden)``."""
        if x.ndim < 2 or x[0].numel() != self.n_inputs:
            raise ValueError(f"x must have shape (batch, {self.n_inputs}) or "
                             f"flatten to it; got {tuple(x.shape)}")
        return F.relu(self.encoder(x.flatten(1)))

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from hidden activity."""
        return self.out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)``."""
        return self.classify(self.hidden(x))


def _init(model, init):
    if init == "normal":
        normal_init_(model)
    elif init != "default":
        raise ValueError(f"init must be 'normal' or 'default', got {init!r}")


class SparseConvNet(_L1Classifier):
    """A convolution, an L1 penalty on its feature maps, a softmax layer.

    Inputs are ``(batch, H * W)``, ``(batch, H, W)`` or ``(batch, 1, H,
    W)``. ``hidden(x)`` returns the maps ``(batch, n_maps, H', W')``,
    ``forward(x)`` the logits and ``reconstruct(x)`` the image ``(batch, 1,
    H, W)``. Chapter "Sparse activity in classifiers".

    Parameters
    ----------
    image_shape : tuple of int
        ``(H, W)`` of the one-channel input (MNIST: 28 x 28).
    n_maps : int
        Feature maps (seed 001: 200).
    kernel_size, stride : int
        Of the convolution (seed: 3 and 2; padding ``kernel_size // 2``, so
        28 x 28 becomes 14 x 14).
    n_classes : int
        Outputs of the linear softmax layer on the flattened maps.
    lam : float
        Weight of the penalty ``mean_batch sum |h|`` over all
        ``n_maps x H' x W'`` units (>= 0).
    decoder : str or None
        None (a classifier only), ``"subpixel"`` or ``"transposed"``: also
        reconstruct the image from the same feature maps with a
        :class:`sparselib.layers.ConvDecoder` (upscale = ``stride``) and
        add ``recon_weight * mean_batch ||x_hat - x||^2`` to the loss (seed
        001's joint convolutional sparse autoencoder).
    decoder_kernel : int
        The decoder's kernel size.
    max_norm : float or None
        The decoder's per-feature-map weight-norm bound (seed 001 clips to
        1); None for none.
    recon_weight : float
        Weight of the reconstruction term (> 0 with a decoder).
    init : str
        ``"normal"`` (seed 001) or ``"default"`` (PyTorch's).
    """

    def __init__(self, image_shape=(28, 28), n_maps: int = 200,
                 kernel_size: int = 3, stride: int = 2, n_classes: int = 10,
                 lam: float = 0.0, decoder: str | None = None,
                 decoder_kernel: int = 3, max_norm: float | None = 1.0,
                 recon_weight: float = 1.0, init: str = "normal"):
        super().__init__()
        try:
            H, W = (check_int("image_shape[0]", image_shape[0], minimum=1),
                    check_int("image_shape[1]", image_shape[1], minimum=1))
        except (TypeError, IndexError):
            raise TypeError(f"image_shape must be a pair (H, W), got "
                            f"{image_shape!r}") from None
        if len(image_shape) != 2:
            raise ValueError(f"image_shape must be a pair (H, W), got "
                             f"{image_shape!r}")
        self.image_shape = (H, W)
        self.n_maps = check_int("n_maps", n_maps, minimum=1)
        k = check_int("kernel_size", kernel_size, minimum=1)
        s = check_int("stride", stride, minimum=1)
        if H % s or W % s:
            raise ValueError(f"image_shape {self.image_shape} must be "
                             f"divisible by stride {s}")
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        self.lam = _check_lam(lam)
        self.conv = nn.Conv2d(1, self.n_maps, k, stride=s, padding=k // 2)
        self.map_shape = ((H + 2 * (k // 2) - k) // s + 1,
                          (W + 2 * (k // 2) - k) // s + 1)
        self.out = nn.Linear(self.n_units, self.n_classes)
        if decoder is None:
            self.decoder = None
        else:
            if self.map_shape != (H // s, W // s):
                raise ValueError(f"with a decoder the maps must be exactly "
                                 f"1/{s} of the image; kernel_size {k} "
                                 f"gives {self.map_shape}")
            self.decoder = ConvDecoder(self.n_maps, 1, s, decoder,
                                       decoder_kernel, max_norm)
            if not (isinstance(recon_weight, (int, float))
                    and recon_weight > 0 and math.isfinite(recon_weight)):
                raise ValueError(f"recon_weight must be a number > 0, got "
                                 f"{recon_weight!r}")
            self.recon_weight = float(recon_weight)
        _init(self, init)

    @property
    def n_units(self) -> int:
        """Number of penalised units, ``n_maps x H' x W'``."""
        return self.n_maps * self.map_shape[0] * self.map_shape[1]

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.image_shape
        if x.ndim >= 2 and x.shape[1:] in ((H * W,), (H, W), (1, H, W)):
            return x.reshape(x.shape[0], 1, H, W)
        raise ValueError(f"x must have shape (batch, {H * W}), (batch, {H}, "
                         f"{W}) or (batch, 1, {H}, {W}); got "
                         f"{tuple(x.shape)}")

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps ``ReLU(conv(x))``: ``(batch, n_maps, H', W')``."""
        return F.relu(self.conv(self._image(x)))

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from the feature maps."""
        return self.out(h.flatten(1))

    def decode(self, h: torch.Tensor):
        """The reconstruction ``(batch, 1, H, W)``, or None without decoder."""
        return None if self.decoder is None else self.decoder(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)``."""
        return self.classify(self.hidden(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's image of ``x``: ``(batch, 1, H, W)``."""
        if self.decoder is None:
            raise RuntimeError("this SparseConvNet has no decoder; build it "
                               "with decoder='subpixel' or 'transposed'")
        return self.decoder(self.hidden(x))


def train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                n_steps: int, *, evaluate, eval_every: int = 100,
                batch_size: int = 100, lr: float = 1e-3, seed: int = 0,
                desc: str = "training", progress=None):
    """Train ``model`` by seed 001's protocol; return the :class:`~sparselib.train.History`.

    Adam at learning rate ``lr`` on shuffled batches of ``batch_size``
    examples of ``(x, y)`` (reshuffled each epoch, the order fixed by
    ``seed``), ``n_steps`` iterations in all, minimising ``model.loss(x,
    y)``; ``evaluate(model) -> dict`` runs every ``eval_every`` iterations
    into ``History.eval`` (see :func:`sparselib.train.fit`). Chapter
    "Sparse activity in classifiers".
    """
    n_steps = check_int("n_steps", n_steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    data = loader(x, y, batch_size=batch_size,
                  generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return fit(model, data, lambda m, a, b: m.loss(a, b), opt,
               -(-n_steps // len(data)), max_steps=n_steps,
               eval_every=eval_every, evaluate=evaluate, desc=desc,
               progress=progress)


@dataclass
class ActivityStats:
    """What :func:`activity_stats` measured over a set of inputs.

    ``l0`` ``(n_inputs,)``: active units per input. ``population``
    ``(n_inputs,)``: Treves-Rolls sparsity of each input's response.
    ``duty`` ``(n_units,)``: share of inputs on which each unit is active.
    ``lifetime`` ``(n_units,)``: Treves-Rolls sparsity of each unit's
    responses (NaN for dead units). ``mean`` ``(n_units,)``: each unit's
    mean activity. Definitions as in :mod:`sparselib.metrics`.
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
        """Mean active units per input (seed 001's AVR)."""
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
        """The headline numbers as floats."""
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

    ``units`` maps a batch of ``x`` to activations ``(batch, n_units)``
    (e.g. a model's ``units`` method, in eval mode). A unit is active where
    ``|h| > eps``. Equal to :func:`sparselib.metrics.l0`,
    :func:`~sparselib.metrics.population_sparsity`,
    :func:`~sparselib.metrics.duty_cycle` and
    :func:`~sparselib.metrics.lifetime_sparsity` on the whole ``(n,
    n_units)`` matrix, without ever holding it. Chapter "Sparse activity in
    classifiers".
    """
    from .metrics import population_sparsity

    batch_size = check_int("batch_size", batch_size, minimum=1)
    if not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] < 2:
        raise ValueError("x must be a tensor of at least 2 inputs")
    l0, pop = [], []
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
        l0.append(active.sum(dim=1).float().cpu())
        pop.append(population_sparsity(h).cpu())
        if count is None:
            count = torch.zeros(h.shape[1], dtype=torch.float64,
                                device=h.device)
            s1, s2 = torch.zeros_like(count), torch.zeros_like(count)
        count += active.sum(dim=0)
        s1 += a.sum(dim=0)
        s2 += (a * a).sum(dim=0)
    n = x.shape[0]
    m1, m2 = s1 / n, s2 / n
    ratio = torch.where(m2 > 0, m1 ** 2 / m2.clamp_min(1e-300),
                        torch.full_like(m2, float("nan")))
    life = (1 - ratio) / (1 - 1 / n)
    return ActivityStats(l0=torch.cat(l0), population=torch.cat(pop),
                         duty=(count / n).float().cpu(),
                         lifetime=life.float().cpu(), mean=m1.float().cpu())


def steps_to_reach(history, key: str, target: float):
    """First evaluation step at which ``history.eval[key] >= target``, or None.

    ``history`` is a :class:`sparselib.train.History` from
    ``fit(..., eval_every=...)``. "How many iterations to 98 % test
    accuracy" is how the chapter compares learning speed. Chapter "Sparse
    activity in classifiers".
    """
    if key not in history.eval or "step" not in history.eval:
        raise KeyError(f"history.eval has no {key!r} (have "
                       f"{sorted(history.eval)}); train with eval_every")
    for s, v in zip(history.eval["step"], history.eval[key]):
        if v >= target:
            return int(s)
    return None
