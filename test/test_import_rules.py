"""Package boundaries (README, docs/architecture.md), checked on the source with ``ast``.

Every import statement counts, also the lazy ones inside functions.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROS = ("rclpy", "rcl_interfaces", "launch", "launch_ros")


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache  # the same files are parsed by every rule
def _imports(path: Path) -> frozenset[str]:
    """Absolute names of every module ``path`` imports (``from a import b`` gives a and a.b).

    Imports under ``if TYPE_CHECKING:`` are skipped: they never run, so they close no loop.
    """
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"), filename=str(path))]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return frozenset(out)


def _files(top: str) -> list[Path]:
    return sorted(p for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts)


def _hits(files: list[Path], banned: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{p.relative_to(REPO)}: {name}"
        for p in files
        for name in _imports(p)
        if any(name == b or name.startswith(b + ".") for b in banned)
    )


def _under(path: Path, *dirs: str) -> bool:
    return any(path.is_relative_to(REPO / d) for d in dirs)


def test_rclpy_only_under_nodes() -> None:
    core = [p for p in _files("vla_edge") if not _under(p, "vla_edge/nodes")]
    assert _hits(core, ROS) == []


def test_runtime_never_imports_torch_or_training() -> None:
    assert _hits(_files("vla_edge"), ("training",)) == []
    # The exceptions: the optional torch-CUDA backend and its GPU pillarizer (torch imported
    # inside their functions, only when that backend is chosen).
    torch_ok = {REPO / "vla_edge" / "backends" / f for f in ("torch_cuda_backend.py", "torch_pillarize.py")}
    assert _hits([p for p in _files("vla_edge") if p not in torch_ok], ("torch",)) == []


def test_only_nodes_and_cli_use_the_nodes() -> None:
    others = [p for p in _files("vla_edge") if not _under(p, "vla_edge/nodes", "vla_edge/cli")]
    assert _hits(others, ("vla_edge.nodes",)) == []


def test_no_import_cycles() -> None:
    """No cycle between modules of vla_edge/ and training/ (a lazy import still closes a loop)."""
    files = _files("vla_edge") + _files("training")
    mods = {_module(p): p for p in files}
    graph = {m: {n for n in _imports(p) if n in mods and n != m} for m, p in mods.items()}
    # A package's __init__ importing its own submodules is how packages are built, not a loop.
    graph = {
        m: {n for n in deps if not (mods[m].name == "__init__.py" and n.startswith(m + "."))}
        for m, deps in graph.items()
    }
    cycles, state = [], dict.fromkeys(graph, 0)

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state[n] == 1:
                cycles.append(" -> ".join([*stack[stack.index(n) :], n]))
            elif state[n] == 0:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if state[m] == 0:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize(
    "rule",
    [
        test_rclpy_only_under_nodes,
        test_only_nodes_and_cli_use_the_nodes,
        test_runtime_never_imports_torch_or_training,
    ],
)
def test_rules_can_fail(rule) -> None:
    """The checks see a lazy import inside a function (a rule that cannot fail checks nothing)."""
    bad = REPO / "vla_edge" / "replay" / "_import_rule_probe.py"
    bad.write_text("def f():\n    import rclpy\n    import torch\n    from vla_edge.nodes import graph\n")
    try:
        with pytest.raises(AssertionError):
            rule()
    finally:
        bad.unlink()


def test_cycle_check_can_fail(monkeypatch) -> None:
    probe = REPO / "training" / "_cycle_probe.py"
    probe.write_text("def f():\n    from training import _cycle_probe2\n")
    probe2 = REPO / "training" / "_cycle_probe2.py"
    probe2.write_text("from training._cycle_probe import f\n")
    try:
        with pytest.raises(AssertionError, match="_cycle_probe"):
            test_no_import_cycles()
    finally:
        probe.unlink()
        probe2.unlink()
