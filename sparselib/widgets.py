"""Interactive explorers that are safe to run headless.

:func:`explorer` shows a figure that redraws when sliders move. It is built
from plain controls and an :class:`ipywidgets.Image` holding a PNG, *not*
from ``interact`` and its ``Output`` widget: executing ``interact`` under
papermill/nbclient can stall until the cell timeout (nbclient #312,
papermill #723; 4 stalls in 20 runs measured here on a busy CPU). The image
of the default values is part of the widget's saved state, so the book shows
the explorer with its default figure even without a kernel.

Set ``SPARSELIB_WIDGETS=0`` (the test runs do) and :func:`explorer` only
draws the default figure once, as a plain image, creating no widget at all.

Introduced in the chapter "Neural codes".
"""

from __future__ import annotations

import os

from .plot import to_png
from .utils import check_real

__all__ = ["WIDGETS_ENV", "widgets_enabled", "explorer"]

#: Environment variable; "0" turns explorers into one static figure.
WIDGETS_ENV = "SPARSELIB_WIDGETS"


def widgets_enabled() -> bool:
    """False when ``SPARSELIB_WIDGETS=0`` or ipywidgets is missing."""
    if os.environ.get(WIDGETS_ENV, "1").strip() in ("0", "false", "no"):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def explorer(render, controls: dict, *, note: str | None = None,
             dpi: int = 100, enabled: bool | None = None):
    """An explorer: ``render(**values) -> Figure`` redrawn on every change.

    ``controls`` maps each keyword of ``render`` to an ipywidgets control
    (``IntSlider``, ``Dropdown``...), whose ``value`` is the default. With
    widgets enabled, returns a ``VBox`` (controls, note, image) to display;
    otherwise renders the default once and returns an
    :class:`IPython.display.Image`. The callback is ``box.refresh()``, which
    tests can call. Chapter "Neural codes".
    """
    if not callable(render):
        raise TypeError("render must be callable: render(**values) -> Figure")
    if not isinstance(controls, dict):
        raise TypeError(f"controls must be a dict name -> widget; got "
                        f"{type(controls).__name__}")
    if not controls:
        raise ValueError("controls must be a non-empty dict name -> widget; "
                         "got {}")
    check_real("dpi", dpi, minimum=0, min_open=True)
    for name, ctrl in controls.items():
        if not hasattr(ctrl, "value"):
            raise TypeError(f"control {name!r} has no .value: pass an "
                            "ipywidgets control such as IntSlider")
    values = {k: c.value for k, c in controls.items()}
    enabled = widgets_enabled() if enabled is None else enabled
    if not enabled:
        from IPython.display import Image
        return Image(data=to_png(render(**values), dpi=dpi), format="png")

    import ipywidgets as w

    image = w.Image(value=to_png(render(**values), dpi=dpi), format="png")
    parts = []
    for name, ctrl in controls.items():
        if not getattr(ctrl, "description", ""):
            ctrl.description = name
        ctrl.continuous_update = False
        parts.append(ctrl)
    if note:
        parts.append(w.HTML(f"<small>{note}</small>"))
    box = w.VBox(parts + [image])

    def refresh(_change=None):
        current = {k: c.value for k, c in controls.items()}
        image.value = to_png(render(**current), dpi=dpi)

    for ctrl in controls.values():
        ctrl.observe(refresh, names="value")
    box.refresh = refresh
    box.image = image
    return box
