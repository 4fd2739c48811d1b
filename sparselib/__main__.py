"""``python -m sparselib``: the version and the library's modules.

Each module is imported (so the list holds only importable modules) and
shown with the first line of its docstring.
"""

import importlib
import pkgutil

import sparselib


def modules() -> list[tuple[str, str]]:
    """``(name, purpose)`` of every module of the package, imported."""
    out = []
    for info in pkgutil.iter_modules(sparselib.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"sparselib.{info.name}")
        doc = (mod.__doc__ or "").strip().splitlines()
        out.append((info.name, doc[0] if doc else ""))
    return out


def main() -> None:
    print(f"sparselib {sparselib.__version__}: the library behind "
          "sparse-book")
    for name, purpose in modules():
        print(f"  sparselib.{name:<13} {purpose}")


if __name__ == "__main__":
    main()
