"""What sparsity costs: time and memory of sparse weights on a real machine.

A weight matrix with 90 % zeros needs a tenth of the multiplications on
paper. Whether a machine runs it faster depends on the kernel, not on the
zeros: a dense kernel multiplies the zeros like any other number, so a
pruning mask (``torch.nn.utils.prune`` keeps the weight dense and multiplies
it by a 0/1 mask) gives no speed-up at all. Real savings need a sparse
*format* and a kernel written for it:

* **CSR** (compressed sparse rows): the non-zero values, their column
  indices and one pointer per row; **CSC** the same by columns; **COO** a
  (row, column) pair per value; **BSR** stores dense ``(r, c)`` blocks of a
  matrix whose zeros come in whole blocks. Each pays for its indices in
  memory (:func:`storage_bytes`) and in irregular memory access, so a
  sparse kernel beats the dense one only above some *crossover* sparsity,
  which depends on the machine, the number of threads, the matrix and the
  batch size. :func:`linear_times` and :func:`sparsity_sweep` measure it,
  :func:`crossover_sparsity` reads it off.
* **2:4 semi-structured** sparsity (two non-zeros in every group of four
  along the input dimension) runs on the sparse tensor cores of NVIDIA
  GPUs of compute capability 8.0 and later, in float16 or bfloat16
  (``torch.sparse.to_sparse_semi_structured``). :func:`prune_2_4` makes a
  weight 2:4 sparse; :func:`semi_structured_times` times it where the
  hardware exists and otherwise says why not
  (:func:`semi_structured_support`). Published A100 figures: one 2:4
  linear layer 1.38 times as fast as dense, BERT 1.23 times as fast at
  batch 16 but 0.71 times (slower) at batch 4.

Activation sparsity (k-winners-take-all) is the other half of the story:
selecting the winners costs time (``topk``) and no dense kernel skips the
zeros it leaves; :func:`sparselib.benchmarks.kwinners_speed` measures it.

Timings are medians of repeated runs, measured side by side in one process
with the formats interleaved, and reported as ratios to the dense kernel
(``ratio > 1``: faster than dense); an absolute time means something only
together with the device and the number of threads, so every record says
both. :func:`latency` times a whole model and :func:`peak_memory` measures
the memory a call needs, on a GPU with CUDA's allocator statistics and on
the CPU with the PyTorch profiler's allocation events.

References: PyTorch documentation, "torch.sparse" and "Accelerating BERT
with semi-structured (2:4) sparsity" (PyTorch tutorials); A. Mishra et al.,
"Accelerating Sparse Deep Neural Networks", arXiv:2104.08378, 2021 (2:4
sparsity on Ampere GPUs); S. Ahmad and L. Scheinkman, "How Can We Be So
Dense? The Benefits of Using Highly Sparse Representations",
arXiv:1903.11257, 2019 (the promise of sparse weights and activations).

Introduced in the chapter "Dendrites, pruning and what sparsity costs".
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .utils import check_choice, check_int, check_probability, \
    check_tensor, get_device, progress

__all__ = [
    "STORAGE_FORMATS",
    "TIMED_FORMATS",
    "DEFAULT_BLOCKSIZE",
    "SWEEP_SPARSITIES",
    "random_sparse_weight",
    "to_format",
    "storage_bytes",
    "linear_times",
    "sparsity_sweep",
    "crossover_sparsity",
    "latency",
    "peak_memory",
    "prune_2_4",
    "semi_structured_support",
    "semi_structured_times",
]

#: The layouts that ``to_format`` converts a weight to.
STORAGE_FORMATS = ("dense", "csr", "csc", "coo", "bsr")
#: The ways ``linear_times`` computes ``x @ W.T``; ``"masked"`` is the
#: dense kernel on the masked weight (what ``torch.nn.utils.prune`` runs).
TIMED_FORMATS = ("dense", "masked", "csr", "csc", "coo", "bsr")
#: Side of the square blocks of the BSR format unless told otherwise.
DEFAULT_BLOCKSIZE = 16
#: The sparsities (fractions of zero weights) that ``sparsity_sweep``
#: measures unless told otherwise.
SWEEP_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)

# The warning torch prints the first time a compressed sparse tensor is made.
_BETA_WARNING = ".*[Ss]parse.*support is in beta state.*"


# ----------------------------------------------------------------------------
# Weights and formats


def _check_generator(generator):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    return generator


def _check_dtype(dtype, floating=True):
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got "
                        f"{type(dtype).__name__}")
    if floating and not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    return dtype


def _device(device, default="cpu"):
    """``device`` checked by :func:`~sparselib.utils.get_device`
    (``None``: ``default``)."""
    return torch.device(default) if device is None else get_device(device)


def random_sparse_weight(out_features: int, in_features: int,
                         sparsity: float, *, block: int | None = None,
                         generator: torch.Generator | None = None,
                         dtype: torch.dtype = torch.float32,
                         device=None) -> torch.Tensor:
    """A random ``(out_features, in_features)`` weight with exact zeros.
    Chapter "Dendrites, pruning and what sparsity costs".

    Of the ``n`` entries (or, with ``block``, of the ``n`` blocks of
    ``block x block`` entries) exactly ``round(sparsity * n)``, chosen
    uniformly at random without repetition, are zero; the others are drawn
    from a normal distribution with standard deviation
    ``1 / sqrt(in_features)`` and are never zero. The realised sparsity is
    therefore ``round(sparsity * n) / n``, equal to ``sparsity`` whenever
    ``sparsity * n`` is a whole number.

    Parameters
    ----------
    out_features, in_features : int
        The shape of the weight, each >= 1.
    sparsity : float
        The fraction of zero entries (blocks), in [0, 1].
    block : int, optional
        Zero whole ``(block, block)`` blocks, aligned to multiples of
        ``block`` (the structure BSR stores efficiently); both sizes must
        be multiples of it. ``None``: unstructured zeros.
    generator : torch.Generator, optional
        Source of the positions and values; the draws happen on its
        device and the result is moved to ``device``. ``None`` uses
        torch's global CPU generator.
    dtype : torch.dtype, default torch.float32
        A floating-point dtype.
    device : str or torch.device, optional
        Where the weight is made; default the CPU.

    Returns
    -------
    torch.Tensor
        The dense (strided) weight.

    Raises
    ------
    TypeError
        If a size or ``block`` is not an integer, ``sparsity`` not a real
        number, ``generator`` not a generator or ``dtype`` not a
        floating-point dtype.
    ValueError
        If a size or ``block`` is < 1, ``sparsity`` lies outside [0, 1],
        or a size is not a multiple of ``block``.
    """
    out_features = check_int("out_features", out_features, minimum=1)
    in_features = check_int("in_features", in_features, minimum=1)
    sparsity = check_probability("sparsity", sparsity)
    _check_generator(generator)
    dtype = _check_dtype(dtype)
    dev = _device(device)
    b = 1
    if block is not None:
        b = check_int("block", block, minimum=1)
        for name, size in (("out_features", out_features),
                           ("in_features", in_features)):
            if size % b:
                raise ValueError(f"{name} ({size}) must be a multiple of "
                                 f"block ({b})")
    gdev = generator.device if generator is not None else torch.device("cpu")
    rows, cols = out_features // b, in_features // b
    n = rows * cols
    n_zero = round(sparsity * n)
    keep = torch.ones(n, dtype=torch.bool, device=gdev)
    keep[torch.randperm(n, generator=generator, device=gdev)[:n_zero]] = False
    keep = keep.view(rows, cols)
    if b > 1:
        keep = keep.repeat_interleave(b, 0).repeat_interleave(b, 1)
    values = torch.randn(out_features, in_features, generator=generator,
                         device=gdev, dtype=torch.float32)
    values = torch.where(values == 0, torch.ones_like(values), values)
    values = values / math.sqrt(in_features)
    weight = torch.where(keep, values, torch.zeros_like(values))
    return weight.to(device=dev, dtype=dtype)


def _check_weight(weight, name="weight"):
    check_tensor(name, weight, ndim=2, floating=True)
    if weight.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got "
                        f"layout {weight.layout}")
    return weight


def _blocksize(blocksize, shape):
    """``blocksize`` as ``(r, c)`` dividing ``shape``."""
    if blocksize is None:
        blocksize = DEFAULT_BLOCKSIZE
    if isinstance(blocksize, (tuple, list)):
        if len(blocksize) != 2:
            raise ValueError(f"blocksize must be an int or a pair (r, c); "
                             f"got {blocksize!r}")
        r = check_int("blocksize[0]", blocksize[0], minimum=1)
        c = check_int("blocksize[1]", blocksize[1], minimum=1)
    else:
        r = c = check_int("blocksize", blocksize, minimum=1)
    if shape[0] % r or shape[1] % c:
        raise ValueError(f"blocksize ({r}, {c}) must divide the weight's "
                         f"shape {tuple(shape)}")
    return r, c


def to_format(weight: torch.Tensor, fmt: str, *,
              blocksize: int | tuple[int, int] | None = None
              ) -> torch.Tensor:
    """``weight`` in the layout ``fmt``: the same matrix, stored differently.
    Chapter "Dendrites, pruning and what sparsity costs".

    Parameters
    ----------
    weight : torch.Tensor
        A dense (strided) 2-d floating-point tensor.
    fmt : str
        One of :data:`STORAGE_FORMATS`: ``"dense"`` (``weight`` itself),
        ``"csr"``, ``"csc"``, ``"coo"`` (coalesced) or ``"bsr"``.
    blocksize : int or (int, int), optional
        The block shape of ``"bsr"`` (an int means square blocks); it must
        divide the weight's shape. Default :data:`DEFAULT_BLOCKSIZE`. Only
        used with ``"bsr"``. The CPU's BSR product (MKL) accepts square
        blocks only; other shapes can be stored but not multiplied there.

    Returns
    -------
    torch.Tensor
        The weight in the new layout, on its device, in its dtype. Zero
        entries (zero blocks for BSR) are not stored; a BSR block with one
        non-zero entry is stored whole.

    Raises
    ------
    TypeError
        If ``weight`` is not a dense floating-point tensor or ``fmt`` not
        a string.
    ValueError
        If ``weight`` is not 2-d, ``fmt`` is unknown, or ``blocksize`` is
        given for another format or does not divide the shape.
    """
    _check_weight(weight)
    fmt = check_choice("fmt", fmt, STORAGE_FORMATS)
    if fmt != "bsr" and blocksize is not None:
        raise ValueError(f"blocksize is only used with fmt='bsr'; got "
                         f"blocksize={blocksize!r} with fmt={fmt!r}")
    if fmt == "dense":
        return weight
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_BETA_WARNING)
        if fmt == "csr":
            return weight.to_sparse_csr()
        if fmt == "csc":
            return weight.to_sparse_csc()
        if fmt == "coo":
            return weight.to_sparse().coalesce()
        return weight.to_sparse_bsr(_blocksize(blocksize, weight.shape))


def _nbytes(t):
    return t.numel() * t.element_size()


# Tensors a 2:4 semi-structured tensor may hold (CUTLASS or cuSPARSELt).
_SEMI_PARTS = ("packed", "meta", "packed_t", "meta_t",
               "compressed_swizzled_bitmask")


def storage_bytes(weight) -> int:
    """Bytes a matrix occupies: its values plus its indices and pointers.
    Chapter "Dendrites, pruning and what sparsity costs".

    * dense (strided): ``numel * element_size`` (4 bytes per entry in
      float32; the bytes of the entries, whatever the strides);
    * COO: the ``nnz`` values plus a ``(2, nnz)`` index tensor (int64:
      16 bytes per value);
    * CSR / CSC: the values, one column (row) index per value and
      ``rows + 1`` (``columns + 1``) pointers;
    * BSR / BSC: the stored blocks (``nblocks * r * c`` values), one
      index per block and ``rows / r + 1`` (``columns / c + 1``) pointers;
    * 2:4 semi-structured (``torch.sparse.SparseSemiStructuredTensor``):
      every tensor it holds (packed values, metadata, their transposed
      copies where kept).

    The numbers count the tensors' elements at their dtypes, not the
    allocator's rounding or the Python objects around them.

    Parameters
    ----------
    weight : torch.Tensor
        A dense or sparse tensor.

    Returns
    -------
    int
        The bytes.

    Raises
    ------
    TypeError
        If ``weight`` is not a tensor, or its layout is not one of the
        above.
    """
    semi = getattr(torch.sparse, "SparseSemiStructuredTensor", None)
    if semi is not None and isinstance(weight, semi):
        parts = (getattr(weight, name, None) for name in _SEMI_PARTS)
        return sum(_nbytes(p) for p in parts if isinstance(p, torch.Tensor))
    check_tensor("weight", weight)
    layout = weight.layout
    if layout == torch.strided:
        return _nbytes(weight)
    if layout == torch.sparse_coo:
        return _nbytes(weight._values()) + _nbytes(weight._indices())
    if layout in (torch.sparse_csr, torch.sparse_bsr):
        return (_nbytes(weight.values()) + _nbytes(weight.col_indices())
                + _nbytes(weight.crow_indices()))
    if layout in (torch.sparse_csc, torch.sparse_bsc):
        return (_nbytes(weight.values()) + _nbytes(weight.row_indices())
                + _nbytes(weight.ccol_indices()))
    raise TypeError(f"weight has layout {layout}, which storage_bytes does "
                    f"not know")


# ----------------------------------------------------------------------------
# Timing sparse products


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _sizes(name, values, minimum=1):
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of integers, got "
                        f"{type(values).__name__}")
    out = [check_int(f"{name}[{i}]", v, minimum=minimum)
           for i, v in enumerate(values)]
    if not out:
        raise ValueError(f"{name} must hold at least one value, got an "
                         f"empty sequence")
    return out


def _formats(formats):
    if isinstance(formats, str) or not isinstance(formats, Sequence):
        raise TypeError(f"formats must be a sequence of format names, got "
                        f"{type(formats).__name__}")
    out = [check_choice(f"formats[{i}]", f, TIMED_FORMATS)
           for i, f in enumerate(formats)]
    if not out:
        raise ValueError("formats must name at least one format, got an "
                         "empty sequence")
    if len(set(out)) != len(out):
        raise ValueError(f"formats must not repeat a format; got {out}")
    return out


def _interleaved(fns, repeat, warmup, dev):
    """Median seconds of each function, the functions taking turns.

    Every round runs each function once, starting one further along the
    list each round, so that a slow moment and the position in the round
    fall on all of them alike.
    """
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(warmup + repeat):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            _sync(dev)
            t0 = time.perf_counter()
            fns[name]()
            _sync(dev)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def _products(weight, dense_weight, formats, blocksize):
    """``x -> x @ W.T`` for each format (sparse matrices on the left)."""
    fns = {}
    for fmt in formats:
        if fmt == "dense":
            fns[fmt] = (lambda w: lambda x: nn.functional.linear(x, w))(
                dense_weight)
        elif fmt == "masked":
            fns[fmt] = (lambda w: lambda x: nn.functional.linear(x, w))(
                weight)
        else:
            s = to_format(weight, fmt, blocksize=blocksize
                          if fmt == "bsr" else None)
            fns[fmt] = (lambda m: lambda x: (m @ x.T).T)(s)
    return fns


def _agree(outputs, dtype):
    """Raise if the formats that hold the same weight disagree."""
    names = [n for n in outputs if n != "dense"]
    if len(names) < 2:
        return
    ref = outputs[names[0]]
    tol = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    for name in names[1:]:
        if not torch.allclose(outputs[name], ref, rtol=tol,
                              atol=tol * max(scale, 1.0)):
            raise RuntimeError(f"the {name!r} product differs from the "
                               f"{names[0]!r} product: a sparse kernel "
                               f"gave a wrong result")


def linear_times(weight: torch.Tensor, batch_sizes: Sequence[int],
                 formats: Sequence[str] = ("dense", "masked", "csr", "bsr"),
                 *, blocksize: int | tuple[int, int] | None = None,
                 repeat: int = 10, warmup: int = 2, device=None,
                 dtype: torch.dtype = torch.float32,
                 seed: int = 0) -> list[dict]:
    """Time ``y = x @ W.T`` with ``W`` stored in each format.

    For each batch size ``b`` an input ``x`` ``(b, in_features)`` is drawn
    and the product computed in each format:

    * ``"dense"`` -- the dense kernel (``nn.functional.linear``) on a
      *fully dense* random weight of the same shape: the unpruned layer;
    * ``"masked"`` -- the same kernel on ``weight`` with its zeros, which
      is what a layer pruned with ``torch.nn.utils.prune`` runs;
    * ``"csr"``, ``"csc"``, ``"coo"``, ``"bsr"`` -- ``weight`` converted
      by :func:`to_format` (once, not timed) and multiplied as
      ``(W @ x.T).T`` with the sparse matrix on the left, the product the
      sparse kernels implement (``nn.functional.linear`` with a sparse
      weight transposes it first and is several times slower on the CPU).

    The formats take turns within each of ``warmup + repeat`` rounds and
    each gets the median of its ``repeat`` timed runs. So each format runs
    after the others, with their data rather than its own in the caches,
    as a layer does in a network; a dense kernel timed alone, over and
    over, looks faster at small batches. Before timing, the
    outputs of all formats holding ``weight`` (all but ``"dense"``) are
    checked to agree (``allclose``).

    Parameters
    ----------
    weight : torch.Tensor
        Dense (strided) floating-point ``(out_features, in_features)``
        weight with its zeros.
    batch_sizes : sequence of int
        Rows of ``x``, each >= 1.
    formats : sequence of str, default ("dense", "masked", "csr", "bsr")
        Names from :data:`TIMED_FORMATS`, without repeats.
    blocksize : int or (int, int), optional
        The BSR block shape (default :data:`DEFAULT_BLOCKSIZE`; square on
        the CPU). BSR only pays off when the zeros come in whole blocks of
        this shape (see ``block`` of :func:`random_sparse_weight`).
    repeat : int, default 10
        Timed rounds (>= 1).
    warmup : int, default 2
        Untimed rounds first (>= 0).
    device : str or torch.device, optional
        Where to compute; default ``weight``'s device.
    dtype : torch.dtype, default torch.float32
        The dtype of the weight and the input.
    seed : int, default 0
        Seeds the inputs and the dense weight.

    Returns
    -------
    list of dict
        One record per batch size and format, in that order: ``format``,
        ``batch``, ``sparsity`` (fraction of zeros of ``weight``),
        ``seconds`` (median), ``ratio`` (dense seconds over this format's
        seconds, > 1: faster than dense; ``None`` when ``"dense"`` is not
        among ``formats``), ``out_features``, ``in_features``, ``device``,
        ``dtype`` and ``threads`` (``torch.get_num_threads()``).

    Raises
    ------
    TypeError
        If ``weight`` is not a dense floating-point tensor, an argument
        has the wrong type, or a format is not a string.
    ValueError
        If ``weight`` is not 2-d or empty, a batch size < 1, a format
        unknown or repeated, ``blocksize`` does not divide the shape, or
        ``repeat < 1``.
    RuntimeError
        If two formats give different products.
    """
    _check_weight(weight)
    if weight.numel() == 0:
        raise ValueError(f"weight must not be empty; got shape "
                         f"{tuple(weight.shape)}")
    batch_sizes = _sizes("batch_sizes", batch_sizes)
    formats = _formats(formats)
    repeat = check_int("repeat", repeat, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    dtype = _check_dtype(dtype)
    dev = weight.device if device is None else _device(device)
    if "bsr" in formats:
        blocksize = _bsr_blocksize(blocksize, weight.shape, dev)
    elif blocksize is not None:
        raise ValueError("blocksize is only used when formats include "
                         "'bsr'")
    return _linear_times(weight, batch_sizes, formats, blocksize, repeat,
                         warmup, dev, dtype, seed)


def _bsr_blocksize(blocksize, shape, dev):
    """:func:`_blocksize`, square on the CPU (MKL's BSR product)."""
    r, c = _blocksize(blocksize, shape)
    if dev.type == "cpu" and r != c:
        raise ValueError(f"blocksize must be square on the CPU (MKL's BSR "
                         f"product takes square blocks only); got ({r}, "
                         f"{c})")
    return r, c


def _linear_times(weight, batch_sizes, formats, blocksize, repeat, warmup,
                  dev, dtype, seed, extra=None):
    """Unchecked :func:`linear_times`."""
    w = weight.detach().to(device=dev, dtype=dtype)
    out_features, in_features = w.shape
    sparsity = float((w == 0).sum()) / w.numel()
    gen = torch.Generator().manual_seed(seed)
    dense_w = (torch.randn(w.shape, generator=gen) / math.sqrt(in_features)
               ).to(device=dev, dtype=dtype)
    fns = _products(w, dense_w, formats, blocksize)
    threads = torch.get_num_threads()
    records = []
    with torch.no_grad():
        for b in batch_sizes:
            x = torch.randn(b, in_features, generator=gen).to(dev, dtype)
            _agree({name: f(x) for name, f in fns.items()}, dtype)
            secs = _interleaved({name: (lambda f: lambda: f(x))(f)
                                 for name, f in fns.items()},
                                repeat, warmup, dev)
            for name in formats:
                rec = {"format": name, "batch": b, "sparsity": sparsity,
                       "seconds": secs[name],
                       "ratio": secs["dense"] / secs[name]
                       if "dense" in secs else None,
                       "out_features": out_features,
                       "in_features": in_features, "device": str(dev),
                       "dtype": str(dtype).replace("torch.", ""),
                       "threads": threads}
                if extra:
                    rec.update(extra)
                records.append(rec)
    return records


def sparsity_sweep(out_features: int = 1024, in_features: int = 1024,
                   sparsities: Sequence[float] = SWEEP_SPARSITIES,
                   batch_sizes: Sequence[int] = (1, 64, 256),
                   formats: Sequence[str] = ("dense", "masked", "csr",
                                             "bsr"),
                   *, block: int | None = None,
                   blocksize: int | tuple[int, int] | None = None,
                   repeat: int = 7, warmup: int = 1, seed: int = 0,
                   device=None, dtype: torch.dtype = torch.float32,
                   progress_bar: bool | None = None) -> list[dict]:
    """:func:`linear_times` for a grid of sparsities and batch sizes.
    Chapter "Dendrites, pruning and what sparsity costs".

    For each sparsity a weight is drawn by :func:`random_sparse_weight`
    (seeded by ``seed``, unstructured or in ``block``-sized blocks) and
    timed in every format at every batch size, all in this one process.
    With the defaults (a 1024 x 1024 layer, seven sparsities, three batch
    sizes, four formats) the sweep takes about six seconds on one CPU
    thread, about three with ``block=16`` (BSR on unstructured zeros is
    the slow part).

    Parameters
    ----------
    out_features, in_features : int, default 1024
        The layer's shape.
    sparsities : sequence of float, default :data:`SWEEP_SPARSITIES`
        Fractions of zero weights, each in [0, 1].
    batch_sizes : sequence of int, default (1, 64, 256)
        Rows of the input.
    formats : sequence of str, default ("dense", "masked", "csr", "bsr")
        As in :func:`linear_times`.
    block : int, optional
        Zero whole ``(block, block)`` blocks (``None``: unstructured
        zeros, on which BSR stores nearly every block).
    blocksize : int or (int, int), optional
        The BSR block shape; default ``block`` when given, else
        :data:`DEFAULT_BLOCKSIZE`.
    repeat, warmup : int
        As in :func:`linear_times`.
    seed : int, default 0
        Seeds the weights and the inputs.
    device : str or torch.device, optional
        Default: the CPU (the question is the CPU's sparse kernels).
    dtype : torch.dtype, default torch.float32
        The dtype of the weights and inputs.
    progress_bar : bool, optional
        Show a bar over the sparsities (``None``: silent at quick scale,
        see :func:`sparselib.utils.progress`).

    Returns
    -------
    list of dict
        The records of :func:`linear_times`, sparsity by sparsity, each
        with ``target_sparsity`` (the value asked for; ``sparsity`` is the
        realised fraction of zeros, within ``1 / n`` of it) and ``block``
        added.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If a size, sparsity, batch size, format, ``block`` or
        ``blocksize`` is invalid (as in :func:`random_sparse_weight` and
        :func:`linear_times`).
    RuntimeError
        If two formats give different products.
    """
    out_features = check_int("out_features", out_features, minimum=1)
    in_features = check_int("in_features", in_features, minimum=1)
    if isinstance(sparsities, (str, bytes)) or \
            not isinstance(sparsities, Sequence):
        raise TypeError(f"sparsities must be a sequence of real numbers, "
                        f"got {type(sparsities).__name__}")
    sparsities = [check_probability(f"sparsities[{i}]", s)
                  for i, s in enumerate(sparsities)]
    if not sparsities:
        raise ValueError("sparsities must hold at least one value, got an "
                         "empty sequence")
    batch_sizes = _sizes("batch_sizes", batch_sizes)
    formats = _formats(formats)
    repeat = check_int("repeat", repeat, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    dtype = _check_dtype(dtype)
    dev = _device(device)
    if block is not None:
        block = check_int("block", block, minimum=1)
    if "bsr" in formats:
        blocksize = _bsr_blocksize(
            blocksize if blocksize is not None else block,
            (out_features, in_features), dev)
    elif blocksize is not None:
        raise ValueError("blocksize is only used when formats include "
                         "'bsr'")
    gen = torch.Generator().manual_seed(seed)
    records = []
    for s in progress(sparsities, "sparsities", enabled=progress_bar):
        w = random_sparse_weight(out_features, in_features, s, block=block,
                                 generator=gen, dtype=dtype, device=dev)
        records += _linear_times(w, batch_sizes, formats, blocksize, repeat,
                                 warmup, dev, dtype, seed,
                                 extra={"target_sparsity": s,
                                        "block": block})
    return records


def crossover_sparsity(records: Sequence[dict], fmt: str, batch: int, *,
                       scale: str = "linear",
                       sustained: bool = False) -> float | None:
    """The sparsity above which ``fmt`` beats the dense kernel.
    Chapter "Dendrites, pruning and what sparsity costs".

    Among the records of ``fmt`` at batch size ``batch`` (from
    :func:`linear_times` or :func:`sparsity_sweep`), sorted by sparsity,
    the first whose ``ratio`` (dense time over ``fmt``'s time) is >= 1 is
    found. If it is the first record, its sparsity is returned (the
    crossover lies at or below the smallest sparsity measured). Otherwise
    the ratio is interpolated linearly between it and the record before
    (ratio < 1) and the sparsity where the line reaches 1 is returned.

    With ``scale="linear"`` the line is drawn against the sparsity itself;
    with ``scale="logit"`` against ``log(s / (1 - s))``, which spreads the
    high sparsities (0.9, 0.99, 0.999 equally spaced) where sweeps usually
    sample densely; the two agree at the measured points and differ in
    between.

    Measured ratios carry noise: for a format whose ratio hovers around 1
    (``"masked"``) the crossover means nothing, and a ratio that crosses
    1 twice yields the first crossing only.

    Parameters
    ----------
    records : sequence of dict
        Records with ``format``, ``batch``, ``sparsity`` and ``ratio``.
    fmt : str
        The format to read.
    batch : int
        The batch size to read.
    scale : {"linear", "logit"}, default "linear"
        The axis the ratio is interpolated against.
    sustained : bool, default False
        Count only a crossing after which the ratio stays >= 1 at every
        higher measured sparsity (a noisy ratio that touches 1 once and
        falls back is then no crossover).

    Returns
    -------
    float or None
        The crossover sparsity, or ``None`` when no measured ratio reaches
        1 (the format never beat the dense kernel in this range).

    Raises
    ------
    TypeError
        If ``records`` is not a sequence of dicts, ``fmt`` not a string
        or ``batch`` not an integer.
    ValueError
        If no record has this format and batch size, a record lacks a key
        or has no ratio, two records share a sparsity, or (logit scale) a
        sparsity is 0 or 1.
    """
    if isinstance(records, (str, bytes)) or \
            not isinstance(records, Sequence):
        raise TypeError(f"records must be a sequence of dicts, got "
                        f"{type(records).__name__}")
    if not isinstance(fmt, str):
        raise TypeError(f"fmt must be a string, got {type(fmt).__name__}")
    batch = check_int("batch", batch, minimum=1)
    scale = check_choice("scale", scale, ("linear", "logit"))
    points = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise TypeError(f"records[{i}] must be a dict, got "
                            f"{type(rec).__name__}")
        missing = [k for k in ("format", "batch", "sparsity", "ratio")
                   if k not in rec]
        if missing:
            raise ValueError(f"records[{i}] lacks the key(s) {missing}")
        if rec["format"] != fmt or rec["batch"] != batch:
            continue
        if rec["ratio"] is None:
            raise ValueError(f"records[{i}] has no ratio (no dense timing "
                             f"to compare with)")
        points.append((check_probability(f"records[{i}]['sparsity']",
                                         rec["sparsity"]),
                       float(rec["ratio"])))
    if not points:
        raise ValueError(f"records holds no record with format {fmt!r} and "
                         f"batch {batch}")
    points.sort()
    sp = [p[0] for p in points]
    if len(set(sp)) != len(sp):
        raise ValueError(f"records holds two records of format {fmt!r}, "
                         f"batch {batch} at the same sparsity")
    if scale == "logit" and (sp[0] <= 0 or sp[-1] >= 1):
        raise ValueError("scale='logit' needs sparsities in (0, 1); got "
                         f"{sp[0] if sp[0] <= 0 else sp[-1]}")
    if not isinstance(sustained, bool):
        raise TypeError(f"sustained must be True or False, got "
                        f"{sustained!r}")
    if sustained:
        below = [i for i, (_, r) in enumerate(points) if r < 1]
        first = (below[-1] + 1 if below else 0)
        first = first if first < len(points) else None
    else:
        first = next((i for i, (_, r) in enumerate(points) if r >= 1), None)
    if first is None:
        return None
    if first == 0:
        return sp[0]
    (s0, r0), (s1, r1) = points[first - 1], points[first]
    t = (1.0 - r0) / (r1 - r0)
    if scale == "linear":
        return s0 + t * (s1 - s0)
    z0, z1 = math.log(s0 / (1 - s0)), math.log(s1 / (1 - s1))
    z = z0 + t * (z1 - z0)
    return 1.0 / (1.0 + math.exp(-z))


# ----------------------------------------------------------------------------
# Whole models: latency and memory


def _model_device(model):
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def latency(model: nn.Module, example: torch.Tensor,
            batch_sizes: Sequence[int] = (1, 256), *, repeat: int = 20,
            warmup: int = 2, device=None) -> dict[int, float]:
    """Median seconds of one forward pass of ``model``, per batch size.
    Chapter "Dendrites, pruning and what sparsity costs".

    ``model`` runs in evaluation mode under ``torch.no_grad`` (its mode is
    restored afterwards) on batches of ``b`` copies of ``example``; on a
    CUDA device the GPU is synchronised around each pass.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    example : torch.Tensor
        One input, *without* the batch dimension (e.g. ``(1, 28, 28)``
        for an MNIST model taking ``(batch, 1, 28, 28)``).
    batch_sizes : sequence of int, default (1, 256)
        Batch sizes, each >= 1.
    repeat : int, default 20
        Timed passes per batch size (>= 1).
    warmup : int, default 2
        Untimed passes first (>= 0).
    device : str or torch.device, optional
        Default: the device of the model's parameters. Another device
        times a copy of the model there (``model`` is not moved).

    Returns
    -------
    dict
        Batch size -> median seconds (a float).

    Raises
    ------
    TypeError
        If ``model`` is not a module, ``example`` not a tensor, or a batch
        size, ``repeat`` or ``warmup`` not an integer.
    ValueError
        If a batch size or ``repeat`` is < 1 or ``warmup < 0``.
    """
    from .timing import median_time

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got "
                        f"{type(model).__name__}")
    check_tensor("example", example)
    batch_sizes = _sizes("batch_sizes", batch_sizes)
    repeat = check_int("repeat", repeat, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    own = _model_device(model)
    dev = own if device is None else _device(device)
    net = model if dev == own else copy.deepcopy(model).to(dev)
    was_training = net.training
    net.eval()
    out = {}
    try:
        with torch.no_grad():
            for b in batch_sizes:
                x = example.to(dev).unsqueeze(0).expand(
                    b, *example.shape).contiguous()
                out[b] = median_time(lambda: net(x), repeat=repeat,
                                     warmup=warmup, device=dev)
    finally:
        net.train(was_training)
    return out


def _cpu_peak(fn):
    """Peak of the running sum of CPU allocations during ``fn()``."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        raise RuntimeError("this torch's profiler exposes no allocation "
                           "events; peak_memory cannot measure the CPU")
    events = sorted((e.start_ns(), e.nbytes()) for e in results.events()
                    if e.name() == "[memory]" and
                    e.device_type() == DeviceType.CPU)
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return peak


def peak_memory(fn: Callable[[], object], device=None) -> int:
    """The most memory ``fn()`` holds at once, in bytes, above its start.

    * **CUDA** -- the caching allocator's statistics: the peak is reset,
      ``fn()`` runs, and the result is ``max_memory_allocated`` minus the
      memory allocated before the call (tensor bytes, rounded up by the
      allocator to its 512-byte granules).
    * **CPU** -- torch keeps no peak statistic for the CPU, so ``fn()``
      runs under the PyTorch profiler with ``profile_memory=True``, which
      records every allocation and release of torch's CPU allocator with
      its size and time; the result is the largest running sum of those
      events. Tensors allocated before the call and freed during it lower
      the running sum. Memory allocated outside torch's allocator (NumPy
      arrays, Python objects, the libraries' own workspaces) is not seen.
      The profiler costs time (about a second the first time in a
      process), so do not time a function while measuring its memory.

    Whatever ``fn`` returns and keeps alive counts: a function that builds
    a 10 MB tensor and returns it has a peak of at least 10 MB.

    Parameters
    ----------
    fn : callable
        Called once with no arguments.
    device : str or torch.device, optional
        The device whose memory is measured; default the CPU.

    Returns
    -------
    int
        Bytes, >= 0.

    Raises
    ------
    TypeError
        If ``fn`` is not callable or ``device`` not a device.
    ValueError
        If ``device`` is neither a CPU nor a CUDA device.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    dev = _device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        fn()
        torch.cuda.synchronize(dev)
        return max(0, int(torch.cuda.max_memory_allocated(dev)) - base)
    if dev.type != "cpu":
        raise ValueError(f"device must be a CPU or CUDA device, got {dev}")
    return max(0, int(_cpu_peak(fn)))


# ----------------------------------------------------------------------------
# 2:4 semi-structured sparsity


def prune_2_4(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest ``|w|`` of every 4 consecutive inputs, zero 2.
    Chapter "Dendrites, pruning and what sparsity costs".

    The weight ``(out_features, in_features)`` is cut along the input
    dimension into groups of four neighbours (columns ``0-3``, ``4-7``,
    ...); in each group of each row the two entries of largest magnitude
    are kept and the other two set to zero: the 2:4 pattern of the sparse
    tensor cores (50 % zeros). Among equal magnitudes the choice is
    ``torch.topk``'s.

    Parameters
    ----------
    weight : torch.Tensor
        Dense floating-point 2-d tensor whose ``in_features`` is a
        multiple of 4.

    Returns
    -------
    torch.Tensor
        A new tensor, same shape, dtype and device.

    Raises
    ------
    TypeError
        If ``weight`` is not a dense floating-point tensor.
    ValueError
        If ``weight`` is not 2-d or its second size is not a multiple of
        4.
    """
    _check_weight(weight)
    out_features, in_features = weight.shape
    if in_features % 4:
        raise ValueError(f"weight must have a multiple of 4 columns "
                         f"(in_features) for 2:4 pruning; got shape "
                         f"{tuple(weight.shape)}")
    groups = weight.detach().reshape(out_features, in_features // 4, 4)
    top = groups.abs().topk(2, dim=-1).indices
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=weight.device)
    keep.scatter_(-1, top, True)
    return torch.where(keep, groups, torch.zeros_like(groups)).reshape(
        out_features, in_features)


def semi_structured_support(device=None) -> str | None:
    """Why 2:4 semi-structured kernels cannot run here, or ``None``.
    Chapter "Dendrites, pruning and what sparsity costs".

    They need torch's ``to_sparse_semi_structured`` and a CUDA device of
    compute capability 8.0 or later (Ampere, Hopper, ...).

    Parameters
    ----------
    device : str or torch.device, optional
        The device to ask about; default CUDA when present, else the CPU.

    Returns
    -------
    str or None
        ``None`` when the kernels can run on ``device``, otherwise a
        sentence saying what is missing (for a notebook to print).

    Raises
    ------
    TypeError
        If ``device`` is not a device.
    """
    if device is None:
        dev = get_device("auto")
    else:
        try:
            dev = get_device(device)
        except ValueError as exc:
            if "CUDA" not in str(exc):
                raise
            return ("2:4 semi-structured sparsity needs CUDA capability "
                    ">= 8.0; torch sees no CUDA device here")
    if not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return (f"2:4 semi-structured sparsity needs "
                f"torch.sparse.to_sparse_semi_structured, which torch "
                f"{torch.__version__} lacks")
    if dev.type != "cuda":
        return (f"2:4 semi-structured sparsity needs a CUDA device of "
                f"compute capability >= 8.0; this device is {dev}")
    major, minor = torch.cuda.get_device_capability(dev)
    if major < 8:
        return (f"2:4 semi-structured sparsity needs CUDA capability >= "
                f"8.0; {torch.cuda.get_device_name(dev)} has "
                f"{major}.{minor}")
    cusparselt = getattr(torch.backends, "cusparselt", None)
    if major > 8 and not (cusparselt is not None
                          and cusparselt.is_available()):
        # PyTorch's CUTLASS 2:4 kernels cover capability 8.x only
        return (f"2:4 semi-structured sparsity on capability {major}.{minor}"
                f" ({torch.cuda.get_device_name(dev)}) needs cuSPARSELt, "
                f"which this torch build lacks")
    return None


def semi_structured_times(out_features: int = 4096,
                          in_features: int = 4096,
                          batch_sizes: Sequence[int] = (4, 16, 64, 256,
                                                        1024),
                          *, repeat: int = 30, warmup: int = 5,
                          device=None, dtype: torch.dtype = torch.float16,
                          seed: int = 0) -> list[dict]:
    """Time a 2:4-sparse linear layer against the dense one on a GPU.
    Chapter "Dendrites, pruning and what sparsity costs".

    A random weight is pruned by :func:`prune_2_4`; ``x @ W.T`` then runs
    with the dense kernel on the pruned weight (``"dense"``) and with the
    weight converted by ``torch.sparse.to_sparse_semi_structured``
    (``"2:4"``), interleaved as in :func:`linear_times`; the two outputs
    are checked to agree first.

    Parameters
    ----------
    out_features : int, default 4096
        Rows of the weight, a multiple of 32.
    in_features : int, default 4096
        Columns of the weight, a multiple of 64.
    batch_sizes : sequence of int, default (4, 16, 64, 256, 1024)
        Rows of the input (the kernels pad them as they need).
    repeat, warmup : int
        Timed and untimed rounds.
    device : str or torch.device, optional
        Default CUDA when present, else the CPU (which raises).
    dtype : torch.dtype, default torch.float16
        ``torch.float16`` or ``torch.bfloat16``.
    seed : int, default 0
        Seeds the weight and the inputs.

    Returns
    -------
    list of dict
        Per batch size, a ``"dense"`` and a ``"2:4"`` record with
        ``format``, ``batch``, ``sparsity`` (0.5), ``seconds``, ``ratio``
        (dense over this), ``out_features``, ``in_features``, ``device``,
        ``dtype`` and ``threads``.

    Raises
    ------
    TypeError
        If an argument has the wrong type or ``dtype`` is not float16 or
        bfloat16.
    ValueError
        If a size is not a positive multiple of 32 (rows) or 64
        (columns), a batch size < 1 or ``repeat < 1``.
    RuntimeError
        If the device cannot run 2:4 kernels (the message is
        :func:`semi_structured_support`'s reason), or the two outputs
        differ.
    """
    out_features = check_int("out_features", out_features, minimum=32)
    in_features = check_int("in_features", in_features, minimum=64)
    if out_features % 32:
        raise ValueError(f"out_features must be a multiple of 32 for 2:4 "
                         f"kernels; got {out_features}")
    if in_features % 64:
        raise ValueError(f"in_features must be a multiple of 64 for 2:4 "
                         f"kernels; got {in_features}")
    batch_sizes = _sizes("batch_sizes", batch_sizes)
    repeat = check_int("repeat", repeat, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    if dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"dtype must be torch.float16 or torch.bfloat16 "
                        f"for 2:4 kernels; got {dtype}")
    dev = get_device("auto") if device is None else _device(device)
    reason = semi_structured_support(dev)
    if reason is not None:
        raise RuntimeError(reason)
    gen = torch.Generator().manual_seed(seed)
    w = prune_2_4(torch.randn(out_features, in_features, generator=gen)
                  / math.sqrt(in_features)).to(dev, dtype)
    sparse_w = torch.sparse.to_sparse_semi_structured(w)
    fns = {"dense": lambda x: nn.functional.linear(x, w),
           "2:4": lambda x: nn.functional.linear(x, sparse_w)}
    threads = torch.get_num_threads()
    records = []
    with torch.no_grad():
        for b in batch_sizes:
            x = torch.randn(b, in_features, generator=gen).to(dev, dtype)
            _agree({"ref": fns["dense"](x), "2:4": fns["2:4"](x)}, dtype)
            secs = _interleaved({n: (lambda f: lambda: f(x))(f)
                                 for n, f in fns.items()},
                                repeat, warmup, dev)
            for name in fns:
                records.append({
                    "format": name, "batch": b, "sparsity": 0.5,
                    "seconds": secs[name],
                    "ratio": secs["dense"] / secs[name],
                    "out_features": out_features,
                    "in_features": in_features, "device": str(dev),
                    "dtype": str(dtype).replace("torch.", ""),
                    "threads": threads})
    return records
