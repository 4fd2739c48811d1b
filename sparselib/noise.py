"""Replacement noise and the noise score of "How Can We Be So Dense?".

Ahmad & Scheinkman (2019) measure how robust an MNIST classifier is by
corrupting the test images and counting how many it still classifies
correctly. At a noise level ``p`` in [0, 1], ``int(784 * p)`` pixels of each
28 x 28 test image, chosen at random and without repetition (different
positions for every image), are *set* to one value: the MNIST mean plus two
standard deviations, ``0.1307 + 2 * 0.3081 = 0.7469`` in raw pixel units
(:data:`NOISE_VALUE`), which is ``2.0`` after the usual normalisation
``(x - 0.1307) / 0.3081``. The noise is applied to the raw image; the
normalisation comes after it (``transform`` of :func:`noise_score`).

The *noise score* sums the correct classifications over the eleven levels
``0.00, 0.05, ..., 0.50`` (:data:`NOISE_LEVELS`): for the 10,000 MNIST test
images its maximum is 110,000. Numenta's sparse MNIST network reaches
about 103,000.

* :func:`replacement_noise` -- corrupt a batch ``(batch, ...)``; vectorised
  (random keys per row, the ``count`` largest win), device-agnostic and
  seeded by an optional :class:`torch.Generator`.
* :func:`noise_score` -- the per-level correct counts, accuracies and the
  total score of a ``predict`` function.

The number of replaced pixels is ``int(n_pixels * p)`` with Python floats,
as the paper computes it (``int(784 * p)``). For 784 pixels and the eleven
levels this equals the exact floor ``784 * i // 20``; for other sizes and
levels the float product can fall just below an integer (``int(100 * 0.29)``
is 28, not 29), and the count follows the paper's formula, not the exact
rational one.

References: S. Ahmad and L. Scheinkman, "How Can We Be So Dense? The
Benefits of Using Highly Sparse Representations", arXiv:1903.11257, 2019
(section "Results", noise robustness, Fig. 4 and Table 1).

Introduced in the chapter "Noise-robust sparse networks".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .utils import check_int, check_labels, check_probability, check_real, \
    check_same, check_tensor

__all__ = [
    "NOISE_LEVELS",
    "NOISE_VALUE",
    "MNIST_MEAN",
    "MNIST_STD",
    "replacement_noise",
    "noise_score",
]

#: The eleven noise levels of the paper, 0.00, 0.05, ..., 0.50 (each built
#: as ``i / 20``, so each is the float nearest the decimal).
NOISE_LEVELS = tuple(i / 20 for i in range(11))
#: Mean of the MNIST training pixels in [0, 1] (the usual normalisation).
MNIST_MEAN = 0.1307
#: Standard deviation of the MNIST training pixels in [0, 1].
MNIST_STD = 0.3081
#: The value the noise writes, ``MNIST_MEAN + 2 * MNIST_STD`` in raw pixel
#: units, which is 2.0 after normalisation.
NOISE_VALUE = 0.7469


def _check_images(images, name="images"):
    check_tensor(name, images, floating=True)
    if images.ndim < 2:
        raise ValueError(f"{name} must have shape (batch, ...) with at least "
                         f"2 dimensions, got shape {tuple(images.shape)} "
                         f"({images.ndim}-d)")
    return images


def _check_generator(generator, device):
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(f"generator must be on the images' device "
                         f"({device}), got a generator on "
                         f"{generator.device}")
    return generator


def _replace(images, count, value, generator):
    """Unchecked :func:`replacement_noise` with the count already known."""
    if count == 0 or images.shape[0] == 0:
        return images.clone()
    flat = images.reshape(images.shape[0], -1)
    keys = torch.rand(flat.shape, generator=generator, device=flat.device)
    idx = keys.topk(count, dim=1, sorted=False).indices
    # out of place: a new tensor, the input is never written
    return flat.scatter(1, idx, value).view(images.shape)


def replacement_noise(images: torch.Tensor, level: float,
                      value: float = NOISE_VALUE, *,
                      generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """Set ``int(n_pixels * level)`` random pixels of each image to ``value``.
    Chapter "Noise-robust sparse networks".

    The noise of Ahmad & Scheinkman (2019): for each image independently,
    ``count = int(n_pixels * level)`` distinct positions are drawn uniformly
    at random (as ``count`` largest of ``n_pixels`` uniform keys, one row
    of keys per image: no loop over images) and those pixels are replaced,
    not perturbed. ``n_pixels`` is the number of entries of one image
    (784 for MNIST, whether given as ``(batch, 1, 28, 28)`` or
    ``(batch, 784)``); the count uses Python floats exactly as the paper's
    ``int(784 * p)`` (see the module docstring).

    Parameters
    ----------
    images : torch.Tensor
        Floating-point tensor ``(batch, ...)``, e.g. ``(batch, 1, 28, 28)``
        or ``(batch, 784)``, in raw pixel units (before normalisation, for
        the paper's value). Not modified.
    level : float
        Noise level ``p`` in [0, 1]: the fraction of pixels replaced.
        Level 0 returns an unchanged copy.
    value : float, default :data:`NOISE_VALUE`
        The value written into the chosen pixels (0.7469, the MNIST mean
        plus two standard deviations).
    generator : torch.Generator, optional
        Source of the random positions, on the images' device; ``None``
        uses torch's global generator.

    Returns
    -------
    torch.Tensor
        A new tensor, shape and dtype of ``images``. Gradients flow to the
        pixels that were not replaced.

    Raises
    ------
    TypeError
        If ``images`` is not a floating-point tensor, ``level`` or
        ``value`` not a real number, or ``generator`` not a generator.
    ValueError
        If ``images`` has fewer than 2 dimensions, ``level`` lies outside
        [0, 1], ``value`` is not finite, or ``generator`` is on another
        device.
    """
    _check_images(images)
    level = check_probability("level", level)
    value = check_real("value", value)
    generator = _check_generator(generator, images.device)
    n_pixels = math.prod(images.shape[1:])
    return _replace(images, int(n_pixels * level), value, generator)


def _predicted_classes(out, batch):
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"predict must return a torch.Tensor, got "
                        f"{type(out).__name__}")
    if out.ndim == 2 and out.is_floating_point():
        out = out.argmax(dim=1)
    elif out.ndim != 1 or out.is_floating_point() or out.is_complex():
        raise ValueError(f"predict must return class indices (batch,) of an "
                         f"integer dtype or logits (batch, n_classes) of a "
                         f"floating dtype; got shape {tuple(out.shape)} "
                         f"({out.dtype})")
    if out.shape[0] != batch:
        raise ValueError(f"predict returned {out.shape[0]} predictions for "
                         f"a batch of {batch} images")
    return out


def noise_score(predict: Callable[[torch.Tensor], torch.Tensor],
                images: torch.Tensor, labels: torch.Tensor,
                levels: Sequence[float] = NOISE_LEVELS, *,
                value: float = NOISE_VALUE,
                transform: Callable[[torch.Tensor], torch.Tensor]
                | None = None,
                batch_size: int = 1000,
                generator: torch.Generator | None = None,
                seed: int = 0) -> dict:
    """Correct classifications of noisy images at each level, and their sum.
    Chapter "Noise-robust sparse networks".

    For each level ``p`` of ``levels`` (in order) and each batch of
    ``batch_size`` images, the batch is corrupted by
    :func:`replacement_noise`, passed through ``transform`` (for instance
    the normalisation ``(x - MNIST_MEAN) / MNIST_STD``) and classified by
    ``predict``; the correct predictions are counted. With the default
    levels and the 10,000 MNIST test images this is the noise score of
    Ahmad & Scheinkman (2019), at most 110,000.

    Runs under ``torch.no_grad``. Put a model in evaluation mode before
    (``model.eval()``): ``predict`` is called as given. The counts are
    accumulated on the device of ``predict``'s output and read back once
    per level (one host synchronisation per level, none per batch, unless
    ``predict`` or ``transform`` synchronise themselves).

    Parameters
    ----------
    predict : callable
        ``predict(x)`` for a batch ``x`` of shape ``(b, ...)`` (after
        ``transform``) returns class indices ``(b,)`` of an integer dtype
        or logits / scores ``(b, n_classes)`` of a floating dtype (the
        arg-max is taken), on any device.
    images : torch.Tensor
        Floating-point tensor ``(n, ...)`` in raw pixel units, e.g.
        ``(n, 1, 28, 28)``; ``n >= 1``. Not modified.
    labels : torch.Tensor
        Integer class labels ``(n,)``, on the images' device.
    levels : sequence of float, default :data:`NOISE_LEVELS`
        The noise levels, each in [0, 1]; at least one.
    value : float, default :data:`NOISE_VALUE`
        The replacement value (raw pixel units).
    transform : callable, optional
        Applied to each noisy batch before ``predict``; ``None`` means
        none.
    batch_size : int, default 1000
        Images per call of ``predict`` (the paper's test batch is 1000).
    generator : torch.Generator, optional
        Source of the noise, on the images' device; when given, ``seed``
        is ignored and the generator's state advances.
    seed : int, default 0
        Seeds a fresh generator on the images' device when ``generator``
        is ``None``: two calls with the same seed, data, levels,
        ``batch_size`` and device give the same noise and the same score.

    Returns
    -------
    dict
        ``"levels"`` (list of float, as given), ``"correct"`` (list of int,
        correct predictions per level), ``"accuracy"`` (list of float,
        ``correct / n``), ``"score"`` (int, the sum of ``"correct"``),
        ``"max_score"`` (int, ``n * len(levels)``) and ``"n"`` (int).

    Raises
    ------
    TypeError
        If ``predict`` or ``transform`` is not callable, ``images`` is not
        a floating-point tensor, ``labels`` not an integer tensor, a level
        or ``value`` not a real number, ``batch_size`` or ``seed`` not an
        integer, or ``predict`` returns something other than a tensor.
    ValueError
        If ``images`` has fewer than 2 dimensions or no images, ``labels``
        is not 1-d of length ``n`` or lies on another device, ``levels``
        is empty or a level lies outside [0, 1], ``batch_size < 1``, or
        ``predict`` returns the wrong shape.
    """
    if not callable(predict):
        raise TypeError(f"predict must be callable, got "
                        f"{type(predict).__name__}")
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable or None, got "
                        f"{type(transform).__name__}")
    _check_images(images)
    n = images.shape[0]
    if n == 0:
        raise ValueError(f"images must hold at least one image, got shape "
                         f"{tuple(images.shape)}")
    check_labels("labels", labels, n)
    check_same({"images": images, "labels": labels}, dtype=False)
    if isinstance(levels, (str, bytes)) or \
            not isinstance(levels, Sequence):
        raise TypeError(f"levels must be a sequence of real numbers, got "
                        f"{type(levels).__name__}")
    levels = [check_probability(f"levels[{i}]", p)
              for i, p in enumerate(levels)]
    if not levels:
        raise ValueError("levels must hold at least one noise level, got an "
                         "empty sequence")
    value = check_real("value", value)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_int("seed", seed, minimum=0, maximum=2**63 - 1)
    generator = _check_generator(generator, images.device)
    if generator is None:
        generator = torch.Generator(device=images.device)
        generator.manual_seed(seed)

    n_pixels = math.prod(images.shape[1:])
    correct = []
    with torch.no_grad():
        for p in levels:
            count = int(n_pixels * p)
            total = 0
            for start in range(0, n, batch_size):
                batch = images[start:start + batch_size]
                x = _replace(batch, count, value, generator)
                if transform is not None:
                    x = transform(x)
                pred = _predicted_classes(predict(x), batch.shape[0])
                y = labels[start:start + batch_size].to(pred.device)
                total = total + (pred == y).sum()  # stays on pred's device
            correct.append(int(total))  # one synchronisation per level
    return {
        "levels": levels,
        "correct": correct,
        "accuracy": [c / n for c in correct],
        "score": sum(correct),
        "max_score": n * len(levels),
        "n": n,
    }
