"""Measuring wall-clock time fairly.

The book reports speed as ratios of times measured side by side in one
process, never as absolute numbers checked by tests. :func:`median_time`
runs a function a few times after a warm-up and returns the median, and on
a CUDA device synchronises so that queued kernels are counted.

Introduced in the chapter "Sparse autoencoders".
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .utils import check_int

__all__ = ["median_time"]


def median_time(fn, *, repeat: int = 5, warmup: int = 1,
                device=None) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` calls.

    ``warmup`` calls run first and are not counted. On a CUDA ``device`` the
    GPU is synchronised before and after each call, so queued kernels are
    counted. For comparisons run side by side in one process (the book
    reports ratios, not absolute times). Chapter "Sparse autoencoders".
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    repeat = check_int("repeat", repeat, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    if device is not None and (isinstance(device, bool) or not isinstance(
            device, (str, int, torch.device))):
        raise TypeError(f"device must be None, a string, an index or a "
                        f"torch.device; got {device!r}")
    try:
        dev = torch.device(device) if device is not None else None
    except RuntimeError as exc:
        raise ValueError(f"device must name a torch device such as 'cpu' "
                         f"or 'cuda'; got {device!r}") from exc
    sync = (torch.cuda.synchronize if dev is not None and dev.type == "cuda"
            else (lambda: None))
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
