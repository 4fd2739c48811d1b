"""Test configuration shared by every test module.

Notebook runs (papermill, nbval) inherit this process's environment: quick
scale, widgets off, datasets from ``SPARSELIB_DATA`` (``../shared/data``
beside the repository when the variable is not set).
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("SPARSELIB_SCALE", "quick")
os.environ.setdefault("SPARSELIB_WIDGETS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
_shared = ROOT.parent / "shared" / "data"
if "SPARSELIB_DATA" not in os.environ and _shared.is_dir():
    os.environ["SPARSELIB_DATA"] = str(_shared)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="GPU test: no CUDA device on this machine")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture
def shared_data():
    """The dataset folder; tests that need MNIST skip loudly without it."""
    path = os.environ.get("SPARSELIB_DATA")
    if not path or not Path(path).is_dir():
        pytest.fail("SPARSELIB_DATA is not set to a dataset folder; CI "
                    "points it at ../shared/data")
    return Path(path)
