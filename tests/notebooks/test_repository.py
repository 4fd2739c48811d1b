"""Repository-wide consistency: one repository URL, environments in step."""

import re
import tomllib
from pathlib import Path

import nbformat
import yaml

import booktool

ROOT = booktool.ROOT


def repository_url():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = cfg["repository"]["url"].rstrip("/")
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    return url


def test_every_badge_and_install_points_at_the_repository():
    url = repository_url()
    owner_repo = url.removeprefix("https://github.com/")
    for nb in booktool.chapter_notebooks():
        rel = nb.relative_to(ROOT).as_posix()
        text = "\n".join(c.source for c in
                         nbformat.read(str(nb), as_version=4).cells)
        badges = re.findall(r"colab\.research\.google\.com/github/([^)\s\"]+)",
                            text)
        assert badges, f"{rel}: no Colab badge"
        for b in badges:
            assert b == f"{owner_repo}/blob/main/{rel}", (
                f"{rel}: badge points at {b}")
        for found in re.findall(r"git\+(https://github\.com/[\w./-]+)", text):
            assert found.rstrip("/") == url, f"{rel}: installs from {found}"
        # any other GitHub repository must be a source in the bibliography
        # (a chapter names the file of a source's code it describes)
        cited = set(re.findall(r"https://github\.com/([\w.-]+/[\w.-]+)",
                               (ROOT / "book" / "references.bib").read_text()))
        for found in re.findall(r"https://github\.com/([\w.-]+/[\w.-]+)",
                                text):
            found = found.removesuffix(".git")
            assert found == owner_repo or found in cited, (
                f"{rel}: links to {found}, neither this repository nor a "
                "source in book/references.bib")


def _requirements(spec):
    return {re.sub(r"\s+", "", r) for r in spec}


def test_environment_yml_matches_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    wanted = _requirements(project["dependencies"])
    for extra in ("test", "book"):
        wanted |= _requirements(project["optional-dependencies"][extra])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = _requirements(p for p in pip if not p.startswith("-e"))
    assert have == wanted, (f"only in pyproject: {sorted(wanted - have)}; "
                            f"only in environment.yml: {sorted(have - wanted)}")
    assert "-e ." in pip
    py = next(d for d in env["dependencies"] if isinstance(d, str)
              and d.startswith("python"))
    assert py.split("=")[-1] >= project["requires-python"].lstrip(">=")


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert blocks, "README has no command block"
    first = blocks[0]
    assert "bash .ci/book" in first and "bash .ci/test" in first
    run = (ROOT / ".ci" / "run").read_text()
    assert "bash .ci/test" in run
