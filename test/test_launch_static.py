"""Static checks of launch/drive.launch.py (always) and a real launch run (where possible).

``launch``/``launch_ros`` are not installable from the wheels here, so the file is parsed
with ``ast``: every executable it names must be a console_scripts entry point declared in
setup.py, every package file it names must exist in the tree and be installed into the
share dir by setup.py's data_files.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "drive.launch.py"
SETUP = REPO / "setup.py"


def _console_scripts() -> set[str]:
    tree = ast.parse(SETUP.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = ast.literal_eval(value)
                    return {e.split("=")[0].strip() for e in entries}
    raise AssertionError("setup.py declares no console_scripts")


def _data_file_globs() -> list[tuple[str, str]]:
    """(share subdir, source glob) pairs from setup.py's data_files."""
    tree = ast.parse(SETUP.read_text())
    pairs: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "data_files":
            for tup in node.value.elts:
                dest, src = tup.elts
                if isinstance(dest, ast.JoinedStr):  # f"share/{PACKAGE}/config"
                    dest_text = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in dest.values)
                else:
                    dest_text = dest.value
                for call in ast.walk(src):
                    if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "glob":
                        pairs.append((dest_text, call.args[0].value))
    return pairs


def _launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def _executables() -> list[str]:
    names = []
    for node in ast.walk(_launch_tree()):
        if isinstance(node, ast.keyword) and node.arg == "executable":
            assert isinstance(node.value, ast.Constant), "executable must be a literal so it can be checked"
            names.append(node.value.value)
    return names


def _package_files() -> list[str]:
    """Relative paths given to PathJoinSubstitution([FindPackageShare(...), 'dir', 'file'])."""
    files = []
    for node in ast.walk(_launch_tree()):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "PathJoinSubstitution":
            parts = node.args[0].elts
            head = parts[0]
            assert isinstance(head, ast.Call) and getattr(head.func, "id", "") == "FindPackageShare"
            files.append("/".join(p.value for p in parts[1:]))
    return files


def test_launch_file_parses_and_defines_entry() -> None:
    tree = _launch_tree()
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs


def test_every_executable_is_a_console_script() -> None:
    executables = _executables()
    assert set(executables) == {"inference_node", "arbiter_node", "recorder_node"}
    missing = set(executables) - _console_scripts()
    assert not missing, f"launch names executables that setup.py does not declare: {missing}"


def test_every_executable_module_has_main() -> None:
    tree = ast.parse(SETUP.read_text())
    entries = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    for e in ast.literal_eval(value):
                        name, target = (s.strip() for s in e.split("="))
                        entries[name] = target
    for exe in ("inference_node", "arbiter_node"):
        module, func = entries[exe].split(":")
        path = REPO / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{exe} -> {module} has no file {path}"
        funcs = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert func in funcs, f"{path} defines no {func}()"


def test_every_named_file_exists_and_is_installed() -> None:
    files = _package_files()
    assert "config/drive.yaml" in files
    globs = _data_file_globs()
    for rel in files:
        assert (REPO / rel).is_file(), f"launch file names {rel}, which is not in the package"
        installed = any(
            dest.endswith("/" + str(Path(rel).parent)) and fnmatch.fnmatch(rel, pattern)
            for dest, pattern in globs
        )
        assert installed, f"{rel} exists but setup.py data_files does not install it into the share dir"


def test_launch_arguments_declared() -> None:
    declared = set()
    for node in ast.walk(_launch_tree()):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            declared.add(node.args[0].value)
    used = set()
    for node in ast.walk(_launch_tree()):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "LaunchConfiguration":
            used.add(node.args[0].value)
    assert {"config", "backend", "engine", "use_sim_time", "record", "namespace"} <= declared
    assert used <= declared, f"LaunchConfiguration without DeclareLaunchArgument: {used - declared}"


def _launch_available() -> bool:
    try:
        import launch_ros  # noqa: F401

        import launch
    except ImportError:
        return False
    return hasattr(launch, "LaunchDescription")  # the repo's launch/ dir is a namespace package


@pytest.mark.skipif(
    not _launch_available(), reason="ROS 2 launch/launch_ros not importable (no wheels); static checks ran"
)
def test_launch_description_builds_nodes(tmp_path: Path) -> None:
    from launch.launch_context import LaunchContext

    import launch

    spec = importlib.util.spec_from_file_location("drive_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    assert isinstance(ld, launch.LaunchDescription)
    ctx = LaunchContext()
    cfg = tmp_path / "drive.yaml"
    cfg.write_text((REPO / "config" / "drive.yaml").read_text())
    for name, value in {
        "config": str(cfg),
        "backend": "",
        "engine": "",
        "use_sim_time": "true",
        "record": "true",
        "namespace": "ns",
    }.items():
        ctx.launch_configurations[name] = value
    nodes = module._nodes(ctx)
    assert [n.node_executable for n in nodes] == ["inference_node", "arbiter_node", "recorder_node"]
