"""The colcon install carries every file the backends load (ONNX, manifest, TorchScript).

A real ``colcon build`` of the package into a scratch workspace (as on a vehicle), then
each artefact that onnxruntime, TensorRT and torch-CUDA would open for the shipped student
is looked up under ``install/vla_edge/share/vla_edge``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vla_edge.backends.manifest import load_manifest
from vla_edge.backends.manifest import manifest_path_for as manifest_path
from vla_edge.backends.torch_cuda_backend import find_artefact
from vla_edge.config import load_config, package_root, require

REPO = Path(__file__).resolve().parents[1]


def backend_artefacts() -> set[Path]:
    """Files (relative to the package root) that the backends load for the shipped student."""
    inf = load_config("inference")
    root = package_root()
    onnx = root / str(require(inf, "engine", where="inference.yaml"))
    manifest = load_manifest(manifest_path(onnx))
    torch_file = find_artefact(onnx, manifest, str(inf["torch_cuda"]["artefact"]))
    return {p.resolve().relative_to(root) for p in (onnx, manifest_path(onnx), torch_file)}


def test_backend_artefacts_exist_in_the_source_tree() -> None:
    files = backend_artefacts()
    assert {Path("engines/student.onnx"), Path("engines/student.json"), Path("engines/student.ts")} <= files


@pytest.mark.slow
def test_colcon_install_has_every_backend_artefact_and_config(tmp_path: Path) -> None:
    colcon = shutil.which("colcon", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if colcon is None:
        pytest.skip(
            "colcon not installed (pip install .[dev] or apt install python3-colcon-common-extensions)"
        )
    src = tmp_path / "src" / "vla_edge"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for rel in filter(None, listed):
        if (REPO / rel).is_file() and not (REPO / rel).is_symlink():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(
        [
            colcon,
            "--log-base",
            "log",
            "build",
            "--base-paths",
            "src",
            "--build-base",
            "build",
            "--install-base",
            "install",
            "--event-handlers",
            "console_cohesion-",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    share = tmp_path / "install" / "vla_edge" / "share" / "vla_edge"
    missing = [str(f) for f in sorted(backend_artefacts()) if not (share / f).is_file()]
    assert not missing, f"colcon install lacks files the backends load: {missing}"
    configs = {p.name for p in (REPO / "config").glob("*.yaml")}
    assert configs <= {p.name for p in (share / "config").glob("*.yaml")}
