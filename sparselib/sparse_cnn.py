"""The dense and sparse CNNs of "How Can We Be So Dense?", and their training.

Ahmad and Scheinkman (2019) compare convolutional networks that differ only
in how sparse they are. Every network here has the same plan, re-derived
from the paper and its published configuration files:

* one or more convolutional blocks ``Conv2d(kernel 5, stride 1, no
  padding) -> [BatchNorm2d(affine=False)] -> MaxPool2d(2) -> activation``,
  where the activation is a global k-winners layer
  (:class:`~sparselib.kwinners.KWinners2d`, the ``k`` largest of the
  block's ``C * H * W`` values win) or a ReLU when the block is dense;
* a hidden layer ``Linear -> [BatchNorm1d(affine=False)] -> [Dropout] ->
  activation`` whose weight can be sparse (each unit keeps a fixed random
  fraction ``weight_density`` of its inputs,
  :class:`~sparselib.sparse_weights.SparseWeights`) and whose activation is
  a :class:`~sparselib.kwinners.KWinners` layer or a ReLU;
* a dense ``Linear`` output layer returning logits (the source's
  ``log_softmax`` followed by the NLL loss is the cross-entropy of these
  logits).

A :class:`CNNSpec` holds one network and its training protocol;
:data:`MNIST_NETS` and :data:`GSC_NETS` hold the networks of the paper's
Tables 1 and 3 (MNIST) and of its Google Speech Commands experiments, and
:func:`build_cnn` builds one. :func:`layer_table` recomputes a row of the
paper's Table 3 from the built modules, :func:`count_parameters` and
:func:`count_nonzero` its weight counts.

**Training protocol** (:func:`train_protocol`), as in the paper's code:
plain SGD (momentum and weight decay as configured) with a ``StepLR``
schedule (``step_size = 1``), so epoch ``e`` (counted from 1) trains at
``lr * lr_gamma ** (e - 1)``. The paper's code steps the scheduler
*before* each epoch, but under the PyTorch it pins (1.0.1) that first
call leaves the initial rate in place (PyTorch 1.1 changed this, and now
warns that stepping first skips the first value); so the first epoch
trains at ``lr``, and we step after each epoch to get the same rates. The
first epoch
uses ``first_epoch_batch_size`` (small batches, to settle the duty cycles
of the k-winners layers), later epochs ``batch_size``; after each epoch's
training the boost strength of every k-winners layer is multiplied by
``boost_strength_factor``; then the network is evaluated.

Where this module departs from, or had to choose between, the sources:

* "Dense CNN-2 SP3" has 30 and 64 channels, as the paper's Table 3 says;
  the published MNIST configuration file gives 30 and 30.
* The k-winners layers keep exactly ``k`` winners (``break_ties=True``):
  the paper's code takes a ``topk``; the tie-keeping default of
  :mod:`sparselib.kwinners` (nupic.torch's newer semantics) can let more
  than ``k`` through on tied values.
* The paper's speech experiment trains its first epoch with the ordinary
  batch size (16 for the sparse networks): it has no first-epoch batch
  size, and :data:`GSC_NETS` follow it. nupic.torch's later example for
  the same networks uses 4 (``spec.replace(first_epoch_batch_size=4)``).
  The speech configuration's default weight decay, 0.01, applies to every
  speech network; the MNIST networks have none.
* The paper's speech experiment draws its training batches with a
  class-balanced ``WeightedRandomSampler`` (with replacement) and caps an
  epoch at 5,122 batches; :func:`train_protocol` makes one uniform pass
  without replacement over the given tensors (balance the classes in the
  data if that matters).
* The paper's speech experiment keeps the network of the epoch with the
  best *test* accuracy; its MNIST experiment has no validation set and
  measures the test set after every epoch. :func:`train_protocol` records
  the best validation epoch, which is the honest selection, and the best
  test epoch only for comparison with the paper.

References: S. Ahmad and L. Scheinkman, "How Can We Be So Dense? The
Benefits of Using Highly Sparse Representations", arXiv:1903.11257, 2019
(section "Results", Tables 1-3); the configuration files of Numenta's
``htmpapers`` repository for that paper (values only; no code is copied).

Introduced in the chapter "Noise-robust sparse networks".
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .kwinners import KWinners, KWinners2d, KWinnersBase
from .kwinners import update_boost_strength as _update_boost
from .sparse_weights import SparseWeights, SparseWeightsBase
from .utils import check_choice, check_int, check_labels, \
    check_probability, check_real, check_tensor, progress_enabled

__all__ = [
    "CNNSpec",
    "MNIST_NETS",
    "GSC_NETS",
    "SparseCNN",
    "build_cnn",
    "layer_table",
    "count_parameters",
    "count_nonzero",
    "ProtocolResult",
    "train_protocol",
]


# --------------------------------------------------------------------------
# the specification of a network and its training


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} "
                        f"({type(value).__name__})")
    return value


def _int_tuple(name, value, minimum, allow_none=False):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a tuple of integers, got "
                        f"{value!r} ({type(value).__name__})")
    out = []
    for i, v in enumerate(value):
        if allow_none and v is None:
            out.append(None)
        else:
            out.append(check_int(f"{name}[{i}]", v, minimum=minimum))
    return tuple(out)


@dataclass(frozen=True)
class CNNSpec:
    """One network of the paper and its training protocol.

    Every field is checked when the spec is made (or changed with
    :meth:`replace`), so a bad value fails here, with its name, and not in
    the middle of training. A layer whose ``k`` is ``None`` or equals its
    number of units ``n`` is dense (ReLU), as in the paper's code.

    Parameters
    ----------
    name : str
        The network's name, e.g. ``"Sparse CNN-2"``.
    channels : tuple of int
        Output channels of each convolutional block (one or more).
    conv_k : tuple of int or None
        Winners of each block among its ``C * H * W`` values after
        pooling; ``None`` (or ``C * H * W``) for a ReLU. One per block.
    n_hidden : int
        Units of the hidden linear layer.
    hidden_k : int or None
        Winners of the hidden layer; ``None`` (or ``n_hidden``) for a ReLU.
    weight_density : float, default 1.0
        Fraction of *non-zero* weights of each hidden unit, in (0, 1];
        below 1 the layer is a
        :class:`~sparselib.sparse_weights.SparseWeights` with
        ``sparsity = 1 - weight_density``.
    batch_norm : bool, default False
        Batch normalisation without affine parameters after every
        convolution and after the hidden linear layer.
    dropout : float, default 0.0
        Dropout probability after the hidden layer's batch norm, in [0, 1).
    input_shape : tuple of int, default (1, 28, 28)
        ``(C, H, W)`` of one input.
    n_classes : int, default 10
        Number of output classes (>= 2).
    kernel_size : int, default 5
        Kernel size of every convolution.
    boost_strength : float, default 1.5
        Initial boost strength of every k-winners layer (>= 0).
    boost_strength_factor : float, default 0.85
        Factor in [0, 1] applied to the boost strength after each epoch.
    k_inference_factor : float, default 1.5
        At inference ``k * k_inference_factor`` units win; the product must
        stay below ``n``.
    duty_cycle_period : int, default 1000
        Samples over which the k-winners layers average their duty cycles;
        no training batch may be larger.
    lr : float, default 0.01
        Initial learning rate of SGD (> 0).
    lr_gamma : float, default 0.8
        Factor in (0, 1] of the learning rate per epoch.
    momentum : float, default 0.0
        SGD momentum, in [0, 1).
    weight_decay : float, default 0.0
        SGD weight decay (>= 0).
    epochs : int, default 15
        Number of training epochs.
    batch_size : int, default 64
        Batch size from the second epoch on.
    first_epoch_batch_size : int, default 64
        Batch size of the first epoch.

    Raises
    ------
    TypeError
        If a field has the wrong type.
    ValueError
        If a field is out of range, ``conv_k`` and ``channels`` differ in
        length, a ``k`` exceeds its layer's size, the input is too small
        for the blocks, or a batch exceeds ``duty_cycle_period`` in a
        network with k-winners layers.
    """

    name: str
    channels: tuple[int, ...]
    conv_k: tuple[int | None, ...]
    n_hidden: int
    hidden_k: int | None
    weight_density: float = 1.0
    batch_norm: bool = False
    dropout: float = 0.0
    input_shape: tuple[int, int, int] = (1, 28, 28)
    n_classes: int = 10
    kernel_size: int = 5
    boost_strength: float = 1.5
    boost_strength_factor: float = 0.85
    k_inference_factor: float = 1.5
    duty_cycle_period: int = 1000
    lr: float = 0.01
    lr_gamma: float = 0.8
    momentum: float = 0.0
    weight_decay: float = 0.0
    epochs: int = 15
    batch_size: int = 64
    first_epoch_batch_size: int = 64

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        if not isinstance(self.name, str) or not self.name.strip():
            raise TypeError(f"name must be a non-empty string, got "
                            f"{self.name!r}")
        channels = _int_tuple("channels", self.channels, 1)
        if not channels:
            raise ValueError("channels must name at least one "
                             "convolutional block, got ()")
        conv_k = _int_tuple("conv_k", self.conv_k, 1, allow_none=True)
        if len(conv_k) != len(channels):
            raise ValueError(
                f"conv_k must give one k (or None) per convolutional block: "
                f"channels has {len(channels)} entries {channels}, conv_k "
                f"{len(conv_k)} {conv_k}")
        put("channels", channels)
        put("conv_k", conv_k)
        shape = _int_tuple("input_shape", self.input_shape, 1)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {shape}")
        put("input_shape", shape)
        put("kernel_size", check_int("kernel_size", self.kernel_size,
                                     minimum=1))
        put("n_hidden", check_int("n_hidden", self.n_hidden, minimum=1))
        if self.hidden_k is not None:
            put("hidden_k", check_int("hidden_k", self.hidden_k, minimum=1,
                                      maximum=self.n_hidden))
        put("weight_density", check_real(
            "weight_density", self.weight_density, minimum=0.0,
            maximum=1.0, min_open=True))
        put("batch_norm", _check_bool("batch_norm", self.batch_norm))
        put("dropout", check_probability("dropout", self.dropout,
                                         open_high=True))
        put("n_classes", check_int("n_classes", self.n_classes, minimum=2))
        put("boost_strength", check_real(
            "boost_strength", self.boost_strength, minimum=0.0))
        put("boost_strength_factor", check_probability(
            "boost_strength_factor", self.boost_strength_factor))
        put("k_inference_factor", check_real(
            "k_inference_factor", self.k_inference_factor, minimum=0.0,
            min_open=True))
        put("duty_cycle_period", check_int(
            "duty_cycle_period", self.duty_cycle_period, minimum=1))
        put("lr", check_real("lr", self.lr, minimum=0.0, min_open=True))
        put("lr_gamma", check_real("lr_gamma", self.lr_gamma, minimum=0.0,
                                   maximum=1.0, min_open=True))
        put("momentum", check_probability("momentum", self.momentum,
                                          open_high=True))
        put("weight_decay", check_real("weight_decay", self.weight_decay,
                                       minimum=0.0))
        put("epochs", check_int("epochs", self.epochs, minimum=1))
        put("batch_size", check_int("batch_size", self.batch_size,
                                    minimum=1))
        put("first_epoch_batch_size", check_int(
            "first_epoch_batch_size", self.first_epoch_batch_size,
            minimum=1))
        # the sizes of the blocks, and the k of each against them
        sizes = self.feature_shapes
        for i, (k, (c, h, w)) in enumerate(zip(conv_k, sizes)):
            if k is not None:
                self._check_k(f"conv_k[{i}]", k, c * h * w,
                              f"{c} * {h} * {w} = {c * h * w} values of "
                              f"block {i + 1}")
        if self.hidden_k is not None:
            self._check_k("hidden_k", self.hidden_k, self.n_hidden,
                          f"n_hidden = {self.n_hidden} units")
        if self.has_kwinners:
            big = max(self.batch_size, self.first_epoch_batch_size)
            if big > self.duty_cycle_period:
                raise ValueError(
                    f"batch_size and first_epoch_batch_size must not exceed "
                    f"duty_cycle_period={self.duty_cycle_period} in a "
                    f"network with k-winners layers; got {big}")

    def _check_k(self, name, k, n, what):
        if k > n:
            raise ValueError(f"{name} must be <= the {what}; got {k}")
        if k < n and not k * self.k_inference_factor < n:
            raise ValueError(
                f"{name} = {k} times k_inference_factor = "
                f"{self.k_inference_factor} must stay below the {what} "
                f"(the winners at inference)")
        if k < n and k * self.k_inference_factor < 1:
            raise ValueError(
                f"{name} = {k} times k_inference_factor = "
                f"{self.k_inference_factor} leaves no winner at inference")

    @property
    def feature_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """``(C, H, W)`` after each convolutional block (after pooling).

        Raises ``ValueError`` if the input is too small for the blocks.
        """
        _, h, w = self.input_shape
        out = []
        for i, c in enumerate(self.channels):
            h_conv, w_conv = h - self.kernel_size + 1, w - self.kernel_size + 1
            if h_conv < 2 or w_conv < 2:
                raise ValueError(
                    f"input_shape={self.input_shape} is too small for "
                    f"convolutional block {i + 1}: a {self.kernel_size} x "
                    f"{self.kernel_size} kernel on {h} x {w} leaves "
                    f"{h_conv} x {w_conv}, and max pooling needs >= 2 x 2")
            h, w = h_conv // 2, w_conv // 2
            out.append((c, h, w))
        return tuple(out)

    @property
    def n_flat(self) -> int:
        """Number of inputs of the hidden layer (``C * H * W`` of the last
        block)."""
        c, h, w = self.feature_shapes[-1]
        return c * h * w

    @property
    def has_kwinners(self) -> bool:
        """Whether some layer is a k-winners layer (``k < n``)."""
        ns = [c * h * w for c, h, w in self.feature_shapes]
        return any(k is not None and k < n
                   for k, n in zip(self.conv_k, ns)) or (
            self.hidden_k is not None and self.hidden_k < self.n_hidden)

    def replace(self, **changes) -> "CNNSpec":
        """A copy with ``changes`` applied, checked like a new spec."""
        return dataclasses.replace(self, **changes)


#: The MNIST networks of the paper (Tables 1 and 3), in the order of its
#: tables: the four main networks, then the four mixed ones. The dense
#: networks have no k-winners layer, so their boost settings are unused.
MNIST_NETS = {s.name: s for s in (
    CNNSpec("Dense CNN-1", (30,), (None,), 1000, None, momentum=0.9,
            boost_strength=0.0),
    CNNSpec("Dense CNN-2", (30, 30), (None, None), 1000, None, momentum=0.9,
            boost_strength=0.0),
    CNNSpec("Sparse CNN-1", (30,), (400,), 150, 50, weight_density=0.3,
            first_epoch_batch_size=4),
    CNNSpec("Sparse CNN-2", (32, 64), (400, 300), 700, 100,
            weight_density=0.3, lr=0.02, first_epoch_batch_size=4,
            epochs=10),
    # Table 3 gives 30 and 64 channels; the published cfg says "30_30"
    CNNSpec("Dense CNN-2 SP3", (30, 64), (None, None), 700, 100,
            weight_density=0.3, momentum=0.5, first_epoch_batch_size=4,
            epochs=10),
    CNNSpec("Sparse CNN-2 D3", (32, 64), (400, 300), 1000, None,
            momentum=0.9, epochs=10),
    CNNSpec("Sparse CNN-2 W1", (32, 64), (400, 300), 700, 100,
            momentum=0.9, epochs=10),
    CNNSpec("Sparse CNN-2 DSW", (32, 64), (400, 300), 1000, None,
            weight_density=0.3, momentum=0.9, first_epoch_batch_size=4,
            epochs=10),
)}


def _gsc(name, conv_k, n_hidden, hidden_k, **kw):
    base = dict(input_shape=(1, 32, 32), n_classes=12, batch_norm=True,
                boost_strength=1.5, boost_strength_factor=0.9,
                k_inference_factor=1.5, lr=0.01, weight_decay=0.01)
    base.update(kw)
    return CNNSpec(name, (64, 64), conv_k, n_hidden, hidden_k, **base)


#: The Google Speech Commands networks of the paper (12 classes, 32 x 32
#: mel spectrograms, batch norm, weight decay 0.01), from its speech
#: configuration file. The first epoch uses the ordinary batch size (see
#: the module docstring).
GSC_NETS = {s.name: s for s in (
    _gsc("Dense CNN-2", (None, None), 1000, None, lr_gamma=0.8,
         momentum=0.9, epochs=20, batch_size=64, first_epoch_batch_size=64),
    _gsc("Dense CNN-2 (dropout 0.5)", (None, None), 1000, None,
         dropout=0.5, lr_gamma=0.8, momentum=0.9, epochs=20, batch_size=64,
         first_epoch_batch_size=64),
    _gsc("Sparse CNN-2", (1200, 200), 1000, 100, weight_density=0.4,
         lr_gamma=0.9, epochs=30, batch_size=16, first_epoch_batch_size=16),
    _gsc("Super-Sparse CNN-2", (1200, 200), 1500, 100, weight_density=0.1,
         lr_gamma=0.9, epochs=25, batch_size=16, first_epoch_batch_size=16),
)}

_DATASETS = {"MNIST": MNIST_NETS, "GSC": GSC_NETS}


# --------------------------------------------------------------------------
# the network


class SparseCNN(nn.Module):
    """The network a :class:`CNNSpec` describes.

    Children: ``features`` (an ``nn.Sequential`` of the convolutional
    blocks: ``conv{i}``, ``bn{i}`` with batch norm, ``pool{i}``, then
    ``kwinners{i}`` or ``relu{i}``), ``hidden`` (``linear`` -- an
    ``nn.Linear`` or a :class:`~sparselib.sparse_weights.SparseWeights` --,
    ``bn``, ``dropout``, then ``kwinners`` or ``relu``) and ``output`` (an
    ``nn.Linear``). PyTorch's default initialisation; the sparse weight
    mask and the initial weights come from torch's global generator (seed
    it first, e.g. with :func:`sparselib.utils.setup`).

    The k-winners layers keep exactly ``k`` winners (``break_ties=True``,
    the paper's ``topk``), do not clip negative winners (``relu=False``, as
    the paper) and know their size from construction (a global
    :class:`~sparselib.kwinners.KWinners2d` learns it at its first
    forward; this class runs that forward once, in eval mode, on zeros,
    which changes no state).

    Parameters
    ----------
    spec : CNNSpec
        The network.

    Raises
    ------
    TypeError
        If ``spec`` is not a :class:`CNNSpec`.
    """

    def __init__(self, spec: CNNSpec):
        super().__init__()
        if not isinstance(spec, CNNSpec):
            raise TypeError(f"spec must be a CNNSpec, got "
                            f"{type(spec).__name__}")
        self.spec = spec
        kw_args = dict(k_inference_factor=spec.k_inference_factor,
                       boost_strength=spec.boost_strength,
                       boost_strength_factor=spec.boost_strength_factor,
                       duty_cycle_period=spec.duty_cycle_period,
                       break_ties=True, relu=False)
        layers = OrderedDict()
        c_in = spec.input_shape[0]
        for i, (c, k, shape) in enumerate(zip(
                spec.channels, spec.conv_k, spec.feature_shapes), start=1):
            layers[f"conv{i}"] = nn.Conv2d(c_in, c, spec.kernel_size)
            if spec.batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm2d(c, affine=False)
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            n = shape[0] * shape[1] * shape[2]
            if k is None or k >= n:
                layers[f"relu{i}"] = nn.ReLU()
            else:
                kw = KWinners2d(c, percent_on=k / n, local=False, **kw_args)
                with torch.no_grad():  # sets n, k, k_inference; no update
                    kw.eval()
                    kw(torch.zeros((1, *shape)))
                    kw.train()
                if kw.k != k:  # pragma: no cover - round(n * k / n) == k
                    raise RuntimeError(f"block {i}: k-winners has k={kw.k}, "
                                       f"expected {k}")
                layers[f"kwinners{i}"] = kw
            c_in = c
        self.features = nn.Sequential(layers)

        hidden = OrderedDict()
        linear = nn.Linear(spec.n_flat, spec.n_hidden)
        if spec.weight_density < 1.0:
            linear = SparseWeights(linear, 1.0 - spec.weight_density)
        hidden["linear"] = linear
        if spec.batch_norm:
            hidden["bn"] = nn.BatchNorm1d(spec.n_hidden, affine=False)
        if spec.dropout > 0.0:
            hidden["dropout"] = nn.Dropout(spec.dropout)
        k = spec.hidden_k
        if k is None or k >= spec.n_hidden:
            hidden["relu"] = nn.ReLU()
        else:
            kw = KWinners(spec.n_hidden, k / spec.n_hidden, **kw_args)
            if kw.k != k:  # pragma: no cover
                raise RuntimeError(f"hidden k-winners has k={kw.k}, "
                                   f"expected {k}")
            hidden["kwinners"] = kw
        self.hidden = nn.Sequential(hidden)
        self.output = nn.Linear(spec.n_hidden, spec.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` of inputs ``(batch, C, H, W)``."""
        check_tensor("x", x, ndim=4, floating=True)
        if tuple(x.shape[1:]) != self.spec.input_shape:
            raise ValueError(f"x must have shape (batch, "
                             f"{', '.join(map(str, self.spec.input_shape))})"
                             f"; got {tuple(x.shape)}")
        h = self.features(x).flatten(1)
        return self.output(self.hidden(h))

    def kwinners(self) -> list:
        """The k-winners modules, in forward order."""
        return [m for m in self.modules() if isinstance(m, KWinnersBase)]

    def update_boost_strength(self) -> None:
        """Multiply every k-winners layer's boost strength by its
        ``boost_strength_factor`` (once per epoch)."""
        for m in self.kwinners():
            m.update_boost_strength()


