"""Each docstring's chapter tag names the chapter that first uses it.

A public function or class of sparselib says which chapter introduces it
(house style) -- by title, ``Chapter "Sparse autoencoders".``, since
numbers shift when parts move. The chapter that introduces a definition is
derived from the notebooks, in book order: the first chapter whose cells
name it, else the first whose code reaches it through the library (see
``booktool.reached``). A module's ``Introduced in the chapter "..."`` is the
first chapter that names anything of it. A definition no chapter uses
carries no chapter tag.
"""

import importlib
import inspect
import re

import nbformat
import pytest

import booktool
import sparselib

TAG = re.compile(r"\b[Cc]hapters?\s+(?:\(\s*)?(\"[^\"]+\"|\d+(?:\.\d+)*)")
MODULE_TAG = re.compile(r"Introduced in (?:the )?[Cc]hapter\s+(?:\(\s*)?"
                        r"(\"[^\"]+\"|\d+(?:\.\d+)*)")


def chapter_titles():
    """Chapter folder -> its title (first heading of its index.md)."""
    out = {}
    for folder in sorted((booktool.ROOT / "chapters").iterdir()):
        index = folder / "index.md"
        if index.is_file():
            out[folder.name] = index.read_text().splitlines()[0].lstrip(
                "# ").strip()
    return out


@pytest.fixture(scope="module")
def uses():
    """``(direct, reached)``: definition key -> first chapter folder."""
    index = booktool.LibraryIndex.build()
    direct, reach = {}, {}
    for path in booktool.chapter_notebooks():
        nb = nbformat.read(str(path), as_version=4)
        roots = booktool.notebook_roots(nb, index)
        for key in sorted(roots):
            direct.setdefault(key, path.parent.name)
        for key in sorted(index.closure(roots)):
            reach.setdefault(key, path.parent.name)
    return direct, reach


def tags(doc, pattern=TAG):
    flat = " ".join((doc or "").split())
    return [t.strip('"') for t in pattern.findall(flat)]


def public_definitions():
    for name in sorted(m for m in sparselib.__all__
                       if inspect.ismodule(getattr(sparselib, m))):
        mod = importlib.import_module(f"sparselib.{name}")
        for attr in getattr(mod, "__all__", []):
            obj = getattr(mod, attr)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and \
                    getattr(obj, "__module__", "") == mod.__name__:
                yield name, attr, obj


def test_definition_tags_name_the_chapter_that_first_uses_them(uses):
    direct, reach = uses
    titles = chapter_titles()
    wrong = []
    for mod, attr, obj in public_definitions():
        key = f"{mod}.{attr}"
        first = direct.get(key) or reach.get(key)
        want = titles.get(first)
        found = tags(inspect.getdoc(obj))
        if want is None and found:
            wrong.append(f"{key}: tagged {found}, but no chapter uses it")
        elif want is not None and found and set(found) != {want}:
            wrong.append(f"{key}: tagged {found}, first used in {want!r}")
        elif key in direct and not found:
            wrong.append(f"{key}: no chapter tag; first used in {want!r}")
    assert not wrong, "\n".join(wrong)


def test_module_tags_name_the_chapter_that_first_uses_them(uses):
    direct, _ = uses
    titles = chapter_titles()
    order = list(titles)
    wrong = []
    for name in sorted(m for m in sparselib.__all__
                       if inspect.ismodule(getattr(sparselib, m))):
        doc = importlib.import_module(f"sparselib.{name}").__doc__
        chapters = [c for k, c in direct.items()
                    if k.split(".")[0] == name]
        want = titles[min(chapters, key=order.index)] if chapters else None
        found = tags(doc, MODULE_TAG)
        if found != ([want] if want else []):
            wrong.append(f"sparselib.{name}: says introduced in {found}, "
                         f"first used in {want!r}")
    assert not wrong, "\n".join(wrong)
