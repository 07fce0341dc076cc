"""The job engine knows nothing about virtualization (DESIGN.md §1): no module of
`virtjob.jobs`, nor any module it imports (at the top or inside a function, as
`LocalJobDriver.job_document` imports the wire document), imports a driver, the XML
configuration, the daemon or the CLI.

Read from the source (the import statements), not from `sys.modules`: importing any
``virtjob.*`` module runs the package's ``__init__``, which loads the public API and its
drivers, whatever the engine itself needs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import virtjob

ROOT = Path(virtjob.__file__).parent
FORBIDDEN = ("virtjob.drivers", "virtjob.config", "virtjob.daemon", "virtjob.cli")


def _file(module: str) -> Path | None:
    parts = module.split(".")[1:]
    path = ROOT.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _module_of(path: Path) -> str:
    relative = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The virtjob modules `path` names in its import statements (relative ones resolved)."""
    package = (
        _module_of(path) if path.name == "__init__.py" else _module_of(path).rpartition(".")[0]
    )
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return {name for name in found if name.startswith("virtjob.") and _file(name) is not None}


def _reached_from(start: list[Path]) -> dict[str, str]:
    """Every virtjob module reachable by import statements -> the module that imports it."""
    seen: dict[str, str] = {_module_of(path): "" for path in start}
    todo = list(start)
    while todo:
        path = todo.pop()
        for name in _imports(path):
            if name not in seen:
                seen[name] = _module_of(path)
                found = _file(name)
                assert found is not None
                todo.append(found)
    return seen


def test_the_engine_reaches_no_driver_config_daemon_or_cli_module() -> None:
    reached = _reached_from(sorted((ROOT / "jobs").glob("*.py")))
    assert "virtjob.api.document" in reached, "the walk must follow the engine's lazy import"
    bad = {name: by for name, by in reached.items() if name.startswith(FORBIDDEN)}
    assert bad == {}, f"imported by the engine (module -> who imports it): {bad}"


def test_the_walk_sees_a_forbidden_import() -> None:
    """The check itself can fail: the driver protocol imports the engine, not the reverse."""
    reached = _reached_from([ROOT / "drivers" / "base.py"])
    assert "virtjob.jobs.job" in reached
    assert _reached_from([ROOT / "api" / "objects.py"]).get("virtjob.drivers.base")