def build_cnn(spec: CNNSpec | str, *, dataset: str = "MNIST") -> SparseCNN:
    """Build a network of the paper, by spec or by name.
    Chapter "Noise-robust sparse networks".

    Parameters
    ----------
    spec : CNNSpec or str
        The network, or its name in :data:`MNIST_NETS` or :data:`GSC_NETS`.
    dataset : {"MNIST", "GSC"}, default "MNIST"
        Where a name is looked up (unused for a :class:`CNNSpec`).

    Returns
    -------
    SparseCNN
        A freshly initialised network on the CPU, in training mode.

    Raises
    ------
    KeyError
        If the name is not in the dataset's table (the message lists the
        names).
    TypeError
        If ``spec`` is neither a string nor a :class:`CNNSpec`.
    ValueError
        If ``dataset`` is not one of the two.
    """
    check_choice("dataset", dataset, tuple(_DATASETS))
    if isinstance(spec, str):
        table = _DATASETS[dataset]
        if spec not in table:
            raise KeyError(f"no {dataset} network named {spec!r}; the "
                           f"{dataset} networks are "
                           f"{', '.join(map(repr, table))}")
        spec = table[spec]
    elif not isinstance(spec, CNNSpec):
        raise TypeError(f"spec must be a CNNSpec or a network's name, got "
                        f"{type(spec).__name__}")
    return SparseCNN(spec)


