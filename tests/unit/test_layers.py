"""The layers of README's "How it works", enforced on the import graph of the package.

Every import counts (module level and inside functions) except those under
``if TYPE_CHECKING:``; a violation names the module, the line and the import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_perfgate"
NAME = "pytest_perfgate"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (absolute)
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports_of(path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module, skip = _module_name(path), _type_checking_lines(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node, path.name == "__init__.py")
            yield Import(module, target, node.lineno)
            for alias in node.names:  # "from pkg import submodule"
                if (PACKAGE.parent / Path(*f"{target}.{alias.name}".split("."))).exists() or (
                    PACKAGE.parent / Path(*f"{target}.{alias.name}".split("."))
                ).with_suffix(".py").exists():
                    yield Import(module, f"{target}.{alias.name}", node.lineno)


ALL_IMPORTS = [i for path in sorted(PACKAGE.rglob("*.py")) for i in _imports_of(path)]


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{i.module}:{i.line} imports {i.target}"
        for i in ALL_IMPORTS
        if _in(i.module, layer) and _in(i.target, *forbidden)
    ]


HEAVY = ("pytest", "_pytest", "httpx", "locust", "gevent", "torch", "fastapi", "yaml")
IO = ("subprocess", "socket", "urllib", "http", "shutil", "tempfile", "threading", "psutil")
OUTER = tuple(
    f"{NAME}.{m}"
    for m in ("config", "options", "gate", "load", "target", "results", "plugin", "cli")
)


def test_the_core_imports_no_pytest_httpx_locust_yaml_nor_io_modules() -> None:
    assert _violations(f"{NAME}.core", (*HEAVY, *IO)) == []


def test_the_core_imports_nothing_of_the_outer_layers() -> None:
    assert _violations(f"{NAME}.core", OUTER) == []


_IO_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "mkdir", "unlink"}


def test_the_core_does_no_file_io() -> None:
    found = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in _IO_CALLS:
                    found.append(f"{path.name}:{node.lineno} calls {name}()")
    assert found == []


def test_only_the_child_process_imports_locust_or_gevent() -> None:
    users = {i.module for i in ALL_IMPORTS if _in(i.target, "locust", "gevent")}
    assert users <= {f"{NAME}.load.child"}
    importers = [i for i in ALL_IMPORTS if i.target == f"{NAME}.load.child"]
    assert importers == []  # it runs as ``python -m``, never imported


def test_the_stream_reader_is_pure_so_its_rules_are_tested_without_a_server() -> None:
    assert _violations(f"{NAME}.load.sse", (*HEAVY, *IO)) == []


def test_only_the_pytest_surface_imports_pytest() -> None:
    users = {i.module for i in ALL_IMPORTS if _in(i.target, "pytest", "_pytest")}
    assert {u for u in users if not _in(u, f"{NAME}.plugin")} == set()


def test_httpx_is_imported_only_by_the_target_layer() -> None:
    users = {i.module for i in ALL_IMPORTS if _in(i.target, "httpx")}
    assert {u for u in users if not _in(u, f"{NAME}.target")} == set()


def test_results_do_not_import_the_gate_the_driver_the_target_or_the_surface() -> None:
    forbidden = tuple(
        f"{NAME}.{m}" for m in ("gate", "target", "plugin", "cli", "load.locust_driver")
    )
    assert _violations(f"{NAME}.results", forbidden) == []


def test_the_load_and_target_layers_do_not_import_the_gate_or_the_surface() -> None:
    forbidden = tuple(f"{NAME}.{m}" for m in ("gate", "plugin", "cli", "results"))
    assert _violations(f"{NAME}.load", forbidden) == []
    assert _violations(f"{NAME}.target", forbidden) == []


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for i in ALL_IMPORTS:
        if _in(i.target, NAME) and i.target != i.module:
            graph.setdefault(i.module, set()).add(i.target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node], _ = 2, stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    # a package's __init__ re-exporting its modules is not a cycle of roles: leave it out
    graph = {
        m: {t for t in ts if not (m.startswith(t + ".") and t.count(".") >= 1)}
        for m, ts in _graph().items()
        if m != NAME
    }
    graph = {m: {t for t in ts if t != NAME} for m, ts in graph.items()}
    assert _cycle(graph) is None


@pytest.mark.parametrize("module", ["pytest_perfgate.plugin", "pytest_perfgate"])
def test_importing_the_plugin_loads_no_heavy_module(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('httpx', 'locust', 'gevent', 'torch', 'fastapi', 'psutil') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
