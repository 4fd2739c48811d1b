"""Local, dense and sparse binary codes: codebooks, damage and recognition.

The simulations of the chapter on neural codes: build a codebook of
``n_codes`` binary patterns of length ``n`` --

* ``"local"``: one unit per item (one-hot; needs ``n_codes <= n``),
* ``"dense"``: random patterns with half of the units on (``a = n // 2``),
* ``"sparse"``: random patterns with ``a`` units on, ``a << n`` --

damage them (:func:`corrupt`: silence active units, flip random units), and
ask whether each damaged pattern is still recognised as the item it came from
(:func:`recognise`: the stored pattern of largest overlap wins; exact ties are
broken uniformly at random, so a pattern with no information left scores the
chance level ``1 / n_codes``). :func:`union` ORs codes together, the set-like
memory whose false positives that chapter measures.

Codes are float tensors of 0/1, shape ``(n_codes, n)``. Introduced in the
chapter "Neural codes".
"""

from __future__ import annotations

import torch

from .sdr import random_sdr
from .utils import (check_choice, check_int, check_probability, check_same,
                    check_tensor)

__all__ = ["KINDS", "codebook", "corrupt", "recognise", "union"]

#: The kinds of code :func:`codebook` builds.
KINDS = ("local", "dense", "sparse")


def codebook(kind: str, n_codes: int, n: int, a: int | None = None, *,
             generator=None, device=None) -> torch.Tensor:
    """A codebook of ``n_codes`` binary patterns of length ``n``.

    ``kind`` is ``"local"`` (one-hot, ``a = 1``; needs ``n_codes <= n``),
    ``"dense"`` (random, ``a = n // 2``) or ``"sparse"`` (random, ``a``
    required). Random patterns are drawn independently, so two items
    may share a pattern when ``C(n, a)`` is small: that is interference too.
    Returns ``(n_codes, n)``. Chapter "Neural codes".
    """
    check_choice("kind", kind, KINDS)
    n_codes = check_int("n_codes", n_codes, minimum=1)
    n = check_int("n", n, minimum=1)
    if a is not None:
        a = check_int("a", a)
    if kind == "local":
        if a not in (None, 1):
            raise ValueError(f"a local code has a = 1; got a={a!r}")
        if n_codes > n:
            raise ValueError(
                f"a local code of n={n} units holds at most {n} items; "
                f"got n_codes={n_codes}")
        if generator is not None and device is None:
            device = generator.device
        return torch.eye(n, device=device)[:n_codes]
    if kind == "dense":
        if a not in (None, n // 2):
            raise ValueError(f"a dense code has a = n // 2 = {n // 2}; got "
                             f"a={a!r} (use kind='sparse' for other a)")
        a = n // 2
    elif a is None:
        raise ValueError("a sparse code needs a (the number of active units)")
    a = check_int("a", a, minimum=1, maximum=n)
    return random_sdr(n_codes, n, a, generator=generator, device=device)


def corrupt(codes: torch.Tensor, *, drop: float = 0.0, flip: float = 0.0,
            generator=None) -> torch.Tensor:
    """Damage binary codes; returns a new tensor of the same shape.

    ``drop``: each active unit is silenced with this probability (dead
    neurons, failed synapses). ``flip``: each unit, active or not, is then
    inverted with this probability (noise). Chapter "Neural codes".
    """
    drop = check_probability("drop", drop)
    flip = check_probability("flip", flip)
    check_tensor("codes", codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-d (n_codes, n); got shape "
                         f"{tuple(codes.shape)}")
    out = codes.clone()
    if drop:
        keep = torch.rand(codes.shape, generator=generator,
                          device=codes.device) >= drop
        out = out * keep
    if flip:
        flips = torch.rand(codes.shape, generator=generator,
                           device=codes.device) < flip
        out = torch.where(flips, 1 - out, out)
    return out


def recognise(x: torch.Tensor, book: torch.Tensor, *,
              generator=None) -> torch.Tensor:
    """Index of the stored pattern that best matches each row of ``x``.

    The score is the overlap minus half the stored pattern's size
    (``x @ book.T - |book| / 2``), which for a codebook of equal-size patterns
    is the overlap itself and in general ranks like minus the Hamming distance
    up to a term in ``|x|``. Exact ties are broken uniformly at random (a
    random offset below the smallest score step is added), so a vector that
    carries no information is recognised at chance. ``x`` is ``(batch, n)``,
    ``book`` ``(n_codes, n)``; returns ``(batch,)`` int64.
    Chapter "Neural codes".
    """
    check_tensor("x", x)
    check_tensor("book", book)
    check_same({"x": x, "book": book}, dtype=False)  # same device
    if x.ndim != 2 or book.ndim != 2 or x.shape[1] != book.shape[1]:
        raise ValueError(
            f"x must be (batch, n) and book (n_codes, n) with the same n; "
            f"got {tuple(x.shape)} and {tuple(book.shape)}")
    scores = x.float() @ book.float().T - 0.5 * book.float().sum(1)
    # Scores are multiples of 0.5: noise in [0, 0.25) only breaks ties.
    noise = torch.rand(scores.shape, generator=generator,
                       device=scores.device) * 0.25
    return (scores + noise).argmax(dim=1)


def union(codes: torch.Tensor) -> torch.Tensor:
    """OR of binary codes ``(m, n)`` -> one code ``(n,)``.
    Chapter "Neural codes"."""
    check_tensor("codes", codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-d (m, n); got shape "
                         f"{tuple(codes.shape)}")
    return (codes > 0).any(dim=0).to(codes.dtype)
