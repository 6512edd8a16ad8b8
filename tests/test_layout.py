"""The package's shape, checked: no import circles inside ablate/, no private name
imported across packages, and modules small enough to read (the exceptions named).

Imports are read from the source (module level and inside functions alike: a late
import that closes a circle is still a circle in the design)."""

from __future__ import annotations

import pytest

from tests.helpers.ablate_modules import ABLATE_ROOT, MODULES, imports_of

MAX_LINES = 450
# Pure maths, kept whole so each definition sits beside its reference notes:
# morphology (the vessel features and map agreement measures).
LONG_MODULES = {"ablate.evaluate.morphology"}


def _package(module: str) -> str:
    """ablate.X for ablate.X.y; ablate.X for a top-level module ablate.X."""
    return ".".join(module.split(".")[:2])


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for m in MODULES:
        edges = set()
        # m's own packages ran their __init__ before m itself; they are no edge of m's
        own = {".".join(m.split(".")[:i]) for i in range(1, len(m.split(".")) + 1)}
        for target, names in imports_of(m):
            # importing a.b.c runs a/__init__ and a/b/__init__ first
            parts = target.split(".")
            edges |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} & set(MODULES) - own
            if target in own and target != m and names:  # `from ablate.losses import LOSSES` inside losses/
                edges.add(target)
        graph[m] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_circle_inside_ablate():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_check_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_name_imported_across_packages():
    bad = []
    for m in MODULES:
        for target, names in imports_of(m):
            if _package(target) == _package(m):
                continue
            bad += [f"{m} imports {n} from {target}" for n in names if n.startswith("_") and not n.startswith("__")]
            # a private module is private too
            bad += [f"{m} imports module {target}" for part in target.split(".") if part.startswith("_")
                    and not part.startswith("__")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small(module):
    n = len(MODULES[module].read_text().splitlines())
    if module in LONG_MODULES:
        return
    assert n <= MAX_LINES, f"{MODULES[module]}: {n} lines (> {MAX_LINES}); split it or justify it in LONG_MODULES"


def test_long_modules_are_still_long():
    # an exception that no longer applies is removed from the list
    for m in LONG_MODULES:
        assert len(MODULES[m].read_text().splitlines()) > MAX_LINES, m


def test_paper_citations_point_to_sections_that_exist():
    """Comments cite `docs/paper.md §N`; that page is in the repository and has §N."""
    import re

    paper = ABLATE_ROOT.parent / "docs" / "paper.md"
    sections = set(re.findall(r"^## §(\d+)", paper.read_text(), re.MULTILINE))
    cited = {}
    for p in [*ABLATE_ROOT.rglob("*.py"), *(ABLATE_ROOT / "search_spaces").glob("*.yaml")]:
        text = p.read_text()
        assert "PAPER.md" not in text, f"{p} cites PAPER.md, which is not in the repository (use docs/paper.md)"
        for first, last in re.findall(r"docs/paper\.md §(\d+)(?:-(\d+))?", text):
            for n in range(int(first), int(last or first) + 1):
                cited.setdefault(str(n), p)
    assert cited, "no citation found: the pattern is wrong"
    missing = {n: str(p) for n, p in cited.items() if n not in sections}
    assert not missing, f"cited sections missing from docs/paper.md: {missing}"


def test_the_command_line_loads_without_torch_or_ray():
    """`ablate --help` (and every command's parsing) stays fast: the heavy packages load
    inside the commands that need them, and the packages' public faces load lazily."""
    import subprocess
    import sys

    code = "import sys; from ablate.cli import app; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- layers only point down
# The README's flow, bottom to top: a package may import a package of a lower rank (and
# itself). Leaves (rank 0) may import other leaves (the circle check above keeps them
# acyclic). train, fm and segmenter are separate programs on one rank: none imports another.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("ablate", "ablate.errors", "ablate.logs", "ablate.specs", "ablate.io", "ablate.storage", "ablate.lock",
     "ablate.schemas", "ablate.experiment_layout", "ablate.checks", "ablate.edge_filters", "ablate.registry", "ablate.yaml_load",
     "ablate.cache", "ablate.metric_info", "ablate.weights", "ablate.ui", "ablate.search_spaces", "ablate.spec_reader",
     "ablate.tuning"),
    ("ablate.runtime",),
    ("ablate.data",),
    ("ablate.models",),
    ("ablate.backbones",),
    ("ablate.losses",),
    ("ablate.prior",),
    ("ablate.train", "ablate.fm", "ablate.segmenter"),
    ("ablate.evaluate",),
    ("ablate.report",),
    ("ablate.config_tune",),  # `tune:` of a search space, read by ablate.config
    ("ablate.config",),
    ("ablate.pipeline",),
    ("ablate.cli",),
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """`a imports b` for every edge that goes up the layers or across a rank above the leaves."""
    bad = []
    for m, targets in sorted(graph.items()):
        pm = _package(m)
        for t in sorted(targets):
            pt = _package(t)
            if pt == pm or pt == "ablate":  # own package; the root package's __init__
                continue
            if RANK[pt] > RANK[pm] or (RANK[pt] == RANK[pm] and RANK[pm] > 0):
                bad.append(f"{m} (rank {RANK[pm]}) imports {t} (rank {RANK[pt]})")
    return bad


def test_every_package_has_a_layer():
    assert not sorted({_package(m) for m in MODULES} - set(RANK)), "add the package to LAYERS"


def test_imports_only_point_down_the_layers():
    bad = upward_imports(import_graph())
    assert not bad, "\n".join(bad)


def test_the_layer_check_finds_an_upward_import():
    graph = import_graph()
    planted = dict(graph)
    planted["ablate.data.feed"] = graph["ablate.data.feed"] | {"ablate.train.loop"}  # a stage reaching up
    planted["ablate.fm.pretrain"] = graph["ablate.fm.pretrain"] | {"ablate.segmenter.unet"}  # a sibling program
    bad = [b for b in upward_imports(planted) if b not in upward_imports(graph)]
    assert bad == ["ablate.data.feed (rank 2) imports ablate.train.loop (rank 7)",
                   "ablate.fm.pretrain (rank 7) imports ablate.segmenter.unet (rank 7)"]