# --------------------------------------------------------------------------
# counting


def _check_model(model):
    if not isinstance(model, SparseCNN):
        raise TypeError(f"model must be a SparseCNN, got "
                        f"{type(model).__name__}")


def _activity(act) -> float:
    if isinstance(act, KWinnersBase):
        return act.k / act.n
    return 1.0


def layer_table(model: SparseCNN) -> dict:
    """A row of the paper's Table 3, read from the built modules.
    Chapter "Noise-robust sparse networks".

    Sparsities are fractions: a layer's ``k / n`` from its k-winners module
    (1.0 for a ReLU layer), and for the hidden weights the fraction of
    entries kept by the mask (1.0 for a dense layer). Reads the mask (a
    device synchronisation on a GPU).

    Parameters
    ----------
    model : SparseCNN
        A network with one or two convolutional blocks.

    Returns
    -------
    dict
        ``{"network", "L1 F", "L1 sparsity", "L2 F", "L2 sparsity",
        "L3 N", "L3 sparsity", "Wt sparsity"}``: ``F`` the channels of a
        block, ``N`` the hidden units; the ``"L2 ..."`` entries are
        ``None`` for a network with one block.

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`SparseCNN`.
    ValueError
        If it has more than two convolutional blocks (Table 3 has two).
    """
    _check_model(model)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    acts = [m for m in model.features
            if isinstance(m, (KWinners2d, nn.ReLU))]
    if len(convs) > 2:
        raise ValueError(f"model has {len(convs)} convolutional blocks; "
                         f"Table 3 has columns for at most 2")
    linear = model.hidden.linear
    act = model.hidden[-1]
    if isinstance(linear, SparseWeightsBase):
        mask = linear.mask
        wt = int(mask.sum()) / mask.numel()
        n_hidden = linear.module.out_features
    else:
        wt = 1.0
        n_hidden = linear.out_features
    row = {"network": model.spec.name,
           "L1 F": convs[0].out_channels, "L1 sparsity": _activity(acts[0]),
           "L2 F": None, "L2 sparsity": None}
    if len(convs) == 2:
        row["L2 F"] = convs[1].out_channels
        row["L2 sparsity"] = _activity(acts[1])
    row.update({"L3 N": n_hidden, "L3 sparsity": _activity(act),
                "Wt sparsity": wt})
    return row


