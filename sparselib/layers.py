"""Layers with structure or sparsity built in.

* :class:`NdLinear` -- one linear map with bias per tensor axis, applied in
  turn (Reneau et al. 2025, "NdLinear"). For an input of shape
  ``(batch, I_1, ..., I_d)`` it learns ``d`` small matrices ``W_i``
  ``(O_i, I_i)`` and biases ``b_i`` ``(O_i,)``: ``sum_i (I_i O_i + O_i)``
  parameters instead of ``prod(I) prod(O) + prod(O)`` for a dense layer.
  On flattened (row-major) tensors it *is* a dense layer whose weight is the
  Kronecker product ``W_1 (x) ... (x) W_d`` and whose bias has a matching
  structure (:meth:`NdLinear.dense_equivalent`).
* :func:`nearest_kronecker` -- the best Frobenius approximation of a dense
  weight by one Kronecker product (Van Loan and Pitsianis 1993): it says how
  much of a trained dense layer an NdLinear layer could express.
* :func:`topk_relu` and :class:`TopK` -- keep the ``k`` largest
  pre-activations of each row, ReLU them, zero the rest (Makhzani and Frey
  2013; Gao et al. 2024). The same operation, with boosting, is the
  k-winners-take-all layer of a later chapter.
* :class:`ConvDecoder` -- turn feature maps ``(batch, C, H, W)`` into an
  image ``(batch, c, rH, rW)``, ``r`` times larger, either with a transposed
  convolution (``kind="transposed"``) or with the sub-pixel convolution of
  Shi et al. (2016) (``kind="subpixel"``: a convolution to ``c r^2``
  channels at the low resolution, then :class:`torch.nn.PixelShuffle`).
  An optional ``max_norm`` keeps each feature map's decoder weights (its
  *atom*) within a ball, the constraint of the sparse-coding objective.
* :func:`subpixel_to_transposed` -- the transposed-convolution kernel that
  computes exactly what a sub-pixel decoder computes (Shi et al. 2016):
  a ``k x k`` sub-pixel decoder is an ``rk x rk`` transposed convolution.

Introduced in the chapter "Sparse autoencoders"; the decoders in the
chapter "Sparse activity in classifiers".
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .utils import check_choice, check_int, check_real, check_tensor

__all__ = ["NdLinear", "nearest_kronecker", "topk_relu", "TopK",
           "ConvDecoder", "subpixel_to_transposed"]


def _shape(name, value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, str):
        raise TypeError(f"{name} must be a tuple of positive integers, got "
                        f"{value!r}")
    try:
        value = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of positive integers, got "
                        f"{value!r}") from None
    if not value:
        raise ValueError(f"{name} must have at least one axis, got ()")
    return tuple(check_int(f"{name}[{i}]", v, minimum=1)
                 for i, v in enumerate(value))


class NdLinear(nn.Module):
    """A linear map with bias along each axis of a tensor, applied in turn.

    ``forward`` takes ``(batch, I_1, ..., I_d)`` and returns
    ``(batch, O_1, ..., O_d)``. Axis 1 is transformed first: ``x`` becomes
    ``x W_1^T + b_1`` along axis 1, then the result along axis 2, and so on.
    Each axis is an :class:`torch.nn.Linear` in ``self.maps`` with PyTorch's
    default initialisation. Chapter "Sparse autoencoders".

    Parameters
    ----------
    in_shape : tuple of int
        ``(I_1, ..., I_d)``, the shape of one input.
    out_shape : tuple of int
        ``(O_1, ..., O_d)``, with the same number of axes.
    bias : bool, default True
        Learn a bias per axis.
    """

    def __init__(self, in_shape, out_shape, bias: bool = True):
        super().__init__()
        self.in_shape = _shape("in_shape", in_shape)
        self.out_shape = _shape("out_shape", out_shape)
        if len(self.in_shape) != len(self.out_shape):
            raise ValueError(
                f"in_shape {self.in_shape} and out_shape {self.out_shape} "
                f"must have the same number of axes")
        self.maps = nn.ModuleList(
            nn.Linear(i, o, bias=bias)
            for i, o in zip(self.in_shape, self.out_shape))

    @property
    def in_features(self) -> int:
        """``prod(in_shape)``, the size of a flattened input."""
        return math.prod(self.in_shape)

    @property
    def out_features(self) -> int:
        """``prod(out_shape)``, the size of a flattened output."""
        return math.prod(self.out_shape)

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, out_shape={self.out_shape}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(batch, *in_shape)`` mapped to ``(batch, *out_shape)``."""
        d = len(self.in_shape)
        check_tensor("x", x)
        if x.ndim != d + 1 or tuple(x.shape[1:]) != self.in_shape:
            axes = ", ".join(map(str, self.in_shape))
            raise ValueError(f"x must have shape (batch, {axes}); got "
                             f"{tuple(x.shape)}")
        for axis, lin in enumerate(self.maps, start=1):
            x = lin(x.movedim(axis, -1)).movedim(-1, axis)
        return x

    def dense_equivalent(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The dense ``(W, b)`` equivalent to this map.

        ``forward(x).flatten(1) == x.flatten(1) @ W.T + b``.

        ``W = W_1 (x) W_2 (x) ... (x) W_d`` (Kronecker product), shape
        ``(prod(out_shape), prod(in_shape))``. The bias added at axis ``i``
        is carried through the maps of the later axes, so
        ``b = sum_i 1_{O_1} (x) ... (x) b_i (x) W_{i+1} 1 (x) ... (x) W_d 1``,
        where ``1_{O_j}`` are ones for the axes already mapped and
        ``W_j 1`` the row sums of the later maps.
        """
        W = None
        for lin in self.maps:
            W = lin.weight if W is None else torch.kron(W, lin.weight)
        b = torch.zeros(self.out_features, dtype=W.dtype, device=W.device)
        for i, lin in enumerate(self.maps):
            if lin.bias is None:
                continue
            term = None
            for j, other in enumerate(self.maps):
                if j < i:
                    f = torch.ones(other.out_features, dtype=W.dtype,
                                   device=W.device)
                elif j == i:
                    f = lin.bias
                else:
                    f = other.weight.sum(dim=1)
                term = f if term is None else torch.kron(term, f)
            b = b + term
        return W, b


def nearest_kronecker(W: torch.Tensor, out_shape, in_shape):
    """The Kronecker product ``A (x) B`` closest to ``W`` in Frobenius norm.

    ``W`` is ``(O_1 O_2, I_1 I_2)``; ``A`` is ``(O_1, I_1)`` and ``B``
    ``(O_2, I_2)``. Rearranging ``W`` so that each ``(O_2, I_2)`` block
    becomes a row turns ``A (x) B`` into the rank-one matrix
    ``vec(A) vec(B)^T``; its best rank-one approximation is the leading
    singular pair (Van Loan and Pitsianis 1993).

    Returns ``(A, B, share, sigma)``: ``share`` is the fraction of
    ``||W||_F^2`` that ``A (x) B`` captures, ``sigma[0]^2 / sum sigma^2``,
    and ``sigma`` all singular values of the rearranged matrix (``sigma[r]``
    measures the ``r``-th Kronecker term). An :class:`NdLinear` weight
    on two axes has ``share == 1``. Chapter "Sparse autoencoders".
    """
    out_shape = _shape("out_shape", out_shape)
    in_shape = _shape("in_shape", in_shape)
    if len(out_shape) != 2 or len(in_shape) != 2:
        raise ValueError("nearest_kronecker handles two axes: out_shape and "
                         f"in_shape of length 2, got {out_shape}, {in_shape}")
    (o1, o2), (i1, i2) = out_shape, in_shape
    check_tensor("W", W, floating=True)
    if W.ndim != 2 or tuple(W.shape) != (o1 * o2, i1 * i2):
        raise ValueError(f"W must have shape ({o1 * o2}, {i1 * i2}) for "
                         f"out_shape {out_shape} and in_shape {in_shape}; "
                         f"got {tuple(W.shape)}")
    R = (W.detach().reshape(o1, o2, i1, i2).permute(0, 2, 1, 3)
         .reshape(o1 * i1, o2 * i2))
    U, S, Vh = torch.linalg.svd(R, full_matrices=False)
    s0 = S[0].sqrt()
    A = (U[:, 0] * s0).reshape(o1, i1)
    B = (Vh[0] * s0).reshape(o2, i2)
    total = (S ** 2).sum()
    share = float(S[0] ** 2 / total) if total > 0 else 1.0
    return A, B, share, S


def topk_relu(z: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest entries of each row of ``z``, ReLU them.

    The other entries are set to zero.

    ``z`` is ``(batch, n_units)``; the result has the same shape, at most
    ``k`` non-zeros per row, and exactly ``k`` when a row has at least ``k``
    positive entries. Ties are broken by :func:`torch.topk`. Gradients flow
    to the kept entries only. (Makhzani and Frey 2013; Gao et al. 2024.)
    Chapter "Sparse autoencoders".
    """
    check_tensor("z", z, ndim=2)  # shape only: runs on every forward
    k = check_int("k", k, minimum=1, maximum=z.shape[1])
    vals, idx = z.topk(k, dim=1)
    return torch.zeros_like(z).scatter(1, idx, torch.relu(vals))


class TopK(nn.Module):
    """:func:`topk_relu` as a module, for ``nn.Sequential``."""

    def __init__(self, k: int):
        super().__init__()
        self.k = check_int("k", k, minimum=1)

    def extra_repr(self) -> str:
        return f"k={self.k}"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """:func:`topk_relu` of ``z`` ``(batch, n_units)``."""
        return topk_relu(z, self.k)


def _atom_norms(w: torch.Tensor, kind: str) -> torch.Tensor:
    # One norm per input feature map: its weights to every output channel
    # and kernel position.
    dims = (1, 2, 3) if kind == "transposed" else (0, 2, 3)
    return torch.linalg.vector_norm(w, dim=dims)


class ConvDecoder(nn.Module):
    """Decode feature maps into an image ``upscale`` times larger.

    ``forward`` maps ``(batch, C, H, W)`` to ``(batch, c, rH, rW)``. With
    ``kind="subpixel"`` it is a ``k x k`` convolution (padding ``k // 2``,
    ``k`` odd) from ``C`` to ``c r^2`` channels followed by
    :func:`torch.nn.functional.pixel_shuffle`, which moves channel
    ``c' r^2 + i r + j`` to output pixel ``(r h + i, r w + j)`` of channel
    ``c'`` (Shi et al. 2016); ``weight`` has the layout of
    :class:`torch.nn.Conv2d`, ``(c r^2, C, k, k)``. With
    ``kind="transposed"`` it is a transposed convolution with stride ``r``
    and kernel ``k``, padded so that the output is exactly ``r`` times the
    input; ``weight`` has the layout of :class:`torch.nn.ConvTranspose2d`,
    ``(C, c, k, k)``. ``bias`` is ``(c,)`` in both.

    With ``max_norm``, the weights of each input feature map (its atom:
    every output channel and kernel position it writes to) are scaled to
    norm at most ``max_norm`` in the forward pass, as
    ``W / max(1, norm(W_atom) / max_norm)``. The blog post "Sparse coding:
    a simple exploration" clips its decoders
    too, so that an L1 penalty on the features cannot be dodged by
    shrinking them and growing the decoder.
    Chapter "Sparse activity in classifiers".

    Parameters
    ----------
    in_channels : int
        Feature maps ``C`` of the input.
    out_channels : int
        Channels ``c`` of the output.
    upscale : int
        The factor ``r`` (>= 1).
    kind : str
        ``"subpixel"`` or ``"transposed"``.
    kernel_size : int
        ``k``.
    max_norm : float or None
        Bound on each atom's norm; None for no bound.
    """

    def __init__(self, in_channels: int, out_channels: int = 1,
                 upscale: int = 2, kind: str = "subpixel",
                 kernel_size: int = 3, max_norm: float | None = None):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.out_channels = check_int("out_channels", out_channels,
                                      minimum=1)
        self.upscale = check_int("upscale", upscale, minimum=1)
        self.kernel_size = check_int("kernel_size", kernel_size, minimum=1)
        self.kind = check_choice("kind", kind, ("subpixel", "transposed"))
        self.max_norm = None if max_norm is None else check_real(
            "max_norm", max_norm, minimum=0, min_open=True)
        k, r = self.kernel_size, self.upscale
        if kind == "subpixel":
            if k % 2 == 0:
                raise ValueError(f"kernel_size must be odd for a sub-pixel "
                                 f"decoder (to keep the size); got {k}")
            conv = nn.Conv2d(in_channels, out_channels * r * r, k,
                             padding=k // 2)
            self.weight = conv.weight
            # One bias per output channel, shared by its r^2 sub-pixels.
            self.bias = nn.Parameter(conv.bias.detach()[:out_channels]
                                     .clone())
            self.padding, self.output_padding = k // 2, 0
        else:
            conv = nn.ConvTranspose2d(in_channels, out_channels, k, stride=r)
            self.weight, self.bias = conv.weight, conv.bias
            # (H - 1) r - 2 p + k + op = r H.
            self.padding = max(0, -(-(k - r) // 2))
            self.output_padding = 2 * self.padding + r - k
            if not 0 <= self.output_padding < r:
                raise ValueError(f"kernel_size {k} cannot give an output "
                                 f"exactly {r} times the input with stride "
                                 f"{r}; use kernel_size >= {r}")

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass uses (after ``max_norm`` scaling)."""
        w = self.weight
        if self.max_norm is None:
            return w
        norms = _atom_norms(w, self.kind)
        scale = (self.max_norm / norms.clamp_min(1e-12)).clamp(max=1.0)
        shape = (1, -1, 1, 1) if self.kind == "subpixel" else (-1, 1, 1, 1)
        return w * scale.view(shape)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(batch, C, H, W)`` feature maps to ``(batch, c, rH, rW)``."""
        check_tensor("h", h)
        if h.ndim != 4 or h.shape[1] != self.in_channels:
            raise ValueError(f"h must have shape (batch, {self.in_channels}, "
                             f"H, W); got {tuple(h.shape)}")
        w = self.effective_weight()
        if self.kind == "subpixel":
            z = nn.functional.conv2d(h, w, padding=self.padding)
            out = nn.functional.pixel_shuffle(z, self.upscale)
        else:
            out = nn.functional.conv_transpose2d(
                h, w, stride=self.upscale, padding=self.padding,
                output_padding=self.output_padding)
        return out + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kind={self.kind}, "
                f"upscale={self.upscale}, kernel_size={self.kernel_size}, "
                f"max_norm={self.max_norm}")


def subpixel_to_transposed(weight: torch.Tensor, upscale: int) -> torch.Tensor:
    """The transposed-convolution kernel equal to a sub-pixel decoder.

    ``weight`` ``(c r^2, C, k, k)`` is a sub-pixel decoder's convolution
    (``k`` odd, padding ``k // 2``). Returns ``T`` ``(C, c, rk, rk)`` such
    that ``conv_transpose2d(h, T, stride=r, padding=r (k - 1) / 2)`` equals
    ``pixel_shuffle(conv2d(h, weight, padding=k // 2), r)``: output pixel
    ``(r h + i, r w + j)`` of channel ``c'`` reads input ``(h + u, w + v)``
    through ``weight[c' r^2 + i r + j, :, u + p, v + p]``, and the
    transposed convolution reaches it through kernel position
    ``(i + r (k - 1 - u - p), j + r (k - 1 - v - p))`` (Shi et al. 2016).
    Chapter "Sparse activity in classifiers".
    """
    r = check_int("upscale", upscale, minimum=1)
    check_tensor("weight", weight, ndim=4)
    oc, C, k, k2 = weight.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"weight must have a square, odd kernel; got "
                         f"{k}x{k2}")
    if oc % (r * r):
        raise ValueError(f"weight has {oc} output channels, not a multiple "
                         f"of upscale^2 = {r * r}")
    c = oc // (r * r)
    # w6[c', i, j, C, U, V] = weight[c' r^2 + i r + j, C, U, V]
    w6 = weight.reshape(c, r, r, C, k, k).flip(4, 5)  # U -> k - 1 - U
    # T[C, c', (k-1-U) r + i, (k-1-V) r + j]
    return w6.permute(3, 0, 4, 1, 5, 2).reshape(C, c, k * r, k * r)
