"""Run set-up shared by every chapter: scale, device, seed and argument checks.

Every chapter notebook starts with the same three decisions:

* **scale** -- ``"quick"`` (CI, under a minute on two CPU cores), ``"full"``
  (the published outputs, at most 15 minutes on two CPU cores) or ``"paper"``
  (the source's own protocol, meant for a GPU). The notebook's ``SCALE``
  parameter decides, unless the environment variable ``SPARSELIB_SCALE`` is
  set: that is how nbval and the book build force a scale without editing
  notebooks.
* **device** -- ``"auto"`` picks CUDA when present, else the CPU.
* **seed** -- one integer seeds Python, NumPy and torch; ``deterministic=True``
  also asks torch for deterministic kernels.

:func:`setup` does all three and returns a :class:`RunConfig`. Introduced in
the chapter "Neural codes"; used by every chapter.
"""

from __future__ import annotations

import math
import numbers
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "SCALES",
    "SCALE_ENV",
    "RunConfig",
    "resolve_scale",
    "get_device",
    "seed_everything",
    "setup",
    "progress_enabled",
    "progress",
    "check_int",
    "check_real",
    "check_probability",
    "check_choice",
    "check_tensor",
    "check_same",
    "check_labels",
    "glue",
    "sci",
    "format_table",
]

#: The three scales at which every chapter runs.
SCALES = ("quick", "full", "paper")
#: Environment variable that overrides a notebook's ``SCALE`` parameter.
SCALE_ENV = "SPARSELIB_SCALE"

# The scale of the current run, set by setup(); decides whether progress
# bars are shown (they are silent at quick scale).
_CURRENT_SCALE: str | None = None


def progress(iterable, desc: str | None = None, total: int | None = None,
             enabled: bool | None = None):
    """``iterable`` wrapped in a tqdm progress bar (silent at quick scale).

    For the long loops of a chapter: ``for m in sl.progress(ms, "unions")``.
    ``enabled`` as in :func:`progress_enabled`. Chapter "Neural codes".
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total,
                disable=not progress_enabled(enabled))


def _show(value) -> str:
    """A short ``repr`` of ``value`` for error messages."""
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            return f"tensor({value.item()!r}, dtype={value.dtype})"
        return (f"a {value.ndim}-d tensor of shape {tuple(value.shape)} "
                f"({value.dtype})")
    if isinstance(value, np.generic):
        return repr(value.item())
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _interval(minimum, maximum, min_open: bool, max_open: bool) -> str:
    """The bounds as text: ``" >= 0"``, ``" in (0, 1]"`` or ``""``."""
    if minimum is not None and maximum is not None:
        lo = "(" if min_open else "["
        hi = ")" if max_open else "]"
        return f" in {lo}{minimum:g}, {maximum:g}{hi}"
    if minimum is not None:
        return f" {'>' if min_open else '>='} {minimum:g}"
    if maximum is not None:
        return f" {'<' if max_open else '<='} {maximum:g}"
    return ""


def check_int(name: str, value, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Return ``value`` as ``int`` or raise an error naming ``name``.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : object
        The value to check: a Python or NumPy integer, or an integral 0-d
        tensor. Bools and floats (even ``3.0``) are rejected.
    minimum, maximum : int, optional
        Inclusive bounds; ``None`` means unbounded on that side.

    Returns
    -------
    int
        ``value`` as a Python ``int``.

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If ``value`` lies outside ``[minimum, maximum]``.
    """
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not \
            value.is_floating_point() and not value.is_complex() and \
            value.dtype != torch.bool:
        value = int(value.item())
    if isinstance(value, (bool, np.bool_)) or \
            not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer, got {_show(value)} "
            f"({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_real(name: str, value, *, minimum: float | None = None,
               maximum: float | None = None, min_open: bool = False,
               max_open: bool = False, allow_nan: bool = False,
               allow_inf: bool = False) -> float:
    """Return ``value`` as ``float`` or raise an error naming ``name``.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : object
        The value to check: a Python ``int`` or ``float``, a NumPy real
        scalar (``np.float32``, ``np.int64``, ...) or a 0-d real tensor
        (read with ``.item()``: call this at an entry point, not in a
        loop). Bools, complex numbers, strings and ``None`` are rejected.
    minimum, maximum : float, optional
        Bounds; ``None`` means unbounded on that side.
    min_open, max_open : bool, default False
        Whether the bound excludes its end (``>`` rather than ``>=``).
    allow_nan : bool, default False
        Accept NaN (it is then returned without a bounds check).
    allow_inf : bool, default False
        Accept infinite values (still subject to the bounds).

    Returns
    -------
    float
        ``value`` as a Python ``float``.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If ``value`` is NaN or infinite (unless allowed) or out of bounds;
        the message states the interval, e.g.
        ``lam must be a real number >= 0, got -0.1``.
    """
    if isinstance(value, torch.Tensor) and value.ndim == 0 and \
            value.dtype != torch.bool and not value.is_complex():
        value = value.item()
    elif isinstance(value, np.ndarray) and value.ndim == 0 and \
            value.dtype.kind in "iuf":
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or \
            not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number, got {_show(value)} "
            f"({type(value).__name__})")
    value = float(value)
    bounds = _interval(minimum, maximum, min_open, max_open)
    if math.isnan(value):
        if allow_nan:
            return value
        raise ValueError(f"{name} must be a real number{bounds}, not NaN; "
                         f"got nan")
    if math.isinf(value) and not allow_inf:
        raise ValueError(f"{name} must be a finite real number{bounds}, "
                         f"got {value}")
    ok = True
    if minimum is not None:
        ok = value > minimum if min_open else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if max_open else value <= maximum
    if not ok:
        raise ValueError(f"{name} must be a real number{bounds}, got "
                         f"{value!r}")
    return value


