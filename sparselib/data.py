"""Datasets: MNIST and Fashion-MNIST as tensors, from a folder you choose.

The folder is ``root`` when given, else the environment variable
``SPARSELIB_DATA``, else ``~/.cache/sparselib/data``. Inside it the files
are in torchvision's layout (``MNIST/raw/train-images-idx3-ubyte`` and so
on). When they are missing, torchvision downloads them (``download="auto"``,
the default); when that fails -- offline, say -- the error names every file
that is expected and where. CI and the tests point ``SPARSELIB_DATA`` at the
project's ``shared/data`` folder.

Images come back as float32 in [0, 1], shape ``(N, 1, 28, 28)`` (or
``(N, 784)`` with ``flatten=True``), labels as int64 ``(N,)``.

Introduced in the chapter "Sparse coding as optimisation"; used by every
chapter that trains on images.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .utils import check_choice, check_int, check_real, check_tensor

__all__ = ["DATA_ENV", "DATASETS", "data_root", "expected_files",
           "load_mnist", "load_fashion_mnist", "load_images", "loader",
           "NATURAL_IMAGES", "natural_images", "whiten_image",
           "natural_patches"]

#: Environment variable naming the dataset folder.
DATA_ENV = "SPARSELIB_DATA"
#: Datasets :func:`load_images` knows (torchvision class names).
DATASETS = ("MNIST", "FashionMNIST")
_SPLITS = ("train", "test")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset folder: ``root``, else ``$SPARSELIB_DATA``, else a cache.

    An explicitly named folder (argument or variable) that does not exist
    raises ``FileNotFoundError`` naming it; the default cache folder is
    created on demand.
    """
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a folder path (str or Path); got "
                            f"{root!r}")
        path, source = Path(root).expanduser(), "root"
    elif os.environ.get(DATA_ENV):
        path, source = Path(os.environ[DATA_ENV]).expanduser(), DATA_ENV
    else:
        path = Path.home() / ".cache" / "sparselib" / "data"
        path.mkdir(parents=True, exist_ok=True)
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset folder {str(path)!r} (from {source}) does not exist; "
            f"create it, or point {DATA_ENV} at a folder holding MNIST/raw/ "
            "or FashionMNIST/raw/ in torchvision's layout")
    return path


def expected_files(name: str, split: str, root=None) -> list[Path]:
    """Paths torchvision reads for dataset ``name`` and ``split``."""
    _check_name_split(name, split)
    base = data_root(root) / name / "raw"
    return [base / f for f in _FILES[split]]


def _check_name_split(name, split):
    check_choice("name", name, DATASETS)
    check_choice("split", split, _SPLITS)


def _present(path: Path) -> bool:
    return path.is_file() or path.with_name(path.name + ".gz").is_file()


def _extract_gz(files):
    """Decompress ``f.gz`` next to each file ``f`` that exists only as .gz.

    torchvision reads the extracted files only (with ``download=False`` it
    reports a gzipped copy as missing), so the copies the error message
    allows are extracted once, in place.
    """
    import gzip
    import shutil

    for f in files:
        gz = f.with_name(f.name + ".gz")
        if not f.is_file() and gz.is_file():
            tmp = f.with_name(f.name + ".part")
            with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(f)


