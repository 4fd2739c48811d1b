#!/usr/bin/env python3
"""The book's tooling: run the chapter notebooks and keep their outputs honest.

Not part of sparselib (the installed library holds only what the chapters
teach with). The book is published from the outputs committed in the
chapter notebooks, so those outputs must be one complete run, at full scale,
of the notebook's current code and of the sparselib code it uses. This file
is the one place that

* runs chapters headless with papermill at a chosen scale (``run``),
* stamps a full run with its provenance (scale, a hash of the notebook's
  code, a hash of every sparselib definition the notebook reaches, run time)
  in the notebook metadata,
* regenerates the quick-scale nbval goldens in ``tests/golden`` (``goldens``;
  their run time is the quick-scale budget the tests enforce),
* and checks all of that (``check``; the tests call :func:`freshness`).

Command line (from the repository root)::

    .venv/bin/python .ci/booktool.py run --scale full     # outputs written back
    .venv/bin/python .ci/booktool.py run --scale paper    # -> _runs/paper/
    .venv/bin/python .ci/booktool.py goldens              # tests/golden/
    .venv/bin/python .ci/booktool.py check                # freshness report
    .venv/bin/python .ci/booktool.py reach NOTEBOOK       # what it depends on

**Freshness follows what a notebook uses.** The names a notebook's cells use
from sparselib (``sl.coding.fista``, ``sl.setup``, ``from sparselib.x import
y``) are followed statically through the library: a function reaches the
module-level functions, classes and constants its body names (also through
``from .m import f`` and ``m.f``), a class reaches its bases and everything
its methods name, a name bound by an absolute import (``import numpy as
np``) is reached with the code that uses it, and every notebook reaches the
import-time statements of every module (``import sparselib`` runs them
all). Each reached definition is hashed by its source as ``ast.unparse``
writes it without docstrings (comments never reach the tree; the text does
not depend on the Python version), so a chapter goes stale when the code of
something it reaches changes, and not when an unrelated function in the
same module, a docstring or a comment does.

Needs papermill and nbformat (the ``test`` or ``book`` extra).
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as _dt
import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Repository root (the folder holding ``sparselib/`` and ``chapters/``).
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sparselib"
PROVENANCE_KEY = "sparse_book"
#: Quick-scale budget of one notebook, seconds on two CPU cores (the
#: goldens record their run time; tests/notebooks enforces this).
QUICK_BUDGET_S = 40.0
#: Full-scale budget of one notebook, seconds on two CPU cores.
FULL_BUDGET_S = 15 * 60.0
# Per-cell time limits (seconds): a stalled cell fails instead of hanging.
# Paper scale is meant for a GPU; on a CPU one of its cells can run for
# over an hour, so it gets six hours.
CELL_TIMEOUT = {"quick": 180, "full": 900, "paper": 6 * 3600}
SCALES = ("quick", "full", "paper")
_INIT = "<import-time>"


# --------------------------------------------------------------------------
# notebooks


def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    """Every chapter notebook in book order (the order of ``_toc.yml``)."""
    found = sorted(p for p in (root / "chapters").glob("*/*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
    order = {doc: i for i, doc in enumerate(toc_documents(root))}
    return sorted(found, key=lambda p: (
        order.get(p.relative_to(root).with_suffix("").as_posix(), 1e9),
        str(p)))


def toc_documents(root: Path = ROOT) -> list[str]:
    """The documents of ``_toc.yml`` in reading order (paths, no suffix)."""
    import yaml

    out: list[str] = []

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                out.append(str(e["file"]))
            for key in ("parts", "chapters", "sections"):
                walk(e.get(key))

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    out.append(str(toc["root"]))
    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return out


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


# --------------------------------------------------------------------------
# what a notebook reaches in sparselib


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


def _node_hash(nodes) -> str:
    """Hash of the code of ``nodes``: their source as ``ast.unparse``
    writes it, docstrings left out (comments never reach the tree). Unlike
    ``ast.dump``, that text does not change with the Python version."""
    h = hashlib.sha256()
    for node in nodes:
        tree = _strip_docstrings(copy.deepcopy(node))
        h.update(ast.unparse(tree).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _relative_imports(node) -> dict:
    """``alias -> (module, name or None)`` for the relative imports found
    anywhere in ``node`` (a module, or a definition's body)."""
    out = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom) and sub.level >= 1:
            target = sub.module or ""
            for alias in sub.names:
                name = alias.asname or alias.name
                if target:  # from .coding import fista
                    out[name] = (target.split(".")[0], alias.name)
                else:  # from . import coding
                    out[name] = (alias.name, None)
    return out