def count_parameters(model: nn.Module) -> int:
    """Number of parameter entries of ``model`` (masked ones included).

    Chapter "Noise-robust sparse networks".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got "
                        f"{type(model).__name__}")
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Number of parameter entries that can be non-zero.
    Chapter "Noise-robust sparse networks".

    :func:`count_parameters` minus the entries that the masks of the
    sparse-weight layers hold at zero. Reads the masks (a device
    synchronisation on a GPU).
    """
    total = count_parameters(model)
    for m in model.modules():
        if isinstance(m, SparseWeightsBase):
            total -= int((~m.mask).sum())
    return total


# --------------------------------------------------------------------------
# training


@dataclass
class ProtocolResult:
    """What :func:`train_protocol` recorded.

    ``history[key]`` holds one value per epoch for ``"epoch"`` (from 1),
    ``"lr"``, ``"batch_size"`` and ``"boost_strength"`` (those the epoch
    trained with; the boost strength of the first k-winners layer, ``None``
    without one), ``"train_loss"`` (mean cross-entropy over the epoch's
    samples), ``"val_accuracy"`` and ``"test_accuracy"`` (``None`` without
    that set) and ``"seconds"`` (training time of the epoch, evaluation
    excluded). ``best_val_epoch`` and ``best_test_epoch`` are the epochs
    (from 1) of the highest accuracy, the earliest on ties, ``None``
    without that set. ``states`` maps ``"val"``, ``"test"`` and ``"last"``
    to CPU copies of the model's ``state_dict`` at those epochs (only the
    available ones). Choosing by test accuracy is what the paper did; it
    is recorded only for comparison.
    """

    history: dict
    best_val_epoch: int | None = None
    best_test_epoch: int | None = None
    states: dict = field(default_factory=dict)

    def load(self, model: nn.Module, which: str = "val") -> nn.Module:
        """Load the state of epoch ``which`` into ``model``; return it.

        Parameters
        ----------
        model : nn.Module
            A model built from the same spec (loaded in place, on its
            device).
        which : {"val", "test", "last"}, default "val"
            The best-validation, best-test or last epoch.

        Returns
        -------
        nn.Module
            ``model``.

        Raises
        ------
        ValueError
            If ``which`` is not one of the three, or that state was not
            recorded (no validation or test set).
        """
        check_choice("which", which, ("val", "test", "last"))
        if which not in self.states:
            raise ValueError(f"which={which!r}: no such state was recorded "
                             f"(train_protocol had no {which} set); have "
                             f"{sorted(self.states)}")
        model.load_state_dict(self.states[which])
        return model


