"""The chapter notebooks: they run, their outputs are fresh, goldens in step.

* every chapter runs top to bottom at quick scale under papermill, with a
  time limit on every cell;
* the committed outputs are one complete full-scale run of the current code
  and the current sparselib (see ``sparselib.chapters.freshness``);
* every chapter has a quick-scale nbval golden whose code is the chapter's;
* every chapter follows the house anatomy (Colab cell, parameters cell,
  checked results, glue, no ``.cuda()``, lines that fit the page).
"""

import re
import time

import nbformat
import pytest

from sparselib import chapters

NOTEBOOKS = chapters.chapter_notebooks()
IDS = [p.name for p in NOTEBOOKS]


def test_there_are_chapters():
    assert NOTEBOOKS, "no chapter notebooks found under chapters/"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_runs_at_quick_scale(nb, tmp_path):
    t0 = time.perf_counter()
    out = chapters.run_notebook(nb, "quick", tmp_path / nb.name,
                                progress=False)
    elapsed = time.perf_counter() - t0
    ran = nbformat.read(str(out), as_version=4)
    texts = "".join(o.get("text", "") for c in ran.cells
                    if c.cell_type == "code" for o in c.outputs)
    assert "scale=quick" in texts
    print(f"{nb.name}: {elapsed:.1f} s at quick scale")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_committed_outputs_are_one_fresh_full_run(nb):
    problems = chapters.freshness(nb)
    assert not problems, (
        f"{nb.name}: " + "; ".join(problems) +
        " -- rerun with `python -m sparselib.chapters run --scale full`")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_golden_code_matches_chapter(nb):
    golden = chapters.golden_path(nb)
    assert golden.exists(), (f"no golden {golden}; run `python -m "
                             "sparselib.chapters goldens`")
    g = nbformat.read(str(golden), as_version=4)
    c = nbformat.read(str(nb), as_version=4)
    assert chapters.code_cells(g) == chapters.code_cells(c), (
        f"{golden.name} drifted from its chapter; regenerate the goldens")
    assert g.metadata[chapters.PROVENANCE_KEY]["scale"] == "quick"


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