@dataclass
class LibraryIndex:
    """Every module-level definition of a package: hash and references."""

    package_dir: Path
    modules: dict = field(default_factory=dict)   # module -> {name: nodes}
    imports: dict = field(default_factory=dict)   # module -> {alias: ref}
    hashes: dict = field(default_factory=dict)    # "mod.name" -> hash
    refs: dict = field(default_factory=dict)      # "mod.name" -> {keys}

    @classmethod
    def build(cls, package_dir: Path | None = None) -> "LibraryIndex":
        """Parse every ``*.py`` file directly in ``package_dir``."""
        index = cls(Path(package_dir or PACKAGE))
        for path in sorted(index.package_dir.glob("*.py")):
            mod = "" if path.stem == "__init__" else path.stem
            if mod == "__main__":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            defs: dict[str, list] = {}
            init: list = []
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                     ast.ClassDef)):
                    defs.setdefault(node.name, []).append(node)
                elif isinstance(node, (ast.Assign, ast.AnnAssign,
                                       ast.AugAssign)):
                    targets = (node.targets if isinstance(node, ast.Assign)
                               else [node.target])
                    names = [n.id for t in targets for n in ast.walk(t)
                             if isinstance(n, ast.Name)]
                    if names == ["__all__"]:
                        continue
                    for name in names:
                        defs.setdefault(name, []).append(node)
                elif isinstance(node, ast.ImportFrom) and node.level:
                    continue  # within sparselib: resolution, not code
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    # ``import numpy as np``: the names it binds are
                    # definitions of this module, reached by the code
                    # that uses them (``import cmath as math`` changes
                    # what ``math.sqrt`` means)
                    for alias in node.names:
                        name = (alias.asname or alias.name).split(".")[0]
                        defs.setdefault(name, []).append(node)
                elif isinstance(node, ast.Expr) and isinstance(
                        node.value, ast.Constant):
                    continue  # the module docstring
                else:
                    init.append(node)  # if/try/calls run at import
            if init:
                defs[_INIT] = init
            index.modules[mod] = defs
            index.imports[mod] = _relative_imports(tree)
        for mod, defs in index.modules.items():
            for name, nodes in defs.items():
                key = f"{mod}.{name}"
                index.hashes[key] = _node_hash(nodes)
                index.refs[key] = index._references(mod, nodes)
                if name != _INIT and _INIT in defs:
                    index.refs[key].add(f"{mod}.{_INIT}")
        return index

    def resolve(self, mod: str, name: str, seen=None) -> set[str]:
        """Keys that ``name`` denotes in module ``mod`` (a re-export is
        followed to its definition; a module name gives nothing alone)."""
        seen = seen or set()
        if (mod, name) in seen or mod not in self.modules:
            return set()
        seen.add((mod, name))
        if name in self.modules[mod]:
            return {f"{mod}.{name}"}
        ref = self.imports[mod].get(name)
        if ref is None or ref[1] is None:
            return set()
        return self.resolve(ref[0], ref[1], seen)

    def module_of(self, mod: str, name: str) -> str | None:
        """The module that ``name`` names in ``mod``, if it names one."""
        ref = self.imports.get(mod, {}).get(name)
        if ref is not None and ref[1] is None and ref[0] in self.modules:
            return ref[0]
        return None

    def attribute(self, mod: str, attr: str) -> set[str]:
        """Keys that ``<module mod>.attr`` denotes; the whole module when
        the name is not found statically (conservative)."""
        found = self.resolve(mod, attr)
        if found:
            return found
        sub = self.module_of(mod, attr)
        if sub is not None:
            return set()
        return {f"{mod}.{n}" for n in self.modules.get(mod, {})}

    def _references(self, mod: str, nodes) -> set[str]:
        local = dict(self.imports[mod])
        for node in nodes:
            local.update(_relative_imports(node))
        out: set[str] = set()
        for node in nodes:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name):
                    if sub.id in self.modules[mod]:
                        out.add(f"{mod}.{sub.id}")
                    elif sub.id in local and local[sub.id][1] is not None:
                        out |= self.resolve(*local[sub.id])
                elif isinstance(sub, ast.Attribute) and \
                        isinstance(sub.value, ast.Name):
                    ref = local.get(sub.value.id)
                    if ref is not None and ref[1] is None:
                        out |= self.attribute(ref[0], sub.attr)
        return out

    def closure(self, roots) -> set[str]:
        """Everything reachable from ``roots`` (keys ``"mod.name"``)."""
        done: set[str] = set()
        todo = [r for r in roots if r in self.hashes]
        while todo:
            key = todo.pop()
            if key in done:
                continue
            done.add(key)
            todo.extend(r for r in self.refs.get(key, ()) if r not in done)
        return done


