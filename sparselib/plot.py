"""One look for every figure in the book, and a few plotting helpers.

:func:`set_style` fixes sizes, fonts, grid and colours (call it once, in a
chapter's set-up cell); :data:`CODE_COLORS` gives local, dense and sparse
codes the same colour in every chapter. Helpers take ``ax=None`` (a new
figure is made when absent), return the Axes and never call ``plt.show()``.

Introduced in the chapter "Neural codes"; used by every chapter.
"""

from __future__ import annotations

import io

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

from .utils import check_int, check_real

__all__ = ["CODE_COLORS", "set_style", "get_ax", "image_grid", "to_png"]

#: Colour of each kind of code, the same in every figure of the book.
CODE_COLORS = {"local": "#d95f02", "dense": "#7570b3", "sparse": "#1b9e77"}

_STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.8,
    "image.cmap": "gray",
    "axes.prop_cycle": mpl.cycler(color=[
        "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
        "#a6761d", "#666666"]),
}


def set_style() -> None:
    """Apply the book's matplotlib style (idempotent).
    Chapter "Neural codes"."""
    mpl.rcParams.update(_STYLE)


def get_ax(ax=None, **subplot_kw):
    """``ax`` itself, or the Axes of a new figure when ``ax`` is None."""
    if ax is None:
        _, ax = plt.subplots(**subplot_kw)
    return ax


def image_grid(images, nrow: int | None = None, *, ax=None, cmap="gray",
               pad: int = 1, symmetric: bool = False,
               title: str | None = None):
    """Show ``images`` ``(N, H, W)`` (or ``(N, 1, H, W)``) as one tiled image.

    Each image is scaled to its own range (``symmetric=True``: to
    ``[-max|x|, max|x|]``, for filters whose sign matters). Returns the Axes.
    Chapter "Sparse coding as optimisation".
    """
    nrow = None if nrow is None else check_int("nrow", nrow, minimum=1)
    pad = check_int("pad", pad, minimum=0)
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images, dtype=float)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (N, 1, H, W); got "
                         f"shape {images.shape}")
    n, h, w = images.shape
    if n == 0:
        raise ValueError("images is empty")
    if nrow is None:
        nrow = int(np.ceil(np.sqrt(n)))
    ncol = int(np.ceil(n / nrow))
    canvas = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad), np.nan)
    for i, img in enumerate(images):
        if symmetric:
            m = np.abs(img).max() or 1.0
            img = (img / m + 1) / 2
        else:
            lo, hi = img.min(), img.max()
            img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        r, c = divmod(i, ncol)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h,
               pad + c * (w + pad): pad + c * (w + pad) + w] = img
    ax = get_ax(ax)
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def to_png(fig, dpi: int = 90) -> bytes:
    """Render a matplotlib Figure to PNG bytes and close it."""
    check_real("dpi", dpi, minimum=0, min_open=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