def check_probability(name: str, value, *, open_low: bool = False,
                      open_high: bool = False) -> float:
    """Return ``value`` as ``float`` if it lies in [0, 1] (ends may be open).

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : object
        A real number, as accepted by :func:`check_real`.
    open_low, open_high : bool, default False
        Exclude 0 (``open_low``) or 1 (``open_high``).

    Returns
    -------
    float
        ``value`` as a Python ``float``.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If ``value`` is NaN or outside the interval.
    """
    return check_real(name, value, minimum=0, maximum=1, min_open=open_low,
                      max_open=open_high)


def check_choice(name: str, value, choices) -> str:
    """Return ``value`` if it is one of the strings ``choices``.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : object
        The value to check; must be a ``str`` (compared exactly).
    choices : iterable of str
        The allowed names.

    Returns
    -------
    str
        ``value``, unchanged.

    Raises
    ------
    TypeError
        If ``value`` is not a string.
    ValueError
        If ``value`` is not one of ``choices`` (the message lists them).
    """
    choices = tuple(choices)
    allowed = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {allowed}; got "
                        f"{_show(value)} ({type(value).__name__})")
    if value not in choices:
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value


def check_tensor(name: str, value, *, ndim=None, floating: bool = False,
                 dtype: torch.dtype | None = None,
                 finite: bool = False) -> torch.Tensor:
    """Return ``value`` if it is a tensor of the expected kind.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : object
        The value to check.
    ndim : int or tuple of int, optional
        The allowed number(s) of dimensions.
    floating : bool, default False
        Require a floating-point dtype.
    dtype : torch.dtype, optional
        Require exactly this dtype.
    finite : bool, default False
        Require every entry to be finite. This reads the tensor's values
        (a device synchronisation on a GPU): use it at an entry point,
        never inside an iteration loop.

    Returns
    -------
    torch.Tensor
        ``value``, unchanged.

    Raises
    ------
    TypeError
        If ``value`` is not a tensor, or has the wrong dtype.
    ValueError
        If ``value`` has the wrong number of dimensions, or (with
        ``finite=True``) holds NaN or infinite values.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got "
                        f"{type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got "
                        f"dtype {value.dtype}")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {value.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            want = " or ".join(f"{d}-d" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape "
                             f"{tuple(value.shape)} ({value.ndim}-d)")
    if finite and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


def check_labels(name: str, labels, n: int) -> torch.Tensor:
    """Return ``labels`` if it holds ``n`` integer class labels ``(n,)``.

    Checks the shape and dtype only, never the values, so it reads nothing
    from the device. (The older private checks in ``train`` and
    ``embedder`` do the same and are to be folded into this one when the
    chapters that reach them are next re-run.)

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    labels : object
        The value to check: a 1-d tensor of an integer dtype.
    n : int
        The number of labels expected (one per input).

    Returns
    -------
    torch.Tensor
        ``labels``, unchanged.

    Raises
    ------
    TypeError
        If ``labels`` is not a tensor or not of an integer dtype.
    ValueError
        If ``labels`` is not 1-d or does not hold ``n`` labels.
    """
    check_tensor(name, labels, ndim=1)
    if labels.is_floating_point() or labels.is_complex() or \
            labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class labels, got dtype "
                        f"{labels.dtype}")
    if labels.shape[0] != n:
        raise ValueError(f"{name} must hold one label per input: {n}; got "
                         f"{labels.shape[0]}")
    return labels


def check_same(tensors, *, dtype: bool = True) -> None:
    """Check that tensors share one dtype and one device.

    Parameters
    ----------
    tensors : mapping or iterable of (str, torch.Tensor)
        The tensors by argument name, e.g. ``{"x": x, "D": D}``; entries
        whose value is ``None`` are skipped.
    dtype : bool, default True
        Also require one dtype (``False``: the device only).

    Raises
    ------
    TypeError
        If an entry is not a tensor, or two tensors differ in dtype (the
        message names both arguments and both dtypes).
    ValueError
        If two tensors lie on different devices (a device is a property
        of the value, not of its kind; the message names both arguments
        and both devices).
    """
    items = list(tensors.items() if hasattr(tensors, "items") else tensors)
    items = [(n, check_tensor(n, t)) for n, t in items if t is not None]
    if not items:
        return
    first, ref = items[0]
    for other, t in items[1:]:
        if dtype and t.dtype != ref.dtype:
            raise TypeError(f"{first} and {other} must have the same dtype; "
                            f"got {first}: {ref.dtype}, {other}: {t.dtype}")
        if t.device != ref.device:
            raise ValueError(f"{first} and {other} must be on the same "
                             f"device; got {first} on {ref.device}, {other} "
                             f"on {t.device}")


def resolve_scale(scale: str | None = None) -> str:
    """Return the scale of this run.

    The environment variable ``SPARSELIB_SCALE`` wins over ``scale`` (so
    nbval and the book build can force one); otherwise ``scale`` is used,
    and ``None`` means ``"full"``.

    Raises ``ValueError`` for a scale that is not one of :data:`SCALES`.
    """
    env = os.environ.get(SCALE_ENV, "").strip()
    chosen = env if env else ("full" if scale is None else scale)
    source = f"environment variable {SCALE_ENV}" if env else "scale"
    if not isinstance(chosen, str):
        raise TypeError(f"{source} must be a string, one of "
                        f"{', '.join(SCALES)}; got {chosen!r}")
    return check_choice(source, chosen.strip().lower(), SCALES)


def get_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a :class:`torch.device`.

    ``"auto"`` (or ``None``) picks ``cuda`` when a CUDA device is present and
    the CPU otherwise; any other value is checked: asking for CUDA where
    there is none raises ``ValueError`` rather than failing later.
    """
    if device is None or (isinstance(device, str) and
                          device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"device must be 'auto', a string such as 'cpu' or 'cuda', or a "
            f"torch.device; got {device!r}")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got "
            f"{device!r}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} asks for CUDA, but torch sees no CUDA "
                "device here; use 'auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA "
                "device(s) present")
    elif dev.type != "cpu":
        raise ValueError(
            f"device must be 'auto', 'cpu' or 'cuda[:N]'; got {device!r}")
    return dev


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch (CPU and CUDA).
    Chapter "Noise-robust sparse networks".

    With ``deterministic=True`` torch is also asked for deterministic
    algorithms (``torch.use_deterministic_algorithms``, cuDNN deterministic,
    ``CUBLAS_WORKSPACE_CONFIG``): slower, but bit-for-bit repeatable runs on
    the same machine. Returns a CPU :class:`torch.Generator` seeded with
    ``seed``, for code that prefers an explicit generator.
    """
    seed = check_int("seed", seed, minimum=0, maximum=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class RunConfig:
    """What :func:`setup` decided: the scale, device and seed of a run."""

    scale: str
    device: torch.device
    seed: int

    def pick(self, **per_scale):
        """Return the value given for this run's scale.

        ``cfg.pick(quick=1, full=8, paper=15)`` reads like the table it is;
        every scale must be given, so no scale silently falls back.
        """
        missing = [s for s in SCALES if s not in per_scale]
        extra = sorted(set(per_scale) - set(SCALES))
        if missing or extra:
            raise ValueError(
                f"pick() needs exactly the scales {SCALES}; missing "
                f"{missing}, unknown {extra}")
        return per_scale[self.scale]

    def __str__(self) -> str:
        return (f"scale={self.scale} device={self.device.type} "
                f"seed={self.seed} torch={torch.__version__.split('+')[0]}")


def setup(scale: str | None = None, seed: int = 0, device="auto",
          deterministic: bool = False) -> RunConfig:
    """Resolve scale and device, seed everything; return a :class:`RunConfig`.

    The first code cell after a chapter's parameters is
    ``cfg = sl.setup(SCALE, SEED, DEVICE)``; ``print(cfg)`` then records in
    the notebook's output which scale produced it (the freshness test reads
    that line). Progress bars are silenced at quick scale.
    Chapter "Neural codes".
    """
    global _CURRENT_SCALE
    resolved = resolve_scale(scale)
    dev = get_device(device)
    seed = check_int("seed", seed, minimum=0, maximum=2**32 - 1)
    seed_everything(seed, deterministic=deterministic)
    _CURRENT_SCALE = resolved
    return RunConfig(scale=resolved, device=dev, seed=seed)


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether a long loop should show a tqdm bar.

    An explicit ``True``/``False`` wins; ``None`` means "yes, unless the
    current run (see :func:`setup`) is at quick scale".
    """
    if progress is not None:
        return bool(progress)
    return _CURRENT_SCALE != "quick"


