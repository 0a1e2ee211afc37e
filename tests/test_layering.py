"""The layering rules of DESIGN section 1, checked on the source."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
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


# The layers below the protocol adapters (DESIGN section 1): they speak the domain, never an OCPP version.
NEUTRAL_LAYERS = ("agent/core", "agent/runtime.py", "agent/runtime", "agent/store", "agent/settings.py",
                  "agent/ports.py", "agent/metering.py")
# OCPP actions whose names would mean a layer builds or reads protocol messages (the core's commands are
# named after the domain operation, e.g. ChangeAvailability, and are not listed)
OCPP_ACTIONS = ("StartTransaction", "StopTransaction", "TransactionEvent", "BootNotification", "MeterValues",
                "StatusNotification", "Heartbeat", "Authorize", "idTagInfo", "transactionId",
                # the operations ledger's reports: each protocol adapter words them (issue 15)
                "DataTransfer", "vendorId", "messageId", "NotifyEvent", "eventData")


def _neutral_files() -> list[Path]:
    files: list[Path] = []
    for name in NEUTRAL_LAYERS:
        path = ROOT / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else [])
    return files


def test_the_layers_below_the_adapters_import_no_protocol() -> None:
    """core, runtime, store, settings, ports and metering import nothing from agent/ocpp (where the 1.6 keys
    live) or the ocpp library: a second protocol version plugs in above them."""
    files = _neutral_files()
    assert len(files) > 15
    for path in files:
        found = imports(path)
        bad = {n for n in found if n.split(".")[0] == "ocpp" or n.startswith("agent.ocpp")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_neutral_layers_never_speak_ocpp_message_names() -> None:
    """The neutral layers name no OCPP action as a word (docstrings and comments may explain the mapping; the
    store's released migrations describe the rows they found, which were 1.6 messages)."""
    words = [re.compile(rf"\b{w}\b") for w in OCPP_ACTIONS]
    for path in _neutral_files():
        tree = ast.parse(path.read_text())
        history = {id(n) for node in tree.body if isinstance(node, ast.AnnAssign | ast.Assign)
                   and "_MIGRATIONS" in ast.unparse(node) for n in ast.walk(node)}
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | history:
                text = node.value
            elif isinstance(node, ast.Name):
                text = node.id
            elif isinstance(node, ast.Attribute):
                text = node.attr
            if text is not None:
                for word in words:
                    assert not word.search(text), f"{path.relative_to(ROOT)}:{node.lineno} uses {word.pattern}"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _agent_imports(path: Path, modules: set[str], *, load_time_only: bool) -> set[str]:
    """The agent modules a module imports: when it is loaded (not under TYPE_CHECKING, not inside functions),
    or anywhere in it."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if load_time_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node):
            if load_time_only and isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
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


def _agent_graph(*, load_time_only: bool) -> dict[str, set[str]]:
    paths = {_module_of(p): p for p in (ROOT / "agent").rglob("*.py")}
    graph = {name: _agent_imports(path, set(paths), load_time_only=load_time_only) - {name}
             for name, path in paths.items()}
    # a package's __init__ importing its own submodules is not a circle
    return {name: {d for d in deps if not d.startswith(name + ".")} for name, deps in graph.items()}


def _assert_no_circle(graph: dict[str, set[str]]) -> None:
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


def test_no_import_circles_at_load_time_in_agent() -> None:
    """Each agent module stands above what it imports when loaded."""
    _assert_no_circle(_agent_graph(load_time_only=True))


# Imports that may still close a circle once function-level and TYPE_CHECKING imports count (none left: the
# last one went with the version-neutral session). A new entry needs its own step of issue 12 to remove it.
KNOWN_CIRCLE_EDGES: set[tuple[str, str]] = set()


def test_no_import_circles_in_agent_counting_every_import() -> None:
    """Function-level and TYPE_CHECKING imports count too: a lazy import hides a circle, it does not break it."""
    graph = _agent_graph(load_time_only=False)
    for module, dep in KNOWN_CIRCLE_EDGES:
        assert dep in graph[module], f"{module} no longer imports {dep}: remove it from KNOWN_CIRCLE_EDGES"
        graph[module].discard(dep)
    _assert_no_circle(graph)


def _imported_names(path: Path) -> set[str]:
    """Every module a file imports anywhere (functions and TYPE_CHECKING blocks included), with the names taken
    from it as possible submodules (`from agent import runtime`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))  # relative: refused below, agent uses none
    return names


def test_services_and_security_import_no_runtime() -> None:
    """The services, the security package and the diagnostics archive get ports from agent/daemon.py, never
    the runtime (not even for typing)."""
    paths = [*(ROOT / "agent" / "services").rglob("*.py"), *(ROOT / "agent" / "security").rglob("*.py"),
             ROOT / "agent" / "diag" / "bundle.py"]
    assert len(paths) > 5
    for path in paths:
        found = _imported_names(path)
        bad = {n for n in found if n == "agent.runtime" or n.startswith(("agent.runtime.", "."))}
        bad |= {n for n in found if n in ("agent.daemon", "agent.ocpp") or n.startswith("agent.ocpp.")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_operations_ledger_is_protocol_neutral_and_its_accounting_pure() -> None:
    """The ledger's accounting is in the pure core, its rows in the store, its watching in the runtime; the
    protocol adapters only report it (1.6: agent/ocpp/v16/operations.py), and nothing neutral imports them."""
    pure = ROOT / "agent" / "core" / "operations.py"
    assert {n for n in imports(pure) if n.startswith("agent.")} <= {"agent.core.events"}
    for name in ("agent/runtime/operations.py", "agent/store/operations.py"):
        found = _imported_names(ROOT / name)
        assert not {n for n in found if n.startswith(("agent.ocpp", "ocpp", "agent.daemon", "agent.diag"))}, name
    reporter = _imported_names(ROOT / "agent" / "ocpp" / "v16" / "operations.py")
    assert not {n for n in reporter if n.startswith("agent.runtime")}, "the reporter needs the store, not the runtime"


def _module_level_imports(path: Path) -> set[str]:
    """Modules a file imports when it is loaded (top level and TYPE_CHECKING-free blocks, not functions)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_evsectl_draws_charts_and_the_daemon_never_loads_plotext() -> None:
    """plotext (evsectl's charts) is imported by agent/diag/plots.py alone, and that module only from inside the
    render functions evsectl runs: the daemon, which answers the same commands, never loads it (its memory)."""
    everything = [*(ROOT / "agent").rglob("*.py"), *(ROOT / "drivers").rglob("*.py")]
    users = {p.relative_to(ROOT).as_posix() for p in everything if any(
        n.split(".")[0] == "plotext" for n in _imported_names(p))}
    assert users == {"agent/diag/plots.py"}
    plots_users = {p.relative_to(ROOT).as_posix() for p in everything if "agent.diag.plots" in _imported_names(p)}
    assert plots_users == {"agent/diag/operations.py"}
    assert "agent.diag.plots" not in _module_level_imports(ROOT / "agent" / "diag" / "operations.py")
    probe = ("import sys, agent.daemon, agent.diag.server, agent.diag.operations, agent.runtime; "
             "print('plotext' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False", result.stderr