def _check_set(name, data, n_classes, allow_none=True):
    if data is None and allow_none:
        return None
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (x, y) of tensors, got "
                        f"{type(data).__name__}")
    x, y = data
    check_tensor(f"{name} x", x, ndim=4, floating=True)
    check_labels(f"{name} y", y, x.shape[0])
    if x.shape[0] == 0:
        raise ValueError(f"{name} x holds no samples")
    if x.device != y.device:
        raise ValueError(f"{name} x and {name} y must be on one device; got "
                         f"{x.device} and {y.device}")
    lo, hi = (int(v) for v in torch.stack([y.min(), y.max()]).tolist())
    if lo < 0 or hi >= n_classes:
        raise ValueError(f"{name} y must hold labels in [0, {n_classes}); "
                         f"got labels from {lo} to {hi}")
    return x, y


def _state_copy(model):
    return {k: v.detach().to("cpu", copy=True)
            for k, v in model.state_dict().items()}


@torch.no_grad()
def _accuracy(model, x, y, batch_size, device):
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(device)
        yb = y[i:i + batch_size].to(device)
        correct += (model(xb).argmax(1) == yb).sum()
    return int(correct) / x.shape[0]


def _batches(n, batch_size, drop_single):
    starts = list(range(0, n, batch_size))
    if drop_single and len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [(s, min(s + batch_size, n)) for s in starts]


