"""The modules of the ablate package and what each imports, read from the source with ast
(nothing imported): for the layering checks (test_layout) and the tests that say who may
read what (test_config)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

# The package's folder in this checkout.
ABLATE_ROOT = REPO / "ablate"


def module_name(path: Path) -> str:
    """The dotted name of a .py file under ABLATE_ROOT (a package's __init__ names the package).

    Args:
        path: the file.
    """
    rel = path.relative_to(ABLATE_ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# Every module of the package: {dotted name: file}.
MODULES = {module_name(p): p for p in sorted(ABLATE_ROOT.rglob("*.py"))}


def imports_of(module: str) -> list[tuple[str, list[str]]]:
    """(imported module inside ablate, names taken from it) for every import statement.

    Args:
        module: a key of MODULES.
    """
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("ablate")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("ablate"):
                continue
            names = [a.name for a in node.names]
            subs = [n for n in names if f"{target}.{n}" in MODULES]  # `from pkg import submodule`
            out += [(f"{target}.{n}", []) for n in subs]
            out.append((target, [n for n in names if n not in subs]))
    return [(t, n) for t, n in out if t in MODULES]
