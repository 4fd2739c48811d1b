"""sparselib.chapters: the freshness check can fail, for each of its reasons."""

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from sparselib import chapters


def run_nb(scale="full", counts=(1, 2),
           code=("import sparselib as sl", "x = sl.sdr.expected_overlap(4, 2)")):
    cells = [new_code_cell(src, execution_count=n)
             for src, n in zip(code, counts)]
    cells[-1].outputs = [new_output("stream", name="stdout",
                                    text=f"scale={scale} device=cpu\n")]
    nb = new_notebook(cells=cells)
    modules = chapters.used_modules(nb)
    nb.metadata[chapters.PROVENANCE_KEY] = {
        "scale": scale, "code_sha256": chapters.code_hash(nb),
        "sparselib_modules": modules,
        "sparselib_sha256": chapters.library_hash(modules=modules)}
    return nb


def check(nb, tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return chapters.freshness(path)


def test_fresh_notebook_passes(tmp_path):
    assert check(run_nb(), tmp_path) == []


def test_edited_code_is_stale(tmp_path):
    nb = run_nb()
    nb.cells[0].source = "import sparselib as sl  # edited"
    assert "code changed" in " ".join(check(nb, tmp_path))


def test_whitespace_at_line_ends_is_not_a_change(tmp_path):
    nb = run_nb()
    nb.cells[0].source = "import sparselib as sl   \n"
    assert check(nb, tmp_path) == []


def test_quick_outputs_are_not_full(tmp_path):
    assert "scale 'quick'" in " ".join(check(run_nb("quick"), tmp_path))


def test_out_of_order_or_partial_runs(tmp_path):
    assert "not one complete" in " ".join(
        check(run_nb(counts=(2, 1)), tmp_path))
    assert "not one complete" in " ".join(
        check(run_nb(counts=(1, None)), tmp_path))


def test_error_outputs(tmp_path):
    nb = run_nb()
    nb.cells[0].outputs = [new_output("error", ename="ValueError",
                                      evalue="x", traceback=[])]
    assert "error outputs" in " ".join(check(nb, tmp_path))


def test_library_change_is_stale(tmp_path):
    nb = run_nb()
    nb.metadata[chapters.PROVENANCE_KEY]["sparselib_sha256"] = "0" * 64
    assert "sparselib changed" in " ".join(check(nb, tmp_path))


def test_missing_provenance(tmp_path):
    nb = run_nb()
    del nb.metadata[chapters.PROVENANCE_KEY]
    assert "no provenance" in " ".join(check(nb, tmp_path))


def test_library_hash_ignores_docstrings_not_code(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text('"""Doc."""\n\ndef f():\n    """One."""\n'
                              '    return 1  # comment\n')
    h0 = chapters.library_hash(pkg)
    (pkg / "m.py").write_text('"""Other doc."""\n\ndef f():\n    """Two."""'
                              '\n    return 1\n')
    assert chapters.library_hash(pkg) == h0
    (pkg / "m.py").write_text('def f():\n    return 2\n')
    assert chapters.library_hash(pkg) != h0


def test_injected_parameters_are_not_code():
    nb = run_nb()
    injected = new_code_cell('SCALE = "quick"')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(0, injected)
    assert chapters.code_cells(nb) == list(run_nb_code())


def run_nb_code():
    return ("import sparselib as sl", "x = sl.sdr.expected_overlap(4, 2)")


def test_used_modules_follow_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import a, b, c\n"
                                     "from .c import helper\n")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    return 1\n")
    (pkg / "c.py").write_text("def helper():\n    return 2\n")
    nb = new_notebook(cells=[new_code_cell("sl.a.g()\nsl.helper()")])
    assert chapters.used_modules(nb, pkg) == ["a", "b", "c"]
    nb = new_notebook(cells=[new_code_cell("from sparselib import b")])
    assert chapters.used_modules(nb, pkg) == ["b"]


def test_a_change_elsewhere_in_the_library_is_not_stale(tmp_path):
    nb = run_nb()
    assert chapters.used_modules(nb) == ["sdr", "utils"]
    assert check(nb, tmp_path) == []
    nb.metadata[chapters.PROVENANCE_KEY]["sparselib_modules"] = ["utils"]
    assert "now uses" in " ".join(check(nb, tmp_path))
