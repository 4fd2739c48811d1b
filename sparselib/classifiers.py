"""Classifiers with an L1 penalty on their hidden activity.

The source of the classifier chapter ("Sparse coding: a simple
exploration") asks how sparse the hidden layer of an MNIST classifier can
get before accuracy suffers, by adding ``lam * sum |h|`` to the
cross-entropy. This module holds its networks, written for PyTorch:

* :class:`SparseMLP` -- ``x -> h = ReLU(W x + b) -> logits``: one hidden
  layer (784 units in the source), softmax output.
* :class:`SparseConvNet` -- ``x -> h = ReLU(conv(x)) -> logits``: one
  convolution (200 feature maps, 3x3, stride 2 in the source: ``200 x 14 x
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
so ``lam`` does not depend on the batch size. The source sums over the
batch of 100 instead: its weight ``c`` is our ``lam = 100 c``.

:func:`normal_init_` is the initialisation of the source's TensorFlow code
(weights N(0, 0.1^2), biases 0.1). The training protocol is
:func:`sparselib.train.train_steps`, and the activity of a layer too large
to hold is measured by :func:`sparselib.metrics.activity_stats`.

Introduced in the chapter "Sparse activity in classifiers".
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import ConvDecoder
from .losses import l1_activity, reconstruction_loss
from .utils import check_choice, check_int, check_real, check_tensor

__all__ = ["normal_init_", "SparseMLP", "SparseConvNet"]


def normal_init_(module: nn.Module, std: float = 0.1,
                 bias: float = 0.1) -> nn.Module:
    """Weights ``N(0, std^2)`` and constant biases, in place.

    Applies to every :class:`torch.nn.Linear`, :class:`torch.nn.Conv2d` and
    :class:`sparselib.layers.ConvDecoder` inside ``module``. With the
    defaults it is the initialisation of the source's code; the positive
    bias starts every ReLU unit on. Chapter "Sparse activity in classifiers".

    Parameters
    ----------
    module : torch.nn.Module
        The model to initialise.
    std : float, default 0.1
        Standard deviation of the weights (> 0).
    bias : float, default 0.1
        Value of every bias.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.
    """
    std = check_real("std", std, minimum=0, min_open=True)
    bias = check_real("bias", bias)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, ConvDecoder)):
                m.weight.normal_(0.0, std)
                if m.bias is not None:
                    m.bias.fill_(bias)
    return module


def _labels(y, n):
    # Shape and dtype only: no value is read (no device synchronisation),
    # so the range of the labels is checked once, by the training protocol
    # (sparselib.train.train_steps), not at every step.
    check_tensor("y", y, ndim=1)
    if y.shape[0] != n:
        raise ValueError(f"y must hold one label per input: {n}; got "
                         f"{y.shape[0]}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels, got dtype "
                        f"{y.dtype}")
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
        in the batch) and, with a decoder, ``"recon"`` (the per-pixel MSE),
        each a detached 0-d tensor: nothing is read back to the host, so a
        training step does not wait for the device. ``y`` is checked for
        shape and dtype only; labels outside ``[0, n_classes)`` are caught
        by :func:`sparselib.train.train_steps` (or, on the CPU, by the
        cross-entropy).
        """
        h = self.hidden(x)
        _labels(y, h.shape[0])
        logits = self.classify(h)
        flat = h.flatten(1)
        ce = F.cross_entropy(logits, y)
        l1 = l1_activity(flat)
        total = ce + self.lam * l1
        logs = {"ce": ce.detach(), "l1": l1.detach(),
                "avr": (flat.detach() > 0).sum(dim=1).float().mean()}
        x_hat = self.decode(h)
        if x_hat is not None:
            target = self._image(x)
            total = total + self.recon_weight * reconstruction_loss(
                x_hat, target, "sum")
            logs["recon"] = F.mse_loss(x_hat.detach(), target)
        return total, logs


class SparseMLP(_L1Classifier):
    """One hidden ReLU layer with an L1 penalty on its activity.

    ``forward(x)`` takes ``(batch, n_inputs)`` (or images that flatten to
    it) and returns logits ``(batch, n_classes)``; ``hidden(x)`` returns
    ``h`` ``(batch, n_hidden)``. Chapter "Sparse activity in classifiers".

    Parameters
    ----------
    n_inputs, n_hidden, n_classes : int
        Layer widths (the source: 784, 784, 10).
    lam : float
        Weight of the penalty ``mean_batch sum_j h_j`` (>= 0; 0 for none).
    init : str
        ``"normal"`` (the source's N(0, 0.1^2) weights, biases 0.1, see
        :func:`normal_init_`) or ``"default"`` (PyTorch's).
    """

    def __init__(self, n_inputs: int = 784, n_hidden: int = 784,
                 n_classes: int = 10, lam: float = 0.0,
                 init: str = "normal"):
        super().__init__()
        self.n_inputs = check_int("n_inputs", n_inputs, minimum=1)
        self.n_hidden = check_int("n_hidden", n_hidden, minimum=1)
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        self.lam = check_real("lam", lam, minimum=0)
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
    if check_choice("init", init, ("normal", "default")) == "normal":
        normal_init_(model)


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
        Feature maps (the source: 200).
    kernel_size, stride : int
        Of the convolution (the source: 3 and 2; padding
        ``kernel_size // 2``, so 28 x 28 becomes 14 x 14).
    n_classes : int
        Outputs of the linear softmax layer on the flattened maps.
    lam : float
        Weight of the penalty ``mean_batch sum |h|`` over all
        ``n_maps x H' x W'`` units (>= 0).
    decoder : str or None
        None (a classifier only), ``"subpixel"`` or ``"transposed"``: also
        reconstruct the image from the same feature maps with a
        :class:`sparselib.layers.ConvDecoder` (upscale = ``stride``) and
        add ``recon_weight * mean_batch ||x_hat - x||^2`` to the loss (the
        source's joint convolutional sparse autoencoder).
    decoder_kernel : int
        The decoder's kernel size.
    max_norm : float or None
        The decoder's per-feature-map weight-norm bound (the source clips
        to 1); None for none.
    recon_weight : float
        Weight of the reconstruction term (> 0 with a decoder).
    init : str
        ``"normal"`` (the source's) or ``"default"`` (PyTorch's).
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
        self.lam = check_real("lam", lam, minimum=0)
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
            self.recon_weight = check_real("recon_weight", recon_weight,
                                           minimum=0, min_open=True)
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
