"""The book's tooling (.ci/booktool.py): every freshness reason can fire,
and freshness follows what a notebook really reaches in sparselib.

Two kinds of oracle: a small hand-written package whose call graph is known
by construction, and a copy of the real sparselib edited in places whose
dependants are stated by hand (which chapters name or reach what).
"""

import shutil
import textwrap

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

import booktool

ROOT = booktool.ROOT
CODE = ("import sparselib as sl", "x = sl.sdr.expected_overlap(4, 2)")


def run_nb(scale="full", counts=(1, 2), code=CODE, package_dir=None):
    cells = [new_code_cell(src, execution_count=n)
             for src, n in zip(code, counts)]
    cells[-1].outputs = [new_output("stream", name="stdout",
                                    text=f"scale={scale} device=cpu\n")]
    nb = new_notebook(cells=cells)
    nb.metadata[booktool.PROVENANCE_KEY] = {
        "scale": scale, "code_sha256": booktool.code_hash(nb),
        "sparselib_reached": booktool.reached(nb, package_dir)}
    return nb


def check(nb, tmp_path, package_dir=None):
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return booktool.freshness(path, package_dir)


# --------------------------------------------------------------------------
# each reason


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


def test_library_change_is_stale_and_named(tmp_path):
    nb = run_nb()
    reached = nb.metadata[booktool.PROVENANCE_KEY]["sparselib_reached"]
    reached["sdr.expected_overlap"] = "0" * 16
    msg = " ".join(check(nb, tmp_path))
    assert "sparselib code it reaches changed" in msg
    assert "sdr.expected_overlap" in msg


def test_injected_parameters_cell_is_stale(tmp_path):
    nb = run_nb()
    injected = new_code_cell('SCALE = "quick"', execution_count=None)
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(0, injected)
    assert "injected-parameters" in " ".join(check(nb, tmp_path))


def test_no_reach_record_is_stale(tmp_path):
    nb = run_nb()
    del nb.metadata[booktool.PROVENANCE_KEY]["sparselib_reached"]
    assert "older provenance format" in " ".join(check(nb, tmp_path))


def test_no_scale_line_is_stale(tmp_path):
    nb = run_nb()
    nb.cells[-1].outputs = []
    assert "scale=full" in " ".join(check(nb, tmp_path))


def test_missing_provenance(tmp_path):
    nb = run_nb()
    del nb.metadata[booktool.PROVENANCE_KEY]
    assert "no provenance" in " ".join(check(nb, tmp_path))


def test_injected_parameters_are_not_code():
    nb = run_nb()
    injected = new_code_cell('SCALE = "quick"')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(0, injected)
    assert booktool.code_cells(nb) == list(CODE)


# --------------------------------------------------------------------------
# reach, on a package whose call graph is known by construction

PKG = {
    "__init__.py": """
        from . import a, b, numeric, shapes
        from .b import helper
        __all__ = ["a", "b", "helper"]
        """,
    "a.py": '''
        """Module a."""
        from .b import middle
        from . import b as bmod

        LIMIT = 3

        def top(x):
            """Top: reaches b.middle -> b.deep (two calls deep)."""
            return middle(x) + LIMIT

        def via_module(x):
            return bmod.helper(x)

        def unused(x):
            return x  # nothing calls this
        ''',
    "b.py": '''
        def middle(x):
            return deep(x) * 2

        def deep(x):
            return x + 1

        def helper(x):
            return -x

        def lazy(x):
            from .a import unused as u
            return u(x)
        ''',
    "numeric.py": '''
        import math

        def root(x):
            return math.sqrt(x)
        ''',
    "shapes.py": '''
        from .b import deep

        class Base:
            def area(self):
                return 0

        class Square(Base):
            def __init__(self, s):
                self.s = s

            def area(self):
                return self.s ** 2

        class Other:
            def area(self):
                return deep(1)
        ''',
}


def write_pkg(tmp_path, files=PKG):
    pkg = tmp_path / "pkg"
    pkg.mkdir(exist_ok=True)
    for name, src in files.items():
        (pkg / name).write_text(textwrap.dedent(src).lstrip())
    return pkg


def reach(code, pkg):
    nb = new_notebook(cells=[new_code_cell(code)])
    return set(booktool.reached(nb, pkg))


def test_reach_follows_calls_imports_and_constants(tmp_path):
    pkg = write_pkg(tmp_path)
    assert reach("import sparselib as sl\nsl.a.top(1)", pkg) == {
        "a.top", "a.LIMIT", "b.middle", "b.deep"}
    assert reach("sl.a.via_module(1)", pkg) == {"a.via_module", "b.helper"}
    assert reach("sl.helper(2)", pkg) == {"b.helper"}   # re-exported
    assert reach("from sparselib.b import lazy", pkg) == {"b.lazy",
                                                         "a.unused"}
    assert reach("from sparselib.shapes import Square", pkg) == {
        "shapes.Square", "shapes.Base"}
    assert reach("import sparselib as s2\ns2.shapes.Other()", pkg) == {
        "shapes.Other", "b.deep"}
    # several lines: a from-import does not swallow the next line
    assert reach("from sparselib.b import helper\nsl.a.via_module(1)",
                 pkg) == {"b.helper", "a.via_module"}
    assert reach("from sparselib.b import (\n    helper,\n    deep)\n",
                 pkg) == {"b.helper", "b.deep"}
    # an absolute import is part of the code that uses it
    assert reach("sl.numeric.root(4)", pkg) == {"numeric.root",
                                                 "numeric.math"}


