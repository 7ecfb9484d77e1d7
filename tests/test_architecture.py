"""The package's layers, read from the imports with ``ast`` (no import is executed).

Imports go one way (issue 11, docs/architecture in CONTRIBUTING.md):

* **L0** ``optcheck._core`` (errors, validation, arrays, the tree walk, course key names, the
  message builder): imports nothing of optcheck outside itself (``optcheck._tree`` is a shim of
  ``optcheck._core.tree`` kept for the branches in flight, see ``TREE_SHIM_USERS``);
* **L1** ``optcheck.rules`` (with ``rules/naming.py``);
* **L2** the checks: ``optcheck.invariants``, ``optcheck._compare``, ``optcheck._trajectory``,
  ``optcheck.strategies``;
* **L3** ``optcheck.diagnose``;
* **L4** the front ends: ``optcheck.guard``, ``optcheck.audit``, ``optcheck.testing``,
  ``optcheck.pytest_plugin``;
* **L5** ``optcheck.cli``, ``optcheck.__main__`` and the package's ``__init__`` (lazy re-exports);
* ``optcheck.gradcheck`` stands beside the rest and imports L0 only.

A module may import from its own layer or below, never above; no import cycle between
modules; no private name (``_x``) imported from another package. Every import counts,
including those inside functions: a lazy import still couples the two modules.

An exception that cannot be fixed at once goes in an allow-list below, with the reason and
the issue that removes it; a test fails when an entry is no longer needed, so the lists
only shrink.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "optcheck"

LAYERS: dict[str, int] = {
    "optcheck._core": 0,
    "optcheck._tree": 0,
    "optcheck.rules": 1,
    "optcheck.invariants": 2,
    "optcheck._compare": 2,
    "optcheck._trajectory": 2,
    "optcheck.strategies": 2,
    "optcheck.diagnose": 3,
    "optcheck.guard": 4,
    "optcheck.audit": 4,
    "optcheck.testing": 4,
    "optcheck.pytest_plugin": 4,
    "optcheck.cli": 5,
    "optcheck.__main__": 5,
    "optcheck": 5,
}
"""The layer of each module, by the longest prefix that names it."""

BESIDE = {"optcheck.gradcheck": 0}
"""Packages that stand beside the layers: they may import only up to the given layer (and themselves)."""

ALLOWED_CYCLES: dict[frozenset[str], str] = {
    frozenset({"optcheck.audit.engine", "optcheck.audit.text", "optcheck.audit.report"}): (
        "text.reproduction reads the Auditor's internals; issue 11's Auditor breakup renders the "
        "reproduction from a frozen spec instead"
    ),
}
"""Import cycles not fixed yet (each with its reason); must shrink to nothing."""

ALLOWED_PRIVATE: dict[tuple[str, str, str], str] = {}

TREE_SHIM_USERS = frozenset(
    {
        "optcheck.audit.engine",
        "optcheck.diagnose._mutants",
        "optcheck.diagnose._plot",
        "optcheck.diagnose._search",
        "optcheck.gradcheck._api",
        "optcheck.gradcheck._engine",
        "optcheck.gradcheck._layer",
        "optcheck.gradcheck._report",
        "optcheck.gradcheck._space",
        "optcheck.gradcheck._sweep",
        "optcheck.gradcheck._torch",
        "optcheck.rules._base",
    }
)
"""Modules still importing ``optcheck._tree`` (moved to ``optcheck._core.tree``); must shrink to nothing."""
"""(importer, module, private name) imports across packages not fixed yet; must shrink to nothing."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import of optcheck in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target != "optcheck" and not target.startswith("optcheck."):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    out.append((sub, None, node.lineno))  # a submodule: "from . import naming"
                else:
                    out.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "optcheck" or alias.name.startswith("optcheck."):
                    out.append((alias.name, None, node.lineno))
    return out


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> tuple[str, int]:
    """(the prefix that places ``module``, its layer)."""
    table = {**LAYERS, **BESIDE}
    for cut in range(module.count(".") + 1, 0, -1):
        prefix = ".".join(module.split(".")[:cut])
        if prefix in table:
            return prefix, table[prefix]
    raise AssertionError(f"{module} is in no layer; add it to LAYERS in tests/test_architecture.py")


