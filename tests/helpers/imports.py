"""The repository's own import graph, read statically (every ``import``, also those inside
functions), for the tests that keep the house in order: DVC deps, layering, isolation."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from tests.helpers.repo import REPO_ROOT

PACKAGES = ("sdl", "stages", "pipelines")


def module_file(module: str, root: Path = REPO_ROOT) -> Path | None:
    """The repository file of a dotted module name (a package's ``__init__.py``), or None."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path, root: Path = REPO_ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def imported_modules(path: Path) -> frozenset[str]:
    """Dotted names a file imports (repository modules only), with the parent packages that
    Python runs on the way (``import sdl.eval.metrics`` runs ``sdl`` and ``sdl.eval``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if module_file(prefix) is not None:
                    found.add(prefix)
    return frozenset(found)


def direct_imports(path: Path) -> set[str]:
    """The modules a file names in its imports, without the parent packages Python also runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if module_file(a.name)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if module_file(full) else node.module)
    return {m for m in found if module_file(m)}


def closure(files: Iterable[Path]) -> set[Path]:
    """Every repository file that running ``files`` imports, transitively (``files`` included)."""
    todo = [Path(f).resolve() for f in files]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(f for m in imported_modules(path) if (f := module_file(m)) is not None and f not in seen)
    return seen


def repository_modules(package: str = "sdl") -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))