def train_protocol(model: nn.Module, train: tuple, val: tuple | None = None,
                   test: tuple | None = None, *, spec: CNNSpec | None = None,
                   epochs: int | None = None, seed: int = 0,
                   eval_batch_size: int = 1000, device=None,
                   progress: bool | None = None,
                   desc: str | None = None) -> ProtocolResult:
    """Train ``model`` with the paper's protocol; evaluate every epoch.
    Chapter "Noise-robust sparse networks".

    Epoch ``e`` (from 1) trains at ``spec.lr * spec.lr_gamma ** (e - 1)``
    (a ``StepLR`` schedule stepped after each epoch: the rates of the
    paper's code under the PyTorch 1.0 it pins); the training samples are
    shuffled by
    one ``torch.randperm(n, generator=g)``, ``g`` a CPU
    ``torch.Generator`` seeded once with ``seed``, and cut in consecutive
    batches of ``spec.first_epoch_batch_size`` (epoch 1) or
    ``spec.batch_size`` (the last one may be smaller; a last batch of one
    sample is skipped when the model has batch norm, which cannot train on
    it); each batch takes one SGD step (``lr``, ``momentum``,
    ``weight_decay`` of the spec) on the cross-entropy of the logits. Then
    every k-winners layer's boost strength is multiplied by its
    ``boost_strength_factor``, and the accuracy on ``val`` and ``test`` is
    measured (eval mode, ``torch.no_grad``, batches of
    ``eval_batch_size``).

    The losses stay on the device during an epoch and are read back once
    at its end (no synchronisation per step). The states of the
    best-validation, best-test and last epochs are kept as CPU copies.
    Selecting the epoch by *test* accuracy is what the paper did; report it
    only for comparison with the paper, and the validation choice as the
    result. The model is left in eval mode.

    Parameters
    ----------
    model : nn.Module
        The network (a :class:`SparseCNN` or any module taking
        ``(batch, C, H, W)`` and returning logits); trained in place.
    train : tuple of torch.Tensor
        ``(x, y)``: normalised inputs ``(n, C, H, W)`` (floating point)
        and int64 labels ``(n,)``, on any device (batches are moved to the
        model's).
    val, test : tuple of torch.Tensor, optional
        Held-out sets in the same form.
    spec : CNNSpec, optional
        The protocol (default ``model.spec``).
    epochs : int, optional
        Number of epochs (default ``spec.epochs``).
    seed : int, default 0
        Seed of the shuffling generator (dropout, if any, draws from
        torch's global generator).
    eval_batch_size : int, default 1000
        Batch size of the evaluations.
    device : torch.device or str, optional
        Where to train (the model is moved there); default the model's
        device.
    progress : bool, optional
        Show one tqdm bar over all steps (``None``: yes unless at quick
        scale).
    desc : str, optional
        The bar's label (default the spec's name).

    Returns
    -------
    ProtocolResult
        The per-epoch history, the best epochs and the kept states.

    Raises
    ------
    TypeError
        If a data set is not a pair of tensors of the right kinds, or
        ``spec`` is missing or not a :class:`CNNSpec`.
    ValueError
        If a data set's tensors disagree in length or device, its labels
        lie outside ``[0, spec.n_classes)``, or an integer argument is out
        of range.
    FloatingPointError
        If an epoch's mean training loss is not finite (the message names
        the epoch).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got "
                        f"{type(model).__name__}")
    if spec is None:
        spec = getattr(model, "spec", None)
        if spec is None:
            raise TypeError("spec must be given for a model without a "
                            "spec attribute")
    if not isinstance(spec, CNNSpec):
        raise TypeError(f"spec must be a CNNSpec, got {type(spec).__name__}")
    epochs = spec.epochs if epochs is None else check_int(
        "epochs", epochs, minimum=1)
    seed = check_int("seed", seed, minimum=0, maximum=2 ** 63 - 1)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size,
                                minimum=1)
    x, y = _check_set("train", train, spec.n_classes, allow_none=False)
    val = _check_set("val", val, spec.n_classes)
    test = _check_set("test", test, spec.n_classes)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    else:
        device = torch.device(device)
        model.to(device)
    device = torch.device(device)
    n = x.shape[0]
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for m in model.modules())
    kws = [m for m in model.modules() if isinstance(m, KWinnersBase)]
    sizes = [spec.first_epoch_batch_size if e == 1 else spec.batch_size
             for e in range(1, epochs + 1)]
    plans = {b: _batches(n, b, has_bn) for b in set(sizes)}
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr,
                          momentum=spec.momentum,
                          weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1,
                                            gamma=spec.lr_gamma)
    gen = torch.Generator().manual_seed(seed)
    keys = ("epoch", "lr", "batch_size", "boost_strength", "train_loss",
            "val_accuracy", "test_accuracy", "seconds")
    history = {k: [] for k in keys}
    result = ProtocolResult(history=history)
    best = {"val": -math.inf, "test": -math.inf}
    bar = tqdm(total=sum(len(plans[b]) for b in sizes),
               desc=spec.name if desc is None else desc, leave=False,
               disable=not progress_enabled(progress))
    try:
        for epoch, bsz in enumerate(sizes, start=1):
            history["epoch"].append(epoch)
            history["lr"].append(opt.param_groups[0]["lr"])
            history["batch_size"].append(bsz)
            # the Python copy of the float32 buffer: 1.5 * 0.85 reads
            # 1.275, and the device is not waited for
            history["boost_strength"].append(
                kws[0]._cached_boost_strength if kws else None)
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=gen).to(x.device)
            total = torch.zeros((), device=device)
            seen = 0
            for lo, hi in plans[bsz]:
                idx = perm[lo:hi]
                xb = x[idx].to(device, non_blocking=True)
                yb = y[idx].to(device, non_blocking=True)
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * (hi - lo)
                seen += hi - lo
                bar.update(1)
            mean_loss = float(total) / seen  # the epoch's one read-back
            history["seconds"].append(time.perf_counter() - t0)
            if not math.isfinite(mean_loss):
                raise FloatingPointError(
                    f"the mean training loss became {mean_loss} in epoch "
                    f"{epoch} of {epochs}")
            history["train_loss"].append(mean_loss)
            model.apply(_update_boost)
            sched.step()
            for name, data in (("val", val), ("test", test)):
                acc = None
                if data is not None:
                    acc = _accuracy(model, *data, eval_batch_size, device)
                    if acc > best[name]:
                        best[name] = acc
                        setattr(result, f"best_{name}_epoch", epoch)
                        result.states[name] = _state_copy(model)
                history[f"{name}_accuracy"].append(acc)
            post = {"loss": f"{mean_loss:.4g}"}
            if val is not None:
                post["val"] = f"{history['val_accuracy'][-1]:.4f}"
            bar.set_postfix(post, refresh=False)
        model.eval()
        result.states["last"] = _state_copy(model)
    finally:
        bar.close()
    return result