def load_images(name: str = "MNIST", split: str = "train", *, root=None,
                download="auto", flatten: bool = False,
                limit: int | None = None, device=None):
    """Load MNIST or Fashion-MNIST as ``(x, y)`` tensors.
    Chapter "Dendrites, pruning and what sparsity costs".

    ``x`` is float32 in [0, 1], ``(N, 1, 28, 28)`` (or ``(N, 784)``), ``y``
    the int64 labels ``(N,)``. Part of the book's spine; used by the
    chapters that train on images.

    Parameters
    ----------
    name : {"MNIST", "FashionMNIST"}
        The data set.
    split : {"train", "test"}
        ``"train"`` (60,000 images) or ``"test"`` (10,000).
    root : str or path, optional
        The dataset folder; see :func:`data_root`.
    download : {"auto", True, False}
        ``"auto"`` downloads only when files are missing; ``True`` always
        lets torchvision check and download; ``False`` never downloads.
    flatten : bool, default False
        Return ``x`` as ``(N, 784)`` instead of ``(N, 1, 28, 28)``.
    limit : int, optional
        Keep only the first ``limit`` examples (quick-scale runs).
    device : optional
        Where to put the tensors (default CPU).

    Raises
    ------
    FileNotFoundError
        Naming the expected files, when they are missing and cannot be
        downloaded.
    """
    _check_name_split(name, split)
    if not isinstance(download, (bool, str)):
        raise TypeError(f"download must be 'auto', True or False; got "
                        f"{download!r} ({type(download).__name__})")
    if isinstance(download, str) and download != "auto":
        raise ValueError(f"download must be 'auto', True or False; got "
                         f"{download!r}")
    if limit is not None:
        limit = check_int("limit", limit, minimum=1)
    base = data_root(root)
    files = expected_files(name, split, base)
    missing = [f for f in files if not _present(f)]
    if not missing:
        # torchvision checks the files of both splits
        _extract_gz([f for sp in _SPLITS for f in
                     expected_files(name, sp, base)])
    want_download = download is True or (download == "auto" and missing)
    if missing and not want_download:
        raise FileNotFoundError(_missing_message(name, split, base, files))
    import torchvision  # imported here: slow, and only needed for data

    cls = getattr(torchvision.datasets, name)
    try:
        ds = cls(str(base), train=(split == "train"),
                 download=bool(want_download))
    except Exception as exc:  # network errors come in many types
        raise FileNotFoundError(
            _missing_message(name, split, base, files) +
            f"\nThe download failed with: {type(exc).__name__}: {exc}"
        ) from exc
    x = ds.data.unsqueeze(1).to(torch.float32).div_(255.0)
    y = ds.targets.to(torch.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if flatten:
        x = x.reshape(x.shape[0], -1)
    return x.to(device), y.to(device)


def _missing_message(name, split, base, files):
    listing = "\n".join(f"  {f}   (or {f.name}.gz)" for f in files)
    return (
        f"{name} ({split} split) was not found under {str(base)!r}, and no "
        f"download was possible. Put these files there:\n{listing}\n"
        f"or set {DATA_ENV} to a folder that holds {name}/raw/ in "
        "torchvision's layout.")


def load_mnist(split: str = "train", *, root=None, download="auto",
               flatten: bool = False, limit: int | None = None, device=None):
    """MNIST as ``(x, y)``; see :func:`load_images` for the arguments.

    Used by the chapters that train on images.
    Chapter "Sparse coding as optimisation".
    """
    return load_images("MNIST", split, root=root, download=download,
                       flatten=flatten, limit=limit, device=device)


def load_fashion_mnist(split: str = "train", *, root=None, download="auto",
                       flatten: bool = False, limit: int | None = None,
                       device=None):
    """Fashion-MNIST as ``(x, y)``; see :func:`load_images`."""
    return load_images("FashionMNIST", split, root=root, download=download,
                       flatten=flatten, limit=limit, device=device)


def loader(*tensors: torch.Tensor, batch_size: int = 64, shuffle: bool = True,
           generator: torch.Generator | None = None, drop_last: bool = False):
    """A :class:`torch.utils.data.DataLoader` over in-memory tensors.

    All tensors must have the same first dimension.
    Chapter "Sparse autoencoders".
    """
    if not tensors:
        raise ValueError("loader() needs at least one tensor")
    for i, t in enumerate(tensors):
        check_tensor(f"tensor {i}", t)
        if t.ndim == 0:
            raise ValueError(f"tensor {i} must have a first (example) "
                             f"axis; got a 0-d tensor")
    n = tensors[0].shape[0]
    for i, t in enumerate(tensors):
        if t.shape[0] != n:
            raise ValueError(f"tensor {i} has {t.shape[0]} rows, tensor 0 "
                             f"has {n}: all must match")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    ds = torch.utils.data.TensorDataset(*tensors)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size,
                                       shuffle=shuffle, generator=generator,
                                       drop_last=drop_last)


