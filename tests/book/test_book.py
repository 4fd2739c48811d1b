"""The book builds strictly from clean, and its pages work offline.

One build per session (module fixture): ``jupyter-book build`` of the
repository into a temporary folder with ``--warningiserror --nitpick
--keep-going``, exactly as ``.ci/book`` does. Then, on the built HTML:

* no page loads a script, stylesheet, font, icon or image from another site;
* the MathJax and widget-manager files the pages load are the vendored ones
  (``book/_static/vendor/``, fetched by ``.ci/vendor_js.py``), present in the
  build, each loaded once, and the widget manager only where there are
  widgets;
* every chapter notebook's Colab links point at the notebook's real path in
  the repository named by ``_config.yml``;
* citations read author-year, "(Olshausen and Field, 1996)"; every entry
  of ``book/references.bib`` is cited in the book and listed in its
  bibliography;
* the API reference shows no raw reST (``` `` ```, ``:class:``...) and no
  docstring inherited from PyTorch, and each of its parameters has a
  description;
* each page has one search field (no second one in a top bar);
* every glossary entry is used in a chapter.

Run: ``.venv/bin/python -m pytest -q tests/book`` (after ``bash .ci/setup``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from html import unescape
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "book" / "_static" / "vendor"
MATHJAX = "_static/vendor/mathjax/tex-mml-chtml.js"
REQUIREJS = "_static/vendor/requirejs/require.js"
WIDGETS_SHIM = "_static/widgets-offline.js"
EMBED_AMD = "_static/vendor/widgets/embed-amd.js"
BUILD_TIMEOUT_S = 300
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# <link rel=...> values that make the browser fetch the target on load
FETCHING_RELS = {"stylesheet", "preload", "modulepreload", "prefetch",
                 "icon", "shortcut", "apple-touch-icon", "manifest",
                 "preconnect", "dns-prefetch", "mask-icon"}


# --------------------------------------------------------------------------
# helpers


class _Page(HTMLParser):
    """What a page loads: scripts, links, images; and its hyperlinks."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []      # src of <script src>
        self.links: list[tuple[set, str]] = []  # (rel, href) of <link>
        self.media: list[str] = []        # src of img/iframe/video/...
        self.anchors: list[str] = []      # href of <a>
        self.inline_types: list[str] = []  # type of inline <script>

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            if a.get("src"):
                self.scripts.append(a["src"])
            else:
                self.inline_types.append(a.get("type") or "")
        elif tag == "link" and a.get("href"):
            self.links.append((set((a.get("rel") or "").lower().split()),
                               a["href"]))
        elif tag in ("img", "iframe", "video", "audio", "source", "embed",
                     "input") and a.get("src"):
            self.media.append(a["src"])
        elif tag == "a" and a.get("href"):
            self.anchors.append(a["href"])


def parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def is_remote(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https") or url.startswith("//")


def resolve(html_root: Path, page: Path, url: str) -> Path:
    """The file a relative URL on ``page`` points at (query, anchor dropped)."""
    path = urlsplit(url).path
    return (page.parent / path).resolve() if not path.startswith("/") \
        else (html_root / path.lstrip("/")).resolve()


def toc_files(toc: dict) -> list[str]:
    """Every document in ``_toc.yml``, in order."""
    out = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                out.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return out


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


# --------------------------------------------------------------------------
# the build


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def chapters() -> list[str]:
    """The toc's documents under chapters/ (paths without suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    docs = [d for d in toc_files(toc) if d.startswith("chapters/")]
    assert docs, "_toc.yml lists no document under chapters/"
    return docs


@pytest.fixture(scope="module")
def vendored() -> dict:
    """The manifest of book/_static/vendor/, checked complete."""
    hint = ("the JavaScript the pages load offline is missing from "
            "book/_static/vendor/: run `bash .ci/setup` (or "
            "`.venv/bin/python .ci/vendor_js.py`), which fetches it with npm")
    manifest_path = VENDOR / "manifest.json"
    if not manifest_path.is_file():
        pytest.fail(f"{manifest_path} not found; {hint}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    missing = [rel for rel in manifest["installed"]
               if not (VENDOR / rel).is_file()]
    if missing:
        pytest.fail(f"{len(missing)} vendored files missing, e.g. "
                    f"{missing[:3]}; {hint}")
    return manifest


@pytest.fixture(scope="module")
def html(tmp_path_factory, vendored) -> Path:
    """Build the book from clean, strictly; return the HTML folder."""
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    assert jb.exists(), f"{jb} not found: run `bash .ci/setup`"
    cmd = [str(jb), "build", str(ROOT), "--path-output", str(out),
           "--warningiserror", "--nitpick", "--keep-going"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # colours
    warnings = [line for line in log.splitlines()
                if re.search(r"\bWARNING\b|\bERROR\b", line)]
    assert proc.returncode == 0 and not warnings, (
        f"book build failed (exit {proc.returncode}, {elapsed:.0f} s); "
        f"warnings/errors:\n" + "\n".join(warnings[:40])
        + "\n--- end of log ---\n" + log[-3000:])
    root = out / "_build" / "html"
    assert (root / "index.html").is_file(), f"no index.html in {root}"
    print(f"book built in {elapsed:.1f} s")
    return root


@pytest.fixture(scope="module")
def pages(html) -> list[Path]:
    # the pages, not the theme's template fragments copied into _static/
    found = sorted(p for p in html.rglob("*.html")
                   if p.relative_to(html).parts[0] not in ("_static",
                                                           "_sources"))
    assert found
    return found


# --------------------------------------------------------------------------
# (a) nothing is fetched from another site


def test_no_page_loads_anything_from_another_site(html, pages):
    offenders = []
    for page in pages:
        p = parse(page)
        rel = page.relative_to(html)
        offenders += [f"{rel}: <script src={u}>" for u in p.scripts
                      if is_remote(u)]
        offenders += [f"{rel}: <link rel={' '.join(sorted(r))} href={u}>"
                      for r, u in p.links if r & FETCHING_RELS and is_remote(u)]
        offenders += [f"{rel}: <img/iframe src={u}>" for u in p.media
                      if is_remote(u)]
    assert not offenders, (
        "pages load files from other sites, so they break offline; vendor "
        "the file under book/_static/ (for a badge image, a local copy) or "
        "switch the feature off:\n" + "\n".join(offenders[:30]))


def test_stylesheets_import_nothing_from_another_site(html, pages):
    sheets = set()
    for page in pages:
        for rels, href in parse(page).links:
            if "stylesheet" in rels and not is_remote(href):
                sheets.add(resolve(html, page, href))
    assert sheets
    remote = re.compile(r"""(@import\s+|url\(\s*)["']?(https?:)?//""")
    bad = [str(s.relative_to(html)) for s in sheets
           if s.is_file() and remote.search(
               re.sub(r"/\*.*?\*/", "", s.read_text(encoding="utf-8",
                                                     errors="replace"),
                      flags=re.S))]
    assert not bad, f"stylesheets load fonts or CSS from other sites: {bad}"


# --------------------------------------------------------------------------
# (b) the vendored MathJax and widget manager are what the pages load


def test_every_local_script_and_stylesheet_exists(html, pages):
    missing = []
    for page in pages:
        p = parse(page)
        urls = p.scripts + [h for r, h in p.links if r & FETCHING_RELS]
        for url in urls:
            if not is_remote(url) and not resolve(html, page, url).is_file():
                missing.append(f"{page.relative_to(html)}: {url}")
    assert not missing, "pages load files missing from the build:\n" + \
        "\n".join(missing[:30])


def test_no_script_loaded_twice(html, pages):
    twice = []
    for page in pages:
        srcs = [urlsplit(s).path for s in parse(page).scripts]
        twice += [f"{page.relative_to(html)}: {s}" for s in set(srcs)
                  if srcs.count(s) > 1]
    assert not twice, "scripts loaded twice on a page:\n" + "\n".join(twice)


def _loaded(html: Path, page: Path) -> list[str]:
    """Scripts of ``page`` as paths relative to the HTML root."""
    out = []
    for src in parse(page).scripts:
        if not is_remote(src):
            target = resolve(html, page, src)
            try:
                out.append(target.relative_to(html.resolve()).as_posix())
            except ValueError:
                out.append(src)
    return out


def test_mathjax_is_the_vendored_copy_on_every_page_with_maths(html, pages):
    with_maths = [p for p in pages
                  if 'class="math' in p.read_text(encoding="utf-8")]
    assert with_maths, "no page has maths (the notation page should)"
    for page in with_maths:
        scripts = _loaded(html, page)
        assert scripts.count(MATHJAX) == 1, (
            f"{page.relative_to(html)} has maths but does not load "
            f"{MATHJAX} exactly once; it loads {scripts}")
    # what MathJax fetches at run time: fonts, TeX extensions (\boldsymbol)
    for rel in ("output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
                "input/tex/extensions/boldsymbol.js",
                "input/tex/extensions/ams.js", "ui/menu.js"):
        assert (html / "_static/vendor/mathjax" / rel).is_file(), rel


def test_widget_pages_load_the_vendored_manager(html, pages):
    for page in pages:
        has_state = WIDGET_STATE in parse(page).inline_types
        scripts = _loaded(html, page)
        ours = [s for s in scripts if s in (REQUIREJS, WIDGETS_SHIM,
                                            EMBED_AMD)]
        if has_state:
            assert ours == [REQUIREJS, WIDGETS_SHIM, EMBED_AMD], (
                f"{page.relative_to(html)} has widgets; it must load "
                f"require.js, widgets-offline.js, embed-amd.js in that "
                f"order, once each; it loads {scripts}")
        else:
            assert not ours, (f"{page.relative_to(html)} has no widgets but "
                              f"loads {ours}")


def test_vendored_files_are_all_in_the_build(html, vendored):
    missing = [rel for rel in vendored["installed"]
               if not (html / "_static/vendor" / rel).is_file()]
    assert not missing, f"not copied into the build: {missing[:10]}"
    # embed-amd.js loads its Font Awesome fonts from its own folder
    embed = (html / EMBED_AMD).read_text(encoding="utf-8")
    fonts = set(re.findall(r'"([0-9a-f]{20}\.(?:woff2?|ttf|eot|svg))"',
                           embed))
    assert fonts, "no font file names found in embed-amd.js"
    absent = sorted(f for f in fonts
                    if not (html / EMBED_AMD).with_name(f).is_file())
    assert not absent, f"fonts of embed-amd.js not vendored: {absent}"


# --------------------------------------------------------------------------
# (c) Colab links


def _repository(config: dict) -> tuple[str, str, str, str]:
    repo = config["repository"]
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?",
                     repo["url"])
    assert m, f"_config.yml repository.url is not a GitHub URL: {repo['url']}"
    return (m.group(1), m.group(2), repo.get("branch", "main"),
            repo.get("path_to_book", "") or "")


def test_colab_links_point_at_the_notebooks(html, config, chapters):
    owner, name, branch, book_path = _repository(config)
    notebooks = [c for c in chapters if (ROOT / f"{c}.ipynb").is_file()]
    assert notebooks, f"no chapter notebook among {chapters}"
    assert config["launch_buttons"]["colab_url"] == \
        "https://colab.research.google.com"
    for doc in notebooks:
        path = str(PurePosixPath(book_path) / f"{doc}.ipynb")
        expected = ("https://colab.research.google.com/github/"
                    f"{owner}/{name}/blob/{branch}/{path}")
        page = html / f"{doc}.html"
        links = [a for a in parse(page).anchors
                 if "colab.research.google.com" in a]
        assert expected in links, (
            f"{page.relative_to(html)}: no launch link to {expected}; "
            f"Colab links found: {links}")
        wrong = [a for a in links if a != expected]
        assert not wrong, (
            f"{page.relative_to(html)}: Colab links that do not match "
            f"_config.yml's repository ({owner}/{name}, branch {branch}) and "
            f"the notebook's path: {wrong}")


# --------------------------------------------------------------------------
# (d) citations


def test_citations_read_author_year(html, pages):
    intro = text_of((html / "book/intro.html").read_text(encoding="utf-8"))
    assert "(Olshausen and Field, 1996)" in intro
    assert "(Barlow, 1972; Földiák, 2002)" in intro
    bad = []
    for page in pages:
        source = page.read_text(encoding="utf-8")
        for m in re.finditer(
                r'<span class="bibtex-citation"[^>]*>(.*?)</span>', source,
                re.S):
            cite = text_of(m.group(1)).strip()
            # a year, with a letter where one author has two works in it;
            # "n.d." for a work whose date the copy used does not give
            if not re.search(r"(\b(1[89]|20)\d\d[a-z]?|\bn\.d\.)\)?$",
                             cite) or \
                    re.fullmatch(r"\[[\d, ]+\]", cite):
                bad.append(f"{page.relative_to(html)}: {cite}")
    assert not bad, "citations not in author-year form:\n" + "\n".join(bad)
    biblio = text_of((html / "book/bibliography.html").read_text(
        encoding="utf-8"))
    assert "[Olshausen and Field, 1996]" in biblio



BIB = ROOT / "book" / "references.bib"


def bib_keys() -> list[str]:
    return re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(encoding="utf-8"),
                      re.M)


