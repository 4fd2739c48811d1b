#!/usr/bin/env python3
"""Vendor the JavaScript that the book's HTML pages load, so they work offline.

Called by ``.ci/setup``. For each package below, ``npm pack NAME@VERSION``
downloads the tarball from the npm registry (npm checks it against the
registry's integrity hash); this script checks it again against the hash
pinned here, then copies only the files the pages need into
``book/_static/vendor/`` (git-ignored), with the packages' licences:

* ``mathjax/``   MathJax 3 (``tex-mml-chtml.js``, the component Sphinx loads
  by default) plus what it fetches at run time: the CHTML woff-v2 fonts, the
  TeX extensions that ``autoload`` and ``\\require`` pull in (``boldsymbol``,
  ``ams`` environments, ...), the MathML entities, and the context menu's
  ``ui/`` and ``a11y/`` components with the speech-rule engine's maps.
* ``requirejs/`` RequireJS (``require.js``), the AMD loader that the widget
  manager needs.
* ``widgets/``   ``@jupyter-widgets/html-manager`` 1.0.x, the embed manager of
  ipywidgets 8 (widget protocol 2; the version myst-nb 1.4.0 links to by
  default): ``embed-amd.js``, which bundles ``@jupyter-widgets/base``,
  ``controls`` and ``output``, and the Font Awesome fonts it loads relative
  to itself.

A manifest (``vendor/manifest.json``) records what was installed; when it
matches the pins below and the files are present, the script only checks.
Standard library only. Prints one line saying what it did.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "book" / "_static" / "vendor"
MANIFEST = VENDOR / "manifest.json"
MANIFEST_FORMAT = 1

# name, exact version, npm's sha512 integrity of the tarball, and the files to
# keep: (path in the tarball's ``package/``, destination under vendor/). A
# source ending in "/" copies that folder recursively; a source that names a
# folder and ends in "*.EXT" copies that folder's files with that suffix.
PACKAGES = [
    {
        "name": "mathjax",
        "version": "3.2.2",
        "integrity": "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/"
                     "O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        "files": [
            ("es5/tex-mml-chtml.js", "mathjax/tex-mml-chtml.js"),
            ("es5/output/chtml/fonts/woff-v2/",
             "mathjax/output/chtml/fonts/woff-v2/"),
            ("es5/input/tex/extensions/", "mathjax/input/tex/extensions/"),
            ("es5/input/mml/", "mathjax/input/mml/"),
            ("es5/ui/", "mathjax/ui/"),
            ("es5/a11y/", "mathjax/a11y/"),
            ("es5/sre/", "mathjax/sre/"),
            ("LICENSE", "mathjax/LICENSE"),
        ],
    },
    {
        "name": "requirejs",
        "version": "2.3.8",
        "integrity": "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF42"
                     "1Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        # The npm package ships no LICENSE file; require.js's own header
        # states the licence (MIT), and NOTICE repeats it (written below).
        "files": [("require.js", "requirejs/require.js")],
    },
    {
        "name": "@jupyter-widgets/html-manager",
        "version": "1.0.6",
        "integrity": "sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5c"
                     "OJbpmgMhNR27n/rmP3mKyEe0PWCJrtZrXTXDQ==",
        "files": [
            ("dist/embed-amd.js", "widgets/embed-amd.js"),
            ("dist/*.woff2", "widgets/"),
            ("dist/*.woff", "widgets/"),
            ("dist/*.ttf", "widgets/"),
            ("dist/*.eot", "widgets/"),
            ("dist/*.svg", "widgets/"),
            ("LICENSE", "widgets/LICENSE"),
            # licences of the libraries bundled into embed-amd.js (the same
            # set as embed.js; embed-amd.js names a file the package lacks)
            ("dist/embed.js.LICENSE.txt", "widgets/THIRD-PARTY-LICENSES.txt"),
        ],
    },
]


def fail(message: str) -> None:
    sys.exit(f"vendor_js.py: error: {message}")


def wanted_spec() -> list[dict]:
    return [{"name": p["name"], "version": p["version"],
             "integrity": p["integrity"], "files": [list(f) for f in p["files"]]}
            for p in PACKAGES]


def up_to_date() -> bool:
    """True when the manifest matches the pins and every file it lists exists."""
    try:
        manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if manifest.get("format") != MANIFEST_FORMAT:
        return False
    if manifest.get("packages") != wanted_spec():
        return False
    files = manifest.get("installed", {})
    return bool(files) and all(
        (VENDOR / rel).is_file() and (VENDOR / rel).stat().st_size == size
        for rel, size in files.items())


def npm_pack(name: str, version: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        fail("npm not found. The book's pages load MathJax, RequireJS and the "
             "Jupyter widget manager from book/_static/vendor/, which this "
             "script fetches from the npm registry with `npm pack`. Install "
             "Node.js with npm (e.g. `apt-get install npm`) and run "
             "`bash .ci/setup` again.")
    spec = f"{name}@{version}"
    proc = subprocess.run(
        [npm, "pack", spec, "--json", "--pack-destination", str(dest)],
        cwd=dest, capture_output=True, text=True,
        env={**os.environ, "npm_config_fund": "false",
             "npm_config_audit": "false", "npm_config_update_notifier": "false"})
    if proc.returncode != 0:
        fail(f"`npm pack {spec}` failed (exit {proc.returncode}):\n"
             f"{proc.stderr.strip()}")
    try:
        filename = json.loads(proc.stdout)[0]["filename"]
    except (ValueError, LookupError) as exc:
        fail(f"could not read `npm pack {spec} --json` output ({exc}):\n"
             f"{proc.stdout[:500]}")
    # npm >= 7 reports scoped names as "scope-name-x.y.z.tgz"
    path = dest / filename.replace("@", "").replace("/", "-")
    if not path.is_file():
        fail(f"`npm pack {spec}` did not produce {path}")
    return path


def check_integrity(tarball: Path, expected: str) -> None:
    algo, _, digest = expected.partition("-")
    actual = base64.b64encode(
        hashlib.new(algo, tarball.read_bytes()).digest()).decode()
    if actual != digest:
        fail(f"{tarball.name}: {algo} is {actual}, expected {digest} "
             "(pinned in .ci/vendor_js.py)")


def extract(tarball: Path, files: list[tuple[str, str]], stage: Path) -> dict:
    """Copy the selected members of ``tarball`` under ``stage``; return sizes."""
    installed = {}
    with tarfile.open(tarball, "r:gz") as tar:
        members = {m.name.removeprefix("package/"): m
                   for m in tar.getmembers() if m.isfile()}
        for src, dst in files:
            if src.endswith("/"):
                chosen = {n: dst + n[len(src):]
                          for n in members if n.startswith(src)}
            elif "*" in src:
                folder, _, suffix = src.rpartition("*")
                chosen = {n: dst + n[len(folder):] for n in members
                          if n.startswith(folder) and n.endswith(suffix)
                          and "/" not in n[len(folder):]}
            else:
                chosen = {src: dst} if src in members else {}
            if not chosen:
                fail(f"{tarball.name} has no file matching {src!r}")
            for name, rel in sorted(chosen.items()):
                if ".." in Path(rel).parts or Path(rel).is_absolute():
                    fail(f"{tarball.name}: unsafe path {name!r}")
                data = tar.extractfile(members[name]).read()
                out = stage / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
                installed[rel] = len(data)
    return installed


def requirejs_notice(stage: Path) -> dict:
    header = []
    for line in (stage / "requirejs/require.js").read_text().splitlines()[1:]:
        if "*/" in line:
            break
        header.append(line.lstrip(" *"))
    text = ("RequireJS ships no LICENSE file in its npm package. Its licence "
            "is stated in the header of require.js:\n\n"
            + "\n".join(header) + "\n")
    (stage / "requirejs/NOTICE").write_text(text)
    return {"requirejs/NOTICE": len(text.encode())}


def main() -> None:
    if up_to_date():
        print(f"vendor_js.py: {VENDOR.relative_to(ROOT)} up to date ("
              + ", ".join(f"{p['name']} {p['version']}" for p in PACKAGES)
              + ")")
        return
    with tempfile.TemporaryDirectory(prefix="sparse-book-vendor-") as tmp:
        tmp = Path(tmp)
        stage = tmp / "vendor"
        installed: dict[str, int] = {}
        for pkg in PACKAGES:
            tarball = npm_pack(pkg["name"], pkg["version"], tmp)
            check_integrity(tarball, pkg["integrity"])
            installed.update(extract(tarball, pkg["files"], stage))
        installed.update(requirejs_notice(stage))
        if VENDOR.exists():
            shutil.rmtree(VENDOR)
        shutil.copytree(stage, VENDOR)
    # written last: an interrupted run leaves no manifest and is redone
    MANIFEST.write_text(json.dumps(
        {"format": MANIFEST_FORMAT, "packages": wanted_spec(),
         "installed": dict(sorted(installed.items()))}, indent=1) + "\n",
        encoding="utf-8")
    size = sum(installed.values()) / 2**20
    print(f"vendor_js.py: fetched "
          + ", ".join(f"{p['name']} {p['version']}" for p in PACKAGES)
          + f" with npm into {VENDOR.relative_to(ROOT)} "
          f"({len(installed)} files, {size:.1f} MiB)")


if __name__ == "__main__":
    main()
