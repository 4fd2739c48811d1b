"""sparselib.plot and sparselib.widgets."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from sparselib import plot, widgets

matplotlib.use("Agg")


def test_set_style_is_idempotent():
    plot.set_style()
    size = tuple(matplotlib.rcParams["figure.figsize"])
    plot.set_style()
    assert tuple(matplotlib.rcParams["figure.figsize"]) == size
    assert set(plot.CODE_COLORS) == {"local", "dense", "sparse"}


def test_image_grid_tiles_and_scales_each_image():
    imgs = torch.stack([torch.full((3, 2), float(i)) for i in range(5)])
    imgs[:, 0, 0] = -1.0
    ax = plot.image_grid(imgs, nrow=2, pad=1)
    canvas = ax.images[0].get_array()
    assert canvas.shape == (2 * 4 + 1, 3 * 3 + 1)  # 2 rows, 3 columns
    assert np.nanmin(canvas) == 0.0 and np.nanmax(canvas) == 1.0
    plt.close("all")
    with pytest.raises(ValueError, match="images must be"):
        plot.image_grid(torch.ones(4, 4))
    with pytest.raises(ValueError, match="nrow must be >= 1, got 0"):
        plot.image_grid(imgs, nrow=0)
    with pytest.raises(TypeError, match="nrow must be an integer"):
        plot.image_grid(imgs, nrow=2.5)  # used to be truncated to 2
    with pytest.raises(ValueError, match="pad must be >= 0, got -1"):
        plot.image_grid(imgs, pad=-1)
    ax = plot.image_grid(imgs, nrow=np.int64(2), pad=0)
    assert ax.images[0].get_array().shape == (2 * 3, 3 * 2)
    plt.close("all")


def test_to_png_closes_the_figure():
    fig, _ = plt.subplots()
    data = plot.to_png(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="dpi must be a real number > 0, "
                                         "got -1"):
        plot.to_png(fig, dpi=-1)
    with pytest.raises(TypeError, match="dpi must be a real number"):
        plot.to_png(fig, dpi="90")
    plt.close(fig)


class _Fixed:
    """A stand-in control: just a ``value``."""

    def __init__(self, value):
        self.value = value


def _render(n=10):
    fig, ax = plt.subplots()
    ax.plot(range(n))
    return fig


def test_explorer_static_when_widgets_are_off(monkeypatch):
    import ipywidgets as w
    monkeypatch.setenv("SPARSELIB_WIDGETS", "0")
    out = widgets.explorer(_render, {"n": w.IntSlider(value=5, min=2)})
    assert out.format == "png" and out.data[:4] == b"\x89PNG"


def test_explorer_redraws_on_change(monkeypatch):
    import ipywidgets as w
    monkeypatch.setenv("SPARSELIB_WIDGETS", "1")
    calls = []

    def render(n):
        calls.append(n)
        return _render(n)

    slider = w.IntSlider(value=5, min=2, max=50)
    box = widgets.explorer(render, {"n": slider}, note="live in Jupyter")
    assert isinstance(box, w.VBox) and calls == [5]
    first = box.image.value
    slider.value = 40  # what a reader's drag does
    assert calls == [5, 40] and box.image.value != first
    assert slider.description == "n"


def test_explorer_bad_input():
    with pytest.raises(TypeError, match="render must be callable"):
        widgets.explorer(3, {"n": 1})
    with pytest.raises(ValueError, match="non-empty"):
        widgets.explorer(_render, {})
    with pytest.raises(TypeError, match="controls must be a dict"):
        widgets.explorer(_render, [("n", 5)])
    with pytest.raises(ValueError, match="dpi must be a real number > 0"):
        widgets.explorer(_render, {"n": _Fixed(5)}, dpi=0, enabled=False)
    with pytest.raises(TypeError, match="has no .value"):
        widgets.explorer(_render, {"n": 5})
