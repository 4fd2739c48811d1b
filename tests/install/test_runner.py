"""The chapter runner of .ci/booktool.py: it restores the caller's
environment and never overwrites an output with a failed run. (It starts
kernels, so it runs with the other tests that execute code.)"""

import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import booktool

ENV = ("SPARSELIB_SCALE", "SPARSELIB_WIDGETS", "PYTHONHASHSEED",
       "SPARSELIB_DATA")


def test_run_notebook_restores_the_callers_scale(tmp_path, monkeypatch):
    """The runner sets SPARSELIB_SCALE for the kernel and puts the caller's
    value back afterwards (it once removed it)."""
    nb = new_notebook(cells=[new_code_cell(
        "import os\nprint('scale=' + os.environ['SPARSELIB_SCALE'])")])
    src = tmp_path / "t.ipynb"
    nbformat.write(nb, str(src))
    monkeypatch.setenv("SPARSELIB_SCALE", "paper")
    monkeypatch.setenv("SPARSELIB_WIDGETS", "1")
    monkeypatch.setenv("PYTHONHASHSEED", "7")
    before = {k: os.environ.get(k) for k in ENV}
    out = booktool.run_notebook(src, "quick", tmp_path / "out.ipynb",
                                inject=False, progress=False)
    assert {k: os.environ.get(k) for k in ENV} == before
    ran = nbformat.read(str(out), as_version=4)
    assert "scale=quick" in ran.cells[0].outputs[0]["text"]
    monkeypatch.delenv("SPARSELIB_SCALE")
    booktool.run_notebook(src, "quick", tmp_path / "out.ipynb",
                          inject=False, progress=False)
    assert "SPARSELIB_SCALE" not in os.environ


def test_a_failed_run_leaves_the_output_alone(tmp_path):
    nb = new_notebook(cells=[new_code_cell("raise RuntimeError('boom')")])
    src = tmp_path / "t.ipynb"
    nbformat.write(nb, str(src))
    out = tmp_path / "out.ipynb"
    out.write_text("previous outputs")
    with pytest.raises(Exception, match="boom"):
        booktool.run_notebook(src, "quick", out, inject=False,
                              progress=False)
    assert out.read_text() == "previous outputs"