def book_markdown() -> dict[str, str]:
    """The Markdown of every page: book/*.md, chapters' index.md, and the
    Markdown cells of the chapter notebooks (path -> text)."""
    out = {}
    for path in sorted((ROOT / "book").glob("*.md")) + sorted(
            (ROOT / "chapters").glob("*/*.md")):
        out[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "chapters").glob("*/*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        out[str(path.relative_to(ROOT))] = "\n".join(
            "".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "markdown")
    return out


def test_every_bibliography_entry_is_cited():
    cited = set()
    for text in book_markdown().values():
        for m in re.finditer(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            cited |= {k.strip() for k in m.group(1).split(",")}
    keys = bib_keys()
    unknown = sorted(cited - set(keys))
    assert not unknown, f"cited but not in {BIB.name}: {unknown}"
    uncited = [k for k in keys if k not in cited]
    assert not uncited, (
        f"entries of book/references.bib that no page or chapter cites "
        f"with {{cite}} (cite them where the text uses them, or remove "
        f"them): {uncited}")


def test_bibliography_lists_every_entry(html):
    page = (html / "book/bibliography.html").read_text(encoding="utf-8")
    n = len(re.findall(r'<div class="citation"', page))
    assert n == len(bib_keys()), (
        f"the bibliography page lists {n} entries; "
        f"{BIB.name} has {len(bib_keys())}")


# --------------------------------------------------------------------------
# (e) the API reference reads cleanly


def test_api_page_shows_no_raw_markup(html):
    """Prose after a Parameters/Returns section, or a parameter written
    ``name : description`` on one line, is garbled by napoleon into
    bullets that show reST literally."""
    source = (html / "book/api.html").read_text(encoding="utf-8")
    raw = re.compile(r"``|:(?:class|func|meth|mod|data|attr|obj|exc):`?")
    found: dict[str, str] = {}
    for m in raw.finditer(source):
        where = source.rfind('id="sparselib', 0, m.start())
        name = source[where + 4:source.find('"', where + 4)]
        found.setdefault(name, unescape(text_of(
            source[where:m.end()]))[-120:].strip())
    assert not found, (
        "the API page shows raw reST (in the docstrings named here, prose "
        "belongs before the Parameters section, or in a Notes section):\n"
        + "\n".join(f"{k}: ...{v}..." for k, v in found.items()))
    text = unescape(text_of(source))
    assert "Return the extra representation" not in text, (
        "PyTorch's extra_repr docstring is shown (autodoc inherits it)")


def test_api_parameters_have_descriptions(html):
    """A parameter written ``name : description`` on one line renders as
    ``name (description)`` with no description after the dash."""
    source = (html / "book/api.html").read_text(encoding="utf-8")
    bad = []
    for sect in re.finditer(
            r'<dt class="field-\w+">Parameters<span class="colon">:</span>'
            r"</dt>\s*<dd[^>]*>(.*?)</dd>", source, re.S):
        items = re.findall(r"<li><p>(.*?)</p>", sect.group(1), re.S) or \
            re.findall(r"<p>(.*?)</p>", sect.group(1), re.S)[:1]
        where = source.rfind('id="sparselib', 0, sect.start())
        name = source[where + 4:source.find('"', where + 4)]
        for item in items:
            if "\u2013" not in unescape(item):  # the dash before the text
                bad.append(f"{name}: {unescape(text_of(item))[:70]}")
    assert not bad, (
        "parameters without a description (write `name : type` and the "
        "description indented on the next line):\n" + "\n".join(bad))


# --------------------------------------------------------------------------
# (f) one search field per page


def test_one_search_field_per_page(html, pages):
    bad = []
    for page in pages:
        source = page.read_text(encoding="utf-8")
        fields = source.count('class="btn search-button-field')
        if fields > 1 or "navbar-persistent" in source:
            bad.append(f"{page.relative_to(html)}: {fields} search fields")
    assert not bad, (
        "pages with a second search field in a top bar (see "
        "book/_ext/theme_fixes.py):\n" + "\n".join(bad[:10]))


def test_links_are_not_shortened(html):
    page = (html / "book/bibliography.html").read_text(encoding="utf-8")
    assert ">https://github.com/numenta/nupic.torch<" in page


# --------------------------------------------------------------------------
# (g) the glossary


def glossary_terms() -> list[list[str]]:
    """Each glossary entry as its list of names (the term and aliases)."""
    text = (ROOT / "book/glossary.md").read_text(encoding="utf-8")
    body = text.split("```{glossary}", 1)[1].rsplit("```", 1)[0]
    entries, names = [], []
    for line in body.splitlines():
        if line and not line[0].isspace():
            names.append(line.strip())
        elif line.strip() and names:
            entries.append(names)
            names = []
    return entries


def test_every_glossary_entry_is_used_in_a_chapter():
    chapters = [t for p, t in book_markdown().items()
                if p.startswith("chapters/")]
    unused = []
    for names in glossary_terms():
        pattern = re.compile(
            "|".join(r"\b" + re.escape(n) + r"(?:s|es)?\b" for n in names),
            re.I)
        if not any(pattern.search(t) for t in chapters):
            unused.append(" / ".join(names))
    assert not unused, (
        "glossary entries no chapter uses (use the term, linked with "
        "{term} at its first use in a chapter):\n" + "\n".join(unused))
