"""Test configuration shared by every test module.

Notebook runs (nbval on the goldens, the Colab-path test) inherit this
process's environment: quick scale, widgets off, datasets from
``SPARSELIB_DATA`` (``../shared/data`` beside the repository when the
variable is not set). The book's tooling, ``.ci/booktool.py``, is importable
as ``booktool`` (it is not part of the installed library).
"""

import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".ci"))

os.environ.setdefault("SPARSELIB_SCALE", "quick")
os.environ.setdefault("SPARSELIB_WIDGETS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
_shared = ROOT.parent / "shared" / "data"
if "SPARSELIB_DATA" not in os.environ and _shared.is_dir():
    os.environ["SPARSELIB_DATA"] = str(_shared)

# wall-clock seconds spent executing each notebook (nbval items grouped by
# file), reported at the end of the run
_NOTEBOOK_SECONDS: dict = defaultdict(float)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="GPU test: no CUDA device on this machine")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    t0 = time.perf_counter()
    yield
    if str(item.fspath).endswith(".ipynb"):
        _NOTEBOOK_SECONDS[Path(str(item.fspath))] += time.perf_counter() - t0


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    tr = terminalreporter
    tr.section("notebook execution times (this run, cells only)")
    for path, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        try:
            name = path.relative_to(ROOT)
        except ValueError:
            name = path
        tr.write_line(f"{seconds:7.1f} s  {name}")
    tr.write_line(f"{sum(_NOTEBOOK_SECONDS.values()):7.1f} s  in all, "
                  f"{len(_NOTEBOOK_SECONDS)} notebooks")


def data_folder():
    """The dataset folder, or None when there is none to read."""
    path = os.environ.get("SPARSELIB_DATA")
    if path and Path(path).is_dir():
        return Path(path)
    return None


@pytest.fixture
def shared_data():
    """The dataset folder. Without one (no ``SPARSELIB_DATA`` and no
    ``../shared/data``), tests that read MNIST skip and say why."""
    path = data_folder()
    if path is None:
        pytest.skip("no dataset folder: set SPARSELIB_DATA to a folder "
                    "holding MNIST/raw and FashionMNIST/raw (torchvision's "
                    "layout); CI points it at ../shared/data")
    if not (path / "MNIST" / "raw").is_dir():
        pytest.skip(f"{path} holds no MNIST/raw (set SPARSELIB_DATA to a "
                    "folder in torchvision's layout)")
    return path