def package_of(module: str) -> str:
    """The package a module belongs to for the private-name rule: ``optcheck.<first part>``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_upward_import() -> None:
    bad = []
    for module, imports in IMPORTS.items():
        here, level = layer_of(module)
        for target, _, line in imports:
            there, target_level = layer_of(target)
            if there == here:
                continue
            if here in BESIDE:
                ok = target_level <= BESIDE[here] and there not in BESIDE
            else:
                ok = there not in BESIDE or here in ("optcheck", "optcheck.cli")
                ok = ok and target_level <= level
            if not ok:
                bad.append(
                    f"{MODULES[module].relative_to(ROOT)}:{line}: {module} (L{level}) imports {target} (L{target_level})"
                )
    assert not bad, "upward imports:\n" + "\n".join(bad)


def _cycles() -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph = {m: {t for t, _, _ in imps if t in MODULES and t != m} for m, imps in IMPORTS.items()}
    # importing a submodule runs its package's __init__ first, but that is no dependency of the
    # importer on the package's other modules: only the edges written in the code count
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle() -> None:
    cycles = _cycles()
    unexpected = [sorted(c) for c in cycles if c not in ALLOWED_CYCLES]
    assert not unexpected, f"import cycles: {unexpected}"


def test_the_allowed_cycles_still_exist() -> None:
    """An allow-list entry that is fixed must go (the list only shrinks)."""
    cycles = set(_cycles())
    stale = [sorted(c) for c in ALLOWED_CYCLES if c not in cycles]
    assert not stale, f"these cycles are gone; remove them from ALLOWED_CYCLES: {stale}"


def test_no_private_name_imported_across_packages() -> None:
    bad = []
    seen = set()
    for module, imports in IMPORTS.items():
        for target, name, line in imports:
            if name is None or not name.startswith("_") or name.startswith("__"):
                continue
            if package_of(module) == package_of(target) or target.startswith("optcheck._core"):
                continue
            seen.add((module, target, name))
            if (module, target, name) not in ALLOWED_PRIVATE:
                bad.append(f"{MODULES[module].relative_to(ROOT)}:{line}: {module} imports {target}.{name}")
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)
    stale = sorted(set(ALLOWED_PRIVATE) - seen)
    assert not stale, f"fixed; remove from ALLOWED_PRIVATE: {stale}"


def test_core_imports_nothing_above_it() -> None:
    for module, imports in IMPORTS.items():
        if module.startswith("optcheck._core"):
            assert all(t.startswith("optcheck._core") for t, _, _ in imports), (module, imports)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..rules import naming\n", [("optcheck.rules.naming", None)]),
        ("from ..invariants import _Leaf\n", [("optcheck.invariants", "_Leaf")]),
        ("def f():\n    from optcheck.audit import engine\n", [("optcheck.audit.engine", None)]),
        ("import numpy as np\nimport optcheck.rules\n", [("optcheck.rules", None)]),
    ],
)
def test_the_import_reader(tmp_path: Path, source: str, expected: list[tuple[str, str | None]]) -> None:
    """The reader resolves relative imports, sees imports inside functions and ignores other packages."""
    path = PACKAGE / "guard" / "_guard.py"  # the importer's place decides what ".." means
    fake = tmp_path / "_guard.py"
    fake.write_text(source, encoding="utf-8")
    got = [(t, n) for t, n, _ in _imports("optcheck.guard._guard", fake)]
    assert path.exists() and got == expected


def test_a_cycle_is_found() -> None:
    graph_before = dict(IMPORTS)
    try:
        IMPORTS["optcheck._tree"] = [*IMPORTS["optcheck._tree"], ("optcheck.rules._base", None, 1)]
        assert frozenset({"optcheck._tree", "optcheck.rules._base"}) in _cycles()
    finally:
        IMPORTS.clear()
        IMPORTS.update(graph_before)


def test_collection_does_not_need_torch() -> None:
    """Test modules that use torch import it with ``pytest.importorskip``: no module imports it at the top."""
    bad = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n == "torch" or n.startswith("torch.") for n in names):
                bad.append(f"{path.name}:{node.lineno}")
    assert not bad, f"import torch at the top of a test module (use pytest.importorskip): {bad}"


def test_the_tree_shim_only_loses_users() -> None:
    users = {m for m, imports in IMPORTS.items() if any(t == "optcheck._tree" for t, _, _ in imports)}
    users.discard("optcheck._tree")
    assert users <= TREE_SHIM_USERS, (
        f"import optcheck._core.tree, not the shim: {sorted(users - TREE_SHIM_USERS)}"
    )
    stale = sorted(TREE_SHIM_USERS - users)
    assert not stale, f"these modules moved to optcheck._core.tree; remove them from TREE_SHIM_USERS: {stale}"


def test_layer_counts_are_plausible() -> None:
    per_layer = collections.Counter(layer_of(m)[1] for m in MODULES)
    assert per_layer[0] >= 3 and per_layer[1] >= 10 and per_layer[4] >= 5
