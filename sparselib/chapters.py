"""Run the book's chapter notebooks and keep their outputs honest.

The book is published from the outputs committed in the chapter notebooks,
so those outputs must be one complete run, at full scale, of the notebook's
current code and the current sparselib. This module is the one place that

* runs chapters headless with papermill at a chosen scale (``run``),
* stamps a full run with its provenance (scale, a hash of the notebook's
  code, a hash of sparselib's code, run time) in the notebook metadata,
* regenerates the quick-scale nbval goldens in ``tests/golden`` (``goldens``),
* and checks all of that (``check``; the tests call :func:`freshness`).

Command line (from the repository root)::

    python -m sparselib.chapters run --scale full        # write outputs back
    python -m sparselib.chapters run --scale paper       # -> _runs/paper/
    python -m sparselib.chapters goldens                 # tests/golden/*.ipynb
    python -m sparselib.chapters check                   # freshness report

Library hashes cover only the modules a notebook uses (found statically,
with their own imports) and ignore docstrings and comments (they compare
syntax trees), so editing documentation or an unrelated module does not make
a chapter stale.
Needs the ``test`` or ``book`` extra (papermill). Not used by the chapters
themselves.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import os
import re
import sys
import time
from pathlib import Path

__all__ = [
    "ROOT", "chapter_notebooks", "golden_path", "code_cells", "code_hash",
    "library_hash", "used_modules", "run_notebook", "make_golden",
    "freshness",
]

#: Repository root (the folder holding ``sparselib/`` and ``chapters/``).
ROOT = Path(__file__).resolve().parent.parent
PROVENANCE_KEY = "sparse_book"
# Per-cell time limits (seconds): a stalled cell fails instead of hanging.
# Paper scale is meant for a GPU; on a CPU one of its cells can run for
# over an hour (chapter 2's FISTA targets on 50,000 patches timed out at
# 3,600 s on 2 cores), so it gets six hours.
CELL_TIMEOUT = {"quick": 180, "full": 900, "paper": 6 * 3600}
# Tooling, and the package's namespace file: changing them stales nothing.
_NOT_LIBRARY_CODE = {"chapters.py", "__init__.py"}


def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    """Every chapter notebook, ``chapters/NN-slug/*.ipynb``, sorted."""
    return sorted(p for p in (root / "chapters").glob("*/*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts)


def golden_path(notebook: Path, root: Path = ROOT) -> Path:
    """Where the quick-scale nbval golden of ``notebook`` lives:
    ``tests/golden/<chapter folder>/<notebook name>``."""
    notebook = Path(notebook)
    return root / "tests" / "golden" / notebook.parent.name / notebook.name


def _is_injected(cell) -> bool:
    return "injected-parameters" in cell.get("metadata", {}).get("tags", [])


def code_cells(nb) -> list[str]:
    """Sources of the code cells, without papermill's injected parameters."""
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and not _is_injected(cell):
            src = cell["source"]
            src = "".join(src) if isinstance(src, list) else src
            out.append("\n".join(line.rstrip() for line in
                                 src.strip().splitlines()))
    return out


def code_hash(nb) -> str:
    """SHA-256 of a notebook's code cells (see :func:`code_cells`)."""
    h = hashlib.sha256()
    for src in code_cells(nb):
        h.update(src.encode())
        h.update(b"\0")
    return h.hexdigest()


def _strip_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef,
                             ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and \
                    isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


_PKG = Path(__file__).resolve().parent