def glue(name: str, value, display: bool = False):
    """Record ``value`` under ``name`` for the book's prose (myst-nb glue).

    The prose then says ``{glue:text}`name:.2f``` instead of a typed number.
    Where myst-nb is not installed (Colab), this does nothing, so chapters
    run anywhere. Returns ``value``. Chapter "Neural codes".
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r} "
                        f"({type(name).__name__})")
    if not name.isidentifier():
        raise ValueError(f"name must be an identifier-like string; got "
                         f"{name!r}")
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return value
    _glue(name, value, display=display)
    return value


def sci(x: float, digits: int = 1) -> str:
    """``x`` as LaTeX in scientific notation, for prose via glue.

    ``sci(0.00123)`` is ``$1.2 \\times 10^{-3}$``; numbers between 0.01 and
    1000 are written plainly, 0 as ``$0$``. Glue it as Markdown
    (``sl.glue(name, Markdown(sl.sci(p)))``) and show it with the role
    ``{glue:md}`` and the format ``myst``. Chapter "Neural codes".
    """
    digits = check_int("digits", digits, minimum=0)
    x = check_real("x", x, allow_nan=True, allow_inf=True)
    if x == 0 or x != x or x in (float("inf"), float("-inf")):
        return f"${x:g}$" if x == x else "$\\mathrm{NaN}$"
    if 0.01 <= abs(x) < 1000:
        return f"${x:.{digits + 1}g}$"
    mant, exp = f"{x:.{digits}e}".split("e")
    return f"${mant} \\times 10^{{{int(exp)}}}$"


def format_table(rows, columns=None, *, index: str = "",
                 na: str = "") -> str:
    """A plain-text table of ``rows``, for printing in a notebook.
    Chapter "Noise-robust sparse networks".

    ``rows`` maps each row's label to a dict of column -> value (or to a
    sequence of values in the order of ``columns``). Columns are
    right-aligned; ``None`` and NaN are written as ``na``; numbers as
    ``str`` gives them, so format them before if they need rounding.

    Parameters
    ----------
    rows : dict
        Row label -> dict (column -> value) or sequence of values.
    columns : sequence of str, optional
        The columns, in order. Default: the keys of the rows' dicts in
        order of first appearance (required when rows are sequences).
    index : str, default ""
        Header of the label column.
    na : str, default ""
        What a missing value, ``None`` or NaN is written as.

    Returns
    -------
    str
        The table, one line per row after a header line.

    Raises
    ------
    TypeError
        If ``rows`` is not a dict, or a row is neither a dict nor a
        sequence.
    ValueError
        If rows are sequences and ``columns`` is not given, or a sequence
        row has a different length from ``columns``.
    """
    if not isinstance(rows, dict):
        raise TypeError(f"rows must be a dict of row label -> row, got "
                        f"{type(rows).__name__}")
    if columns is None:
        columns = []
        for label, row in rows.items():
            if not isinstance(row, dict):
                raise ValueError(
                    f"rows[{label!r}] is not a dict: give columns for rows "
                    f"that are sequences")
            columns += [c for c in row if c not in columns]
    columns = [str(c) for c in columns]

    def cell(value):
        if value is None or (isinstance(value, float) and value != value):
            return na
        return str(value)

    body = []
    for label, row in rows.items():
        if isinstance(row, dict):
            values = [cell(row.get(c)) for c in columns]
        elif isinstance(row, (list, tuple)):
            if len(row) != len(columns):
                raise ValueError(
                    f"rows[{label!r}] has {len(row)} values for "
                    f"{len(columns)} columns")
            values = [cell(v) for v in row]
        else:
            raise TypeError(f"rows[{label!r}] must be a dict or a sequence, "
                            f"got {type(row).__name__}")
        body.append([str(label)] + values)
    header = [index] + columns
    widths = [max(len(r[i]) for r in [header] + body)
              for i in range(len(header))]
    lines = []
    for r in [header] + body:
        first = r[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(r[1:], widths[1:])]
        lines.append("  ".join([first] + rest).rstrip())
    return "\n".join(lines)
