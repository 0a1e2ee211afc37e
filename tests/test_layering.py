"""The layering rules of DESIGN section 1, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    """Top-level module names imported anywhere in a file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_drivers_never_import_agent_or_simulator() -> None:
    for path in (ROOT / "drivers").rglob("*.py"):
        bad = {n for n in imports(path) if n.split(".")[0] in ("agent", "simulator", "ocpp")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_core_is_pure() -> None:
    forbidden = {"asyncio", "socket", "sqlite3", "ocpp", "websockets", "pymodbus", "serial", "gpiozero", "time"}
    for path in (ROOT / "agent" / "core").rglob("*.py"):
        found = imports(path)
        bad = {n for n in found if n.split(".")[0] in forbidden}
        bad |= {n for n in found if n.startswith("agent.") and not n.startswith("agent.core")}
        bad |= {n for n in found if n.startswith("drivers.") and n != "drivers.base"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_core_never_speaks_ocpp_message_names() -> None:
    """The core is protocol-neutral: no OCPP action names in its code (docstrings may explain the mapping)."""
    words = ("StartTransaction", "StopTransaction", "TransactionEvent", "BootNotification")
    for path in (ROOT / "agent" / "core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
            elif isinstance(node, ast.Name):
                text = node.id
            elif isinstance(node, ast.Attribute):
                text = node.attr
            if text is not None:
                for word in words:
                    assert word not in text, f"{path.relative_to(ROOT)}:{node.lineno} uses {word}"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The agent modules a module imports when it is loaded (not under TYPE_CHECKING, not inside functions)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                break
            if isinstance(sub, ast.Import):
                found.update(alias.name for alias in sub.names if alias.name in modules)
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                for alias in sub.names:
                    candidate = f"{sub.module}.{alias.name}"
                    if candidate in modules:
                        found.add(candidate)
                    elif sub.module in modules:
                        found.add(sub.module)
    return found


def test_no_import_circles_at_load_time_in_agent() -> None:
    """Each agent module stands above what it imports when loaded (function-level imports are listed in
    docs/architecture.md as the circles still to break)."""
    paths = {_module_of(p): p for p in (ROOT / "agent").rglob("*.py")}
    graph = {name: _top_level_imports(path, set(paths)) - {name} for name, path in paths.items()}
    # a package's __init__ importing its own submodules is not a circle
    graph = {name: {d for d in deps if not d.startswith(name + ".")} for name, deps in graph.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, "import circle: " + " -> ".join([*visiting[visiting.index(name):], name])
        visiting.append(name)
        for dep in sorted(graph.get(name, ())):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_session_speaks_no_protocol_version() -> None:
    """agent/ocpp/{session,library,routing,frames}.py import no version package: 2.0.1 reuses them unchanged."""
    for name in ("session.py", "library.py", "routing.py", "frames.py"):
        found = imports(ROOT / "agent" / "ocpp" / name)
        bad = {n for n in found if n.startswith(("agent.ocpp.v", "ocpp.v"))}
        assert not bad, f"agent/ocpp/{name} imports {sorted(bad)}"


LIBRARY_PRIVATE = {"_call_lock", "_get_specific_response", "_unique_id_generator", "_ocpp_version", "_response_timeout",
                   "_connection", "_handle_call", "_response_queue", "_send", "ASYNC_VALIDATION"}


def test_only_the_library_wrapper_touches_private_parts_of_the_ocpp_library() -> None:
    """agent/ocpp/library.py is the one place to adapt when an `ocpp` upgrade changes a private part."""
    for path in (ROOT / "agent" / "ocpp").rglob("*.py"):
        if path.name == "library.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = node.attr if isinstance(node, ast.Attribute) else (
                node.name if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None)
            assert name not in LIBRARY_PRIVATE, f"{path.relative_to(ROOT)}:{node.lineno} uses the library's {name}"