def _module_imports(path: Path) -> set[str]:
    """Sibling modules that a sparselib module imports (``from .x import``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def _exports(package_dir: Path) -> dict[str, str]:
    """Names that ``sparselib/__init__.py`` re-exports -> their module."""
    out = {}
    tree = ast.parse((package_dir / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and \
                node.module:
            for alias in node.names:
                out[alias.asname or alias.name] = node.module
    return out


def used_modules(nb, package_dir: Path | None = None) -> list[str]:
    """The sparselib modules a notebook's code depends on, sorted.

    Found statically: ``sl.<name>`` / ``sparselib.<name>`` attribute uses
    and ``from sparselib... import`` lines in the code cells, mapped to
    module files (names re-exported by ``__init__`` count for their
    module), closed under the modules' own relative imports. A change to
    any other module does not make the notebook stale.
    """
    package_dir = Path(package_dir or _PKG)
    code = "\n".join(code_cells(nb))
    names = set(re.findall(r"\b(?:sl|sparselib)\.(\w+)", code))
    for mod, imported in re.findall(
            r"from\s+sparselib(?:\.(\w+))?\s+import\s+\(?([\w\s,]+)",
            code):
        if mod:
            names.add(mod)
        else:
            names.update(n.strip().split(" as ")[0]
                         for n in imported.split(",") if n.strip())
    exports = _exports(package_dir)
    todo = set()
    for name in names:
        if (package_dir / f"{name}.py").exists():
            todo.add(name)
        elif name in exports:
            todo.add(exports[name])
    done: set[str] = set()
    while todo:
        mod = todo.pop()
        if mod in done or not (package_dir / f"{mod}.py").exists():
            continue
        done.add(mod)
        todo |= _module_imports(package_dir / f"{mod}.py") - done
    return sorted(done)


def library_hash(package_dir: Path | None = None,
                 modules: list[str] | None = None) -> str:
    """SHA-256 of sparselib's code: syntax trees, docstrings left out.

    ``modules`` restricts it to those module names (see
    :func:`used_modules`); by default every module but this tooling one.
    """
    package_dir = Path(package_dir or _PKG)
    h = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        if path.name in _NOT_LIBRARY_CODE:
            continue
        if modules is not None and path.stem not in modules:
            continue
        tree = _strip_docstrings(ast.parse(path.read_text()))
        h.update(str(path.relative_to(package_dir)).encode())
        h.update(ast.dump(tree, include_attributes=False).encode())
    return h.hexdigest()


def _clean_metadata(nb) -> None:
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)


def run_notebook(notebook: Path, scale: str, output: Path | None = None, *,
                 inject: bool | None = None, progress: bool = True,
                 widgets: bool | None = None) -> Path:
    """Execute ``notebook`` at ``scale`` with papermill; return the output path.

    ``output`` defaults to the notebook itself at full scale (outputs
    written back, provenance stamped) and to ``_runs/<scale>/<name>``
    otherwise. The scale reaches the notebook through ``SPARSELIB_SCALE``
    and, when ``inject`` (default: not at full scale), also through
    papermill's injected parameters cell. Widgets are on only at full
    scale unless ``widgets`` says otherwise. Each cell has the time limit
    ``CELL_TIMEOUT``.
    """
    import nbformat
    import papermill as pm

    from .utils import resolve_scale

    os.environ.pop("SPARSELIB_SCALE", None)
    scale = resolve_scale(scale)
    notebook = Path(notebook).resolve()
    if output is None:
        output = notebook if scale == "full" else \
            ROOT / "_runs" / scale / notebook.name
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    inject = (scale != "full") if inject is None else inject
    widgets = (scale == "full") if widgets is None else widgets
    env = {"SPARSELIB_SCALE": scale, "SPARSELIB_WIDGETS": "1" if widgets
           else "0", "PYTHONHASHSEED": "0"}
    shared = ROOT.parent / "shared" / "data"  # this project's data folder
    if not os.environ.get("SPARSELIB_DATA") and shared.is_dir():
        env["SPARSELIB_DATA"] = str(shared)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook), str(output),
            parameters={"SCALE": scale} if inject else None,
            kernel_name="python3", cwd=str(notebook.parent),
            execution_timeout=CELL_TIMEOUT[scale], progress_bar=progress,
            request_save_on_cell_execute=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    elapsed = time.perf_counter() - start
    nb = nbformat.read(str(output), as_version=4)
    _clean_metadata(nb)
    modules = used_modules(nb)
    nb.metadata[PROVENANCE_KEY] = {
        "scale": scale,
        "code_sha256": code_hash(nb),
        "sparselib_modules": modules,
        "sparselib_sha256": library_hash(modules=modules),
        "runtime_s": round(elapsed, 1),
        "executed_utc": _dt.datetime.now(_dt.timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": sys.version.split()[0],
    }
    nbformat.write(nb, str(output))
    return output


def make_golden(notebook: Path, progress: bool = False) -> Path:
    """Run ``notebook`` at quick scale into ``tests/golden/``."""
    return run_notebook(notebook, "quick", golden_path(Path(notebook).resolve()),
                        progress=progress)


def freshness(notebook: Path) -> list[str]:
    """Reasons why ``notebook``'s committed outputs are not one complete
    full-scale run of its current code and sparselib (empty: fresh)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code]
    if any(_is_injected(c) for c in code):
        problems.append("holds a papermill injected-parameters cell (run at "
                        "full scale without injected parameters)")
    if counts != list(range(1, len(code) + 1)):
        problems.append(f"execution counts are {counts}, not 1..{len(code)}"
                        " (not one complete top-to-bottom run)")
    errors = [i for i, c in enumerate(code)
              if any(o.get("output_type") == "error" for o in c.outputs)]
    if errors:
        problems.append(f"code cells {errors} hold error outputs")
    prov = nb.metadata.get(PROVENANCE_KEY)
    if not prov:
        problems.append("no provenance metadata: run `python -m "
                        "sparselib.chapters run --scale full`")
        return problems
    if prov.get("scale") != "full":
        problems.append(f"outputs are from scale {prov.get('scale')!r}, "
                        "not 'full'")
    if prov.get("code_sha256") != code_hash(nb):
        problems.append("the code changed after the outputs were made")
    modules = used_modules(nb)
    if prov.get("sparselib_modules") != modules:
        problems.append(f"the notebook now uses the sparselib modules "
                        f"{modules}, not {prov.get('sparselib_modules')}")
    elif prov.get("sparselib_sha256") != library_hash(modules=modules):
        problems.append("sparselib changed after the outputs were made "
                        f"(in one of {', '.join(modules)})")
    texts = ["".join(o.get("text", "")) for c in code for o in c.outputs
             if o.get("output_type") == "stream"]
    if not any("scale=full" in t for t in texts):
        problems.append("no cell printed 'scale=full' (print the RunConfig "
                        "returned by sl.setup)")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparselib.chapters",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="execute chapters at a scale")
    p_run.add_argument("--scale", default="full",
                       choices=["quick", "full", "paper"])
    p_run.add_argument("notebooks", nargs="*", type=Path)
    p_gold = sub.add_parser("goldens", help="regenerate quick goldens")
    p_gold.add_argument("notebooks", nargs="*", type=Path)
    sub.add_parser("check", help="report stale chapter outputs")
    args = parser.parse_args(argv)

    if args.cmd == "check":
        bad = 0
        for nb in chapter_notebooks():
            problems = freshness(nb)
            bad += bool(problems)
            status = "fresh" if not problems else "; ".join(problems)
            print(f"{nb.relative_to(ROOT)}: {status}")
        return 1 if bad else 0
    notebooks = args.notebooks or chapter_notebooks()
    for nb in notebooks:
        t0 = time.perf_counter()
        if args.cmd == "run":
            out = run_notebook(nb, args.scale)
        else:
            out = make_golden(nb)
        print(f"{nb} -> {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