#: Photographs shipped by scikit-image (``skimage.data.<name>``) and
#: scikit-learn (``load_sample_image(name + ".jpg")``), used as natural images.
NATURAL_IMAGES = ("astronaut", "camera", "coffee", "chelsea", "rocket",
                  "grass", "gravel", "brick", "china", "flower")


def natural_images(names=NATURAL_IMAGES) -> list:
    """Grey-level photographs as float64 arrays in [0, 1].

    From the images that scikit-image and scikit-learn ship (no download):
    see :data:`NATURAL_IMAGES`. Colour images are converted with the
    ITU-R 601 luma weights. ``names`` may also be a single name.
    Chapter "Sparse coding as optimisation".
    """
    import numpy as np

    if isinstance(names, str):
        names = (names,)
    names = list(names)
    for name in names:  # all checked before any image is loaded
        check_choice("image name", name, NATURAL_IMAGES)
    out = []
    for name in names:
        if name in ("china", "flower"):
            from sklearn.datasets import load_sample_image
            img = load_sample_image(name + ".jpg")
        else:
            import skimage.data
            img = getattr(skimage.data, name)()
        img = np.asarray(img, dtype=np.float64) / 255.0
        if img.ndim == 3:
            img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
        out.append(img)
    return out


def whiten_image(img, f0: float = 0.4):
    """Whiten an image with Olshausen & Field's filter ``f exp(-(f/f0)^4)``.

    ``f`` is the radial spatial frequency in cycles per pixel (Nyquist 0.5),
    ``f0`` the cut-off as a share of the Nyquist frequency (0.4: 200 cycles
    per picture on a 512-pixel image, as in Olshausen & Field 1996). The
    ramp ``f`` flattens the roughly ``1/f`` amplitude spectrum of natural
    images; the exponential removes the highest, noisiest frequencies.
    Returns an array of the same shape with zero mean and unit variance.
    Chapter "Sparse coding as optimisation".
    """
    import numpy as np

    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"img must be 2-d (grey levels); got shape "
                         f"{img.shape}")
    f0 = check_real("f0", f0, minimum=0, maximum=1, min_open=True)
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.fftfreq(img.shape[1])[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    filt = f * np.exp(-(f / (f0 * 0.5)) ** 4)
    out = np.real(np.fft.ifft2(np.fft.fft2(img - img.mean()) * filt))
    return (out - out.mean()) / out.std()


def natural_patches(size: int = 8, n_patches: int = 10_000, *,
                    whiten: bool = True, names=NATURAL_IMAGES,
                    generator: torch.Generator | None = None,
                    dtype=torch.float32) -> torch.Tensor:
    """Random ``size x size`` patches of natural photographs, flattened.

    Each image is whitened (:func:`whiten_image`) unless ``whiten=False``;
    patches are cut at random positions (``generator`` makes it repeatable),
    their means removed, and the whole set scaled to unit variance per
    pixel. Returns ``(n_patches, size * size)``.
    Chapter "Sparse coding as optimisation".
    """
    import numpy as np

    size = check_int("size", size, minimum=2)
    n_patches = check_int("n_patches", n_patches, minimum=1)
    images = natural_images(names)
    if whiten:
        images = [whiten_image(im) for im in images]
    g = generator if generator is not None else torch.Generator()
    which = torch.randint(len(images), (n_patches,), generator=g)
    out = np.empty((n_patches, size * size))
    for i, w in enumerate(which.tolist()):
        im = images[w]
        r = int(torch.randint(im.shape[0] - size + 1, (1,), generator=g))
        c = int(torch.randint(im.shape[1] - size + 1, (1,), generator=g))
        out[i] = im[r:r + size, c:c + size].ravel()
    out -= out.mean(axis=1, keepdims=True)
    out /= out.std()
    return torch.from_numpy(out).to(dtype)