def edited(pkg, module, old, new):
    path = pkg / module
    text = path.read_text()
    assert old in text, (old, module)
    path.write_text(text.replace(old, new))


def hashes(code, pkg):
    nb = new_notebook(cells=[new_code_cell(code)])
    return booktool.reached(nb, pkg)


@pytest.mark.parametrize("module, old, new, stale", [
    # an unused function in the module that holds the used ones
    ("a.py", "return x  # nothing", "return x + 0  # nothing", set()),
    # two calls deep: only the notebook that reaches it
    ("b.py", "return x + 1", "return x + 2", {"top", "square_other"}),
    # a method of a class the notebook instantiates, and of its base
    ("shapes.py", "return self.s ** 2", "return self.s * self.s",
     {"square"}),
    ("shapes.py", "return 0", "return 0.0", {"square"}),
    # a constant the function names
    ("a.py", "LIMIT = 3", "LIMIT = 4", {"top"}),
    # what an absolute import binds, for the code that uses it
    ("numeric.py", "import math", "import cmath as math", {"root"}),
    # code run at import runs for every notebook (import sparselib
    # imports every module)
    ("b.py", "def middle(x):", "STATE = []\nSTATE.append(1)\n\n\n"
     "def middle(x):", {"top", "helper", "square", "square_other",
                        "root"}),
    # docstrings and comments are not code
    ("a.py", '"""Top: reaches', '"""Top (edited): reaches', set()),
    ("a.py", "# nothing calls this", "# still nothing calls this", set()),
])
def test_an_edit_stales_exactly_the_notebooks_that_reach_it(
        tmp_path, module, old, new, stale):
    pkg = write_pkg(tmp_path)
    notebooks = {"top": "sl.a.top(1)", "helper": "sl.helper(1)",
                 "root": "sl.numeric.root(4)",
                 "square": "sl.shapes.Square(2).area()",
                 "square_other": "sl.shapes.Other().area()"}
    before = {k: hashes(c, pkg) for k, c in notebooks.items()}
    edited(pkg, module, old, new)
    after = {k: hashes(c, pkg) for k, c in notebooks.items()}
    assert {k for k in notebooks if before[k] != after[k]} == stale


# --------------------------------------------------------------------------
# reach, on a copy of the real library and the real chapters


@pytest.fixture
def library_copy(tmp_path):
    dst = tmp_path / "sparselib"
    shutil.copytree(ROOT / "sparselib", dst,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def stale_chapters(pkg):
    """Chapters whose recorded reach differs from ``pkg``'s: compares the
    reach computed on the real library with the one on the edited copy."""
    real = booktool.LibraryIndex.build()
    copy = booktool.LibraryIndex.build(pkg)
    out = set()
    for nb_path in booktool.chapter_notebooks():
        nb = nbformat.read(str(nb_path), as_version=4)
        if booktool.reached(nb, index=real) != \
                booktool.reached(nb, index=copy):
            out.add(nb_path.stem)
    return out


def test_editing_an_unused_utils_function_stales_nothing(library_copy):
    with open(library_copy / "utils.py", "a") as f:
        f.write("\n\ndef _nobody_calls_this(x):\n    return x\n")
    assert stale_chapters(library_copy) == set()
    edited(library_copy, "utils.py", "    return x\n", "    return x + 1\n")
    assert stale_chapters(library_copy) == set()


def test_a_docstring_or_comment_in_a_used_function_stales_nothing(
        library_copy):
    text = (library_copy / "utils.py").read_text()
    i = text.index('"""', text.index("def setup("))
    (library_copy / "utils.py").write_text(
        text[:i + 3] + "Edited. " + text[i + 3:])
    assert stale_chapters(library_copy) == set()


def test_a_function_two_calls_deep_stales_exactly_its_chapters(
        library_copy):
    # coding.lipschitz is reached from fista/ista only through _solve;
    # chapter 2's notebooks call fista (2.1 also ista and LISTA), no other
    # chapter uses sparse-coding solvers.
    text = (library_copy / "coding.py").read_text()
    i = text.index("def lipschitz(")
    j = text.index("\n    return", i)
    (library_copy / "coding.py").write_text(
        text[:j] + "\n    n_iter = n_iter + 0" + text[j:])
    assert stale_chapters(library_copy) == {"01-ista-fista-lista",
                                            "02-dictionary-learning"}


def test_a_method_of_an_instantiated_class_stales_its_chapters(
        library_copy):
    # SparseAutoencoder is built in all three chapter-3 notebooks, and in
    # no other chapter.
    text = (library_copy / "autoencoders.py").read_text()
    cls = text.index("class SparseAutoencoder")
    i = text.index("    def forward(", cls)
    body = text.index("\n        return", i)
    (library_copy / "autoencoders.py").write_text(
        text[:body] + "\n        x = x" + text[body:])
    assert stale_chapters(library_copy) == {
        "01-kl-sparse-autoencoder", "02-linear-vs-ndlinear",
        "03-topk-and-trade-offs"}
