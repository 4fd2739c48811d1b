"""The Colab path: sparselib installed from its wheel, with no repository.

A reader on Colab gets sparselib from ``pip install`` and runs a chapter
notebook on its own, far from this checkout. This test does the same
offline: it builds the wheel, installs it into a fresh virtual environment
in a temporary folder (the heavy dependencies -- torch and the rest -- are
borrowed read-only from the project's environment through a ``.pth`` line,
so nothing is downloaded), and runs one chapter notebook at quick scale
from another temporary folder, through a kernel of that environment, with
no ``PYTHONPATH`` and the checkout nowhere on the path. A cell appended to
the notebook prints where ``sparselib`` was imported from.
"""

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "chapters" / "01-neural-codes" / "02-match-probability.ipynb"


def run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True,
                          text=True, **kw)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("colab")
    # build from a copy of what the wheel is made of, so that no build/
    # folder lands in (or is reused from) the checkout
    src = tmp / "src"
    shutil.copytree(ROOT / "sparselib", src / "sparselib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = tmp / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--no-build-isolation", "--quiet", "-w", wheels, src])
    wheel = next(wheels.glob("sparselib-*.whl"))
    env_dir = tmp / "venv"
    run([sys.executable, "-m", "venv", env_dir])
    python = env_dir / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; "
                   "print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # borrow the dependencies, not sparselib: a plain path line adds the
    # folder after the environment's own site-packages, and the editable
    # install's own .pth there is not processed
    (Path(purelib) / "borrowed-deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index",
         "--quiet", wheel])
    return {"python": python, "prefix": env_dir, "tmp": tmp}


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")}
    env.update(extra)
    return env


def test_the_wheel_holds_the_library_and_no_tooling(fresh_env, tmp_path):
    out = run([fresh_env["python"], "-c",
               "import sparselib, pkgutil; print(sparselib.__file__); "
               "print(sorted(m.name for m in "
               "pkgutil.iter_modules(sparselib.__path__)))"],
              cwd=tmp_path, env=clean_env()).stdout.splitlines()
    assert Path(out[0]).is_relative_to(fresh_env["prefix"]), out[0]
    assert "chapters" not in out[1] and "coding" in out[1]
    listing = run([fresh_env["python"], "-m", "sparselib"], cwd=tmp_path,
                  env=clean_env()).stdout
    assert "sparselib.coding" in listing


def test_a_chapter_runs_from_a_temporary_folder(fresh_env):
    work = fresh_env["tmp"] / "work"
    work.mkdir()
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    nb.cells.append(new_code_cell(
        "import sparselib, sys\nprint('imported from', sparselib.__file__)"
        "\nprint('path', sys.path)"))
    nbformat.write(nb, str(work / NOTEBOOK.name))
    # a kernel of the fresh environment, declared in a private Jupyter path
    spec = fresh_env["tmp"] / "jupyter" / "kernels" / "colab-like"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        '{"argv": ["%s", "-m", "ipykernel_launcher", "-f", '
        '"{connection_file}"], "display_name": "colab-like", '
        '"language": "python"}' % fresh_env["python"])
    env = clean_env(JUPYTER_PATH=str(fresh_env["tmp"] / "jupyter"),
                    SPARSELIB_SCALE="quick", SPARSELIB_WIDGETS="0",
                    MPLBACKEND="Agg")
    run([fresh_env["python"], "-m", "papermill", NOTEBOOK.name, "out.ipynb",
         "-k", "colab-like", "-p", "SCALE", "quick", "--no-progress-bar",
         "--execution-timeout", "180"], cwd=work, env=env)
    ran = nbformat.read(str(work / "out.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for c in ran.cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "scale=quick" in text
    where = text.split("imported from ")[1].split("\n")[0]
    assert Path(where).is_relative_to(fresh_env["prefix"]), where
    kernel_path = ast.literal_eval(text.split("path ")[-1].strip())
    borrowed = Path(sysconfig.get_paths()["purelib"])
    for entry in kernel_path:
        p = (work / entry).resolve()  # "" is the kernel's own folder
        assert p == borrowed or not p.is_relative_to(ROOT), (
            f"the checkout is on the kernel's path: {entry}")
