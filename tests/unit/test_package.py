"""The package: only library modules, all importable, all documented.

The book's tooling (chapter runner, goldens, freshness, benchmark command
line) lives in the repository's ``.ci/`` folder, not in the package.
"""

import importlib
import pkgutil
import re
import subprocess
import sys

import sparselib

MODULES = sorted(m.name for m in pkgutil.iter_modules(sparselib.__path__)
                 if not m.name.startswith("_"))


def test_every_module_imports_and_is_exported():
    for name in MODULES:
        mod = importlib.import_module(f"sparselib.{name}")
        assert getattr(sparselib, name) is mod
        assert name in sparselib.__all__
    modules_in_all = [n for n in sparselib.__all__
                      if isinstance(getattr(sparselib, n), type(sparselib))]
    assert sorted(modules_in_all) == MODULES


def test_the_package_docstring_lists_exactly_the_modules():
    listed = re.findall(r"^``(\w+)``\s{2,}", sparselib.__doc__, re.M)
    assert sorted(listed) == MODULES


def test_no_tooling_in_the_package():
    assert "chapters" not in MODULES
    for name in MODULES:
        src = importlib.import_module(f"sparselib.{name}").__file__
        text = open(src, encoding="utf-8").read()
        assert "argparse" not in text, f"{name}: a command line in the library"
        for sign in ('"shared"', "'shared'", "../shared", "ROOT"):
            assert sign not in text, f"{name} assumes the project's checkout"


def test_python_m_sparselib_lists_the_modules():
    out = subprocess.run([sys.executable, "-m", "sparselib"],
                         capture_output=True, text=True, check=True).stdout
    shown = re.findall(r"sparselib\.(\w+)", out)
    assert sorted(shown) == MODULES
