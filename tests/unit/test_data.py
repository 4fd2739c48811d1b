"""sparselib.data: loading from SPARSELIB_DATA, and clear errors when missing."""

import gzip
import hashlib

import numpy as np
import pytest
import torch

from sparselib import data


def test_mnist_from_the_shared_folder(shared_data):
    x, y = data.load_mnist("test", download=False)
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10_000,) and y.dtype == torch.int64
    assert 0.0 == x.min() and x.max() == 1.0
    # oracle: the raw IDX file itself (16-byte header, then uint8 pixels)
    raw = (shared_data / "MNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()
    first = torch.tensor(list(raw[16:16 + 784]), dtype=torch.float32) / 255
    assert torch.equal(x[0, 0].flatten(), first)
    labels = (shared_data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()
    assert y[:20].tolist() == list(labels[8:28])
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892,
                                          958, 1028, 974, 1009]


def test_limit_and_flatten(shared_data):
    x, y = data.load_fashion_mnist("train", limit=100, flatten=True,
                                   download=False)
    assert x.shape == (100, 784) and y.shape == (100,)


def test_gzipped_files_are_read(shared_data, tmp_path):
    # the error message allows the files as .gz: they must then load, and
    # give the same digits as the extracted originals

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                 "train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        blob = (shared_data / "MNIST" / "raw" / name).read_bytes()
        (raw / (name + ".gz")).write_bytes(gzip.compress(blob))
    x, y = data.load_images("MNIST", "test", root=tmp_path,
                               download=False, limit=50)
    x0, y0 = data.load_images("MNIST", "test", root=shared_data,
                                 download=False, limit=50)
    assert torch.equal(x, x0) and torch.equal(y, y0)


def test_missing_folder_is_named(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("SPARSELIB_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match="nowhere.*SPARSELIB_DATA"):
        data.load_mnist("train")


def test_missing_files_are_listed(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        data.load_mnist("train", root=tmp_path, download=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg
    assert "train-labels-idx1-ubyte" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg


def test_failed_download_reports_files_and_cause(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(FileNotFoundError, match="(?s)t10k-images.*"
                       "network is unreachable"):
        data.load_mnist("test", root=tmp_path, download="auto")


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"name": "CIFAR10"}, ValueError, "name must be one of"),
    ({"split": "validation"}, ValueError, "split must be one of"),
    ({"download": "yes"}, ValueError,
     "download must be 'auto', True or False; got 'yes'"),
    ({"download": 1}, TypeError, "download must be 'auto', True or False"),
    ({"download": None}, TypeError, "download must be"),
    ({"name": None}, TypeError, "name must be a string"),
    ({"split": "validation"}, ValueError,
     "split must be one of 'train', 'test'; got 'validation'"),
    ({"limit": 0}, ValueError, "limit must be >= 1"),
    ({"limit": 2.5}, TypeError, "limit must be an integer"),
])
def test_bad_arguments(kwargs, exc, msg, tmp_path):
    with pytest.raises(exc, match=msg):
        data.load_images(root=tmp_path, **kwargs)


def test_loader_checks_lengths():
    with pytest.raises(ValueError, match="rows"):
        data.loader(torch.ones(3, 2), torch.ones(4))
    with pytest.raises(TypeError, match="tensor 1 must be a torch.Tensor"):
        data.loader(torch.ones(3, 2), [0, 1, 2])
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        data.loader(torch.ones(3, 2), batch_size=2.0)
    batches = list(data.loader(torch.arange(10), batch_size=4, shuffle=False))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                [8, 9]]


def test_argument_errors_name_the_public_function(tmp_path):
    with pytest.raises(TypeError, match="train"):
        data.load_mnist(train=False)
    with pytest.raises(TypeError, match="root must be a folder path"):
        data.load_mnist(root=123)
    with pytest.raises(FileNotFoundError, match="FashionMNIST/raw"):
        data.load_fashion_mnist(root=tmp_path / "missing")


def radial_power(img, bands):
    import numpy as np
    power = np.abs(np.fft.fft2(img)) ** 2
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.fftfreq(img.shape[1])[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    return [power[(f >= lo) & (f < hi)].mean() for lo, hi in bands]


def test_whitening_flattens_a_one_over_f_spectrum():
    import numpy as np
    rng = np.random.default_rng(0)
    fy = np.fft.fftfreq(256)[:, None]
    fx = np.fft.fftfreq(256)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    amp = np.where(f > 0, 1 / np.maximum(f, 1e-9), 0)
    img = np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random(f.shape))))
    bands = [(0.02, 0.04), (0.08, 0.12)]
    low, mid = radial_power(img, bands)
    assert low / mid > 10                        # 1/f^2 power: steep
    low, mid = radial_power(data.whiten_image(img), bands)
    assert 0.5 < low / mid < 2                   # whitened: flat
    w = data.whiten_image(img)
    assert abs(w.mean()) < 1e-9 and abs(w.std() - 1) < 1e-9


def test_natural_patches():
    g = torch.Generator().manual_seed(0)
    x = data.natural_patches(8, 500, generator=g)
    assert x.shape == (500, 64) and x.dtype == torch.float32
    torch.testing.assert_close(x.mean(1), torch.zeros(500), atol=1e-5,
                               rtol=0)
    assert x.std().item() == pytest.approx(1.0, rel=1e-4)
    again = data.natural_patches(8, 500, generator=torch.Generator()
                                 .manual_seed(0))
    torch.testing.assert_close(x, again)
    imgs = data.natural_images(["camera", "china"])
    assert imgs[0].shape == (512, 512) and imgs[1].ndim == 2
    assert 0 <= imgs[1].min() and imgs[1].max() <= 1
    with pytest.raises(ValueError, match="image name must be one of "
                                         "'astronaut'.*got 'lena'"):
        data.natural_images(["camera", "lena"])
    with pytest.raises(ValueError,
                       match=r"f0 must be a real number in \(0, 1\], got 0"):
        data.whiten_image(imgs[0], f0=0)


def test_whiten_image_checks_f0():
    img = np.random.default_rng(0).random((16, 16))
    with pytest.raises(TypeError, match="f0 must be a real number, got '0.4'"):
        data.whiten_image(img, f0="0.4")
    with pytest.raises(ValueError, match="f0 .*NaN"):
        data.whiten_image(img, f0=float("nan"))
    with pytest.raises(ValueError, match=r"f0 .*\(0, 1\], got 1\.5"):
        data.whiten_image(img, f0=1.5)
    # a NumPy scalar is a number; f0 = 1 is allowed (closed end)
    np.testing.assert_array_equal(data.whiten_image(img, f0=np.float64(0.4)),
                                  data.whiten_image(img, f0=0.4))
    assert np.isfinite(data.whiten_image(img, f0=1)).all()
