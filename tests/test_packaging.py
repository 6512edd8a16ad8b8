"""It installs like a library: what the package imports is declared, and what it reads
ships inside it. (The wheel itself is built and run from a venv of its own by
`.ci/wheel-check`, which `.ci/run` calls.)"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from tests.helpers import REPO as ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Imported under another name than the distribution's, and not in packages_distributions()
# on every platform: none today; a new one belongs here with its reason.
_OPTIONAL = {"s3"}  # extras whose imports must be guarded with a message naming the extra


def _dist_name(req: str) -> str:
    return re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0].lower().replace("_", "-")


def _third_party_imports() -> dict[str, set[Path]]:
    """Top-level module name -> the files of ablate/ that import it (module level or not)."""
    found: dict[str, set[Path]] = {}
    for p in (ROOT / "ablate").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for n in names:
                top = n.split(".")[0]
                if top != "ablate" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(p.relative_to(ROOT))
    return found


def test_every_imported_third_party_package_is_declared():
    declared = {_dist_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = {name: {_dist_name(r) for r in reqs} for name, reqs in PYPROJECT["project"]["optional-dependencies"].items()}
    by_module = metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"torch", "ray", "PIL", "rich", "boto3"} <= set(imports), "the import scan is wrong"
    missing = []
    for module, files in sorted(imports.items()):
        dists = {d.lower().replace("_", "-") for d in by_module.get(module, [])}
        assert dists, f"{module} (imported by {sorted(map(str, files))}) is not installed here"
        if dists & declared:
            continue
        in_extra = [e for e in _OPTIONAL if dists & extras.get(e, set())]
        if not in_extra:
            missing.append(f"{module} ({'/'.join(sorted(dists))}) imported by {sorted(map(str, files))}")
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(missing)


@pytest.mark.bad_input
def test_an_s3_experiment_without_boto3_says_which_extra_to_install(monkeypatch):
    """boto3/botocore are the `s3` extra, not a dependency: without them an s3:// lock
    stops with `pip install 'ablate[s3]'`, not a bare ModuleNotFoundError."""
    from ablate.lock import experiment_lock
    from ablate.storage import StorageError

    extra = {_dist_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["s3"]}
    assert {"boto3", "botocore"} <= extra
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without the extra looks like
    with pytest.raises(StorageError, match=re.escape("pip install 'ablate[s3]'")), \
            experiment_lock("s3://bucket/exp", "ablate launch"):
        pass


def test_shipped_search_spaces_are_package_data_read_through_importlib_resources():
    from ablate.config import find_grid, shipped_grids

    grids = shipped_grids()
    assert {"smoke", "losses", "edges", "pixel"} <= set(grids)
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert "*.yaml" in data["ablate.search_spaces"]
    for name, path in grids.items():
        assert path.parent == ROOT / "ablate" / "search_spaces", path
        assert find_grid(name).samefile(path)
    # the design card's top-level search_spaces/ is the same folder
    assert (ROOT / "search_spaces").resolve() == (ROOT / "ablate" / "search_spaces").resolve()
