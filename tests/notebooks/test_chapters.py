"""The chapter notebooks, checked without executing them (seconds).

These run first in CI, so that a stale chapter fails in the first minute:

* the committed outputs are one complete full-scale run of the current code
  and of the sparselib code the notebook reaches (``booktool.freshness``);
* every chapter has a quick-scale nbval golden whose code is the chapter's,
  which printed ``scale=quick``, which was made with the sparselib code
  the chapter reaches now, and whose recorded run time is within the
  quick-scale budget (``booktool.QUICK_BUDGET_S`` on two CPU cores);
* the recorded full-scale run time is within ``booktool.FULL_BUDGET_S``;
* every chapter follows the house anatomy (Colab cell, parameters cell,
  checked results, glue, no ``.cuda()``, lines that fit the page);
* every ``{glue:text}`` name in the prose is glued.

The goldens are executed (once each) by nbval in tests/golden.
"""

import re

import nbformat
import pytest

import booktool

NOTEBOOKS = booktool.chapter_notebooks()
IDS = [p.name for p in NOTEBOOKS]


@pytest.fixture(scope="module")
def index():
    return booktool.LibraryIndex.build()


def test_there_are_chapters():
    assert NOTEBOOKS, "no chapter notebooks found under chapters/"


def test_every_chapter_notebook_is_in_the_toc():
    docs = set(booktool.toc_documents())
    for nb in NOTEBOOKS:
        rel = nb.relative_to(booktool.ROOT).with_suffix("").as_posix()
        assert rel in docs, f"{rel} is not in _toc.yml"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_committed_outputs_are_one_fresh_full_run(nb, index):
    problems = booktool.freshness(nb, index=index)
    assert not problems, (
        f"{nb.name}: " + "; ".join(problems) +
        " -- rerun with `.venv/bin/python .ci/booktool.py run --scale full "
        f"{nb.relative_to(booktool.ROOT)}`")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_golden_is_the_chapter_at_quick_scale_within_budget(nb, index):
    golden = booktool.golden_path(nb)
    assert golden.exists(), (f"no golden {golden}; run `.venv/bin/python "
                             ".ci/booktool.py goldens`")
    g = nbformat.read(str(golden), as_version=4)
    c = nbformat.read(str(nb), as_version=4)
    assert booktool.code_cells(g) == booktool.code_cells(c), (
        f"{golden.name} drifted from its chapter; regenerate the goldens")
    prov = g.metadata[booktool.PROVENANCE_KEY]
    assert prov["scale"] == "quick"
    texts = "".join(o.get("text", "") for cell in g.cells
                    if cell.cell_type == "code" for o in cell.outputs)
    assert "scale=quick" in texts
    recorded = prov.get("sparselib_reached")
    assert recorded == booktool.reached(g, index=index), (
        f"{golden.name} was made with other sparselib code than the "
        "chapter reaches now (its outputs and run time are out of date); "
        "regenerate it with `.venv/bin/python .ci/booktool.py goldens "
        f"{nb.relative_to(booktool.ROOT)}`")
    assert prov["runtime_s"] <= booktool.QUICK_BUDGET_S, (
        f"{nb.name} took {prov['runtime_s']} s at quick scale (recorded in "
        f"its golden); the budget is {booktool.QUICK_BUDGET_S} s a notebook "
        "on two CPU cores")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_full_run_within_budget(nb):
    prov = nbformat.read(str(nb), as_version=4).metadata.get(
        booktool.PROVENANCE_KEY, {})
    assert prov.get("runtime_s", 0) <= booktool.FULL_BUDGET_S, (
        f"{nb.name} took {prov.get('runtime_s')} s at full scale; the "
        f"budget is {booktool.FULL_BUDGET_S} s a notebook on two CPU cores")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_anatomy(nb):
    cells = nbformat.read(str(nb), as_version=4).cells
    code = [c for c in cells if c.cell_type == "code"]
    assert cells[0].cell_type == "markdown" and \
        cells[0].source.startswith("# "), "first cell: the title"
    colab = code[0]
    assert "google.colab" in colab.source
    assert "hide-cell" in colab.metadata.get("tags", [])
    params = code[1]
    assert params.metadata.get("tags") == ["parameters"]
    names = [line.split("=")[0].strip() for line in
             params.source.splitlines() if line.strip()]
    assert names == ["SCALE", "SEED", "DEVICE"]
    assert 'SCALE = "full"' in params.source
    assert any("NBVAL_CHECK_OUTPUT" in c.source for c in code)
    assert any("sl.glue(" in c.source and
               "remove-cell" in c.metadata.get("tags", []) for c in code)
    for c in code:
        assert ".cuda(" not in c.source, "device-agnostic code only"
        for line in c.source.splitlines():
            assert len(line) <= 79, f"line longer than 79 columns: {line!r}"
    md = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "## Summary" in md and "## Exercises" in md
    assert "allow_errors" not in nb.read_text()


def test_glued_names_exist():
    """Every {glue:text}`name` in the prose is glued by its notebook."""
    for nb in NOTEBOOKS:
        cells = nbformat.read(str(nb), as_version=4).cells
        prose = "\n".join(c.source for c in cells if c.cell_type == "markdown")
        used = set(re.findall(r"\{glue(?::\w+)?\}`([A-Za-z_]\w*)", prose))
        glued = set()
        for c in cells:
            for o in c.get("outputs", []):
                key = o.get("metadata", {}).get("scrapbook", {}).get("name")
                if key:
                    glued.add(key)
        assert used <= glued, f"{nb.name}: not glued: {sorted(used - glued)}"