def notebook_roots(nb, index: LibraryIndex) -> set[str]:
    """The sparselib definitions a notebook's code names directly, and
    the import-time code of every module (``import sparselib`` imports
    them all, so that code runs for every notebook)."""
    code = "\n".join(code_cells(nb))
    aliases = {"sparselib", "sl"} | set(re.findall(
        r"^\s*import\s+sparselib\s+as\s+(\w+)", code, re.M))
    roots: set[str] = {f"{mod}.{_INIT}" for mod, defs in
                        index.modules.items() if _INIT in defs}
    pattern = r"\b(?:%s)\.(\w+)(?:\s*\.\s*(\w+))?" % "|".join(
        sorted(aliases))
    from_imports = (r"^[ \t]*from[ \t]+sparselib(?:\.(\w+))?[ \t]+"
                    r"import[ \t]+(\([^)]*\)|[\w \t,*]+)")
    attribute_code = re.sub(from_imports, "", code, flags=re.M)
    for first, second in re.findall(pattern, attribute_code):
        sub = index.module_of("", first) or (
            first if first in index.modules and first != "" else None)
        if sub is not None:
            if second:
                roots |= index.attribute(sub, second)
            else:  # the module object itself: all of it
                roots |= {f"{sub}.{n}" for n in index.modules[sub]}
        else:
            roots |= index.resolve("", first)
    for mod, names in re.findall(from_imports, code, re.M):
        if names.strip() == "*":  # a star import: all of it
            roots |= {k for k in index.hashes
                      if not mod or k.split(".")[0] == mod}
            continue
        for item in names.strip("()").split(","):
            name = item.strip().split(" as ")[0].strip()
            if not name:
                continue
            if mod:
                roots |= index.attribute(mod, name)
            elif name in index.modules:
                roots |= {f"{name}.{n}" for n in index.modules[name]}
            else:
                roots |= index.resolve("", name)
    return roots


def reached(nb, package_dir: Path | None = None,
            index: LibraryIndex | None = None) -> dict[str, str]:
    """``{"module.name": hash}`` of every sparselib definition ``nb``
    reaches (see the module docstring), sorted by key."""
    index = index or LibraryIndex.build(package_dir)
    keys = index.closure(notebook_roots(nb, index))
    return {k: index.hashes[k] for k in sorted(keys)}


# --------------------------------------------------------------------------
# running


def _clean_metadata(nb) -> None:
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)


def resolve_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got "
                         f"{scale!r}")
    return scale


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
    ``CELL_TIMEOUT``. The caller's environment is restored afterwards.
    """
    import nbformat
    import papermill as pm

    scale = resolve_scale(scale)
    notebook = Path(notebook).resolve()
    if output is None:
        output = notebook if scale == "full" else \
            ROOT / "_runs" / scale / notebook.name
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    # executed into a temporary file beside the output, which replaces the
    # output only when every cell ran: a failed run leaves it alone
    partial = output.with_name(f".{output.stem}.running{output.suffix}")
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
            str(notebook), str(partial),
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
    nb = nbformat.read(str(partial), as_version=4)
    _clean_metadata(nb)
    nb.metadata[PROVENANCE_KEY] = {
        "scale": scale,
        "code_sha256": code_hash(nb),
        "sparselib_reached": reached(nb),
        "runtime_s": round(elapsed, 1),
        "cpu_count": os.cpu_count(),
        "executed_utc": _dt.datetime.now(_dt.timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": sys.version.split()[0],
    }
    nbformat.write(nb, str(partial))
    os.replace(partial, output)
    return output


def make_golden(notebook: Path, progress: bool = False) -> Path:
    """Run ``notebook`` at quick scale into ``tests/golden/``."""
    return run_notebook(notebook, "quick",
                        golden_path(Path(notebook).resolve()),
                        progress=progress)


# --------------------------------------------------------------------------
# checking


def library_changes(recorded: dict, current: dict) -> list[str]:
    """What differs between two :func:`reached` maps, one phrase each."""
    out = []
    for key in sorted(set(recorded) | set(current)):
        if key not in current:
            out.append(f"{key} (no longer reached)")
        elif key not in recorded:
            out.append(f"{key} (newly reached)")
        elif recorded[key] != current[key]:
            out.append(key)
    return out


def freshness(notebook: Path, package_dir: Path | None = None,
              index: LibraryIndex | None = None) -> list[str]:
    """Reasons why ``notebook``'s committed outputs are not one complete
    full-scale run of its current code and of the sparselib code it
    reaches (empty: fresh)."""
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
        problems.append("no provenance metadata: run `.venv/bin/python "
                        ".ci/booktool.py run --scale full`")
        return problems
    if prov.get("scale") != "full":
        problems.append(f"outputs are from scale {prov.get('scale')!r}, "
                        "not 'full'")
    if prov.get("code_sha256") != code_hash(nb):
        problems.append("the code changed after the outputs were made")
    recorded = prov.get("sparselib_reached")
    if recorded is None:
        problems.append("no record of the sparselib code it reaches (an "
                        "older provenance format): rerun at full scale")
    else:
        changed = library_changes(recorded,
                                  reached(nb, package_dir, index))
        if changed:
            shown = ", ".join(changed[:8]) + (
                f" and {len(changed) - 8} more" if len(changed) > 8 else "")
            problems.append("sparselib code it reaches changed after the "
                            f"outputs were made: {shown}")
    texts = ["".join(o.get("text", "")) for c in code for o in c.outputs
             if o.get("output_type") == "stream"]
    if not any("scale=full" in t for t in texts):
        problems.append("no cell printed 'scale=full' (print the RunConfig "
                        "returned by sl.setup)")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=".ci/booktool.py",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="execute chapters at a scale")
    p_run.add_argument("--scale", default="full", choices=list(SCALES))
    p_run.add_argument("notebooks", nargs="*", type=Path)
    p_gold = sub.add_parser("goldens", help="regenerate quick goldens")
    p_gold.add_argument("notebooks", nargs="*", type=Path)
    sub.add_parser("check", help="report stale chapter outputs")
    p_reach = sub.add_parser("reach", help="list the sparselib definitions "
                             "a notebook reaches")
    p_reach.add_argument("notebook", type=Path)
    sub.add_parser("times", help="recorded run times (full and quick)")
    args = parser.parse_args(argv)

    if args.cmd == "check":
        bad = 0
        index = LibraryIndex.build()
        for nb in chapter_notebooks():
            problems = freshness(nb, index=index)
            bad += bool(problems)
            status = "fresh" if not problems else "; ".join(problems)
            print(f"{nb.relative_to(ROOT)}: {status}")
        return 1 if bad else 0
    if args.cmd == "reach":
        import nbformat

        nb = nbformat.read(str(args.notebook), as_version=4)
        for key, h in reached(nb).items():
            print(f"{h}  {key}")
        return 0
    if args.cmd == "times":
        import nbformat

        for nb_path in chapter_notebooks():
            full = nbformat.read(str(nb_path), as_version=4).metadata.get(
                PROVENANCE_KEY, {}).get("runtime_s")
            g = golden_path(nb_path)
            quick = nbformat.read(str(g), as_version=4).metadata.get(
                PROVENANCE_KEY, {}).get("runtime_s") if g.exists() else None
            print(f"{nb_path.relative_to(ROOT)}: full {full} s, quick "
                  f"{quick} s")
        return 0
    notebooks = args.notebooks or chapter_notebooks()
    for nb in notebooks:
        t0 = time.perf_counter()
        if args.cmd == "run":
            out = run_notebook(nb, args.scale)
        else:
            out = make_golden(nb)
        print(f"{nb} -> {out} ({time.perf_counter() - t0:.1f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
