"""Shared pytest setup.

DDS is pinned to loopback and every test run (and every xdist worker) gets its own
ROS_DOMAIN_ID *before* anything can import rclpy, so parallel runs never cross-talk and
no traffic leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
_base_domain = int(os.environ.get("ROS_DOMAIN_ID", str(10 + os.getpid() % 80)))
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_worker_idx = int(_worker[2:]) if _worker.startswith("gw") and _worker[2:].isdigit() else 0
os.environ["ROS_DOMAIN_ID"] = str(min(_base_domain + _worker_idx * 7, 101))
# The Fast DDS profile the docs tell users to run (shared memory + UDP on 127.0.0.1). With the
# default transports a SIGSTOPped subscriber process stalled the LiDAR delivery to every other
# reader for 1.2-1.6 s under load (issue 14, the SIGSTOP rows: a third-process probe missed the
# same sweeps as the arbiter); with the profile they passed 4 of 4 loaded runs.
os.environ.setdefault(
    "FASTDDS_DEFAULT_PROFILES_FILE", str(Path(__file__).resolve().parents[1] / "config" / "fastdds_shm.xml")
)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Optional non-commercial scans (KITTI, nuScenes): scripts/fetch_test_data.sh puts them here.
SHARED_DATA = Path(os.environ.get("VLA_EDGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# Permissively licensed real scans shipped with the repository (see test/data/README.md).
REPO_DATA = REPO_ROOT / "test" / "data"
COMMITTED_SCAN = REPO_DATA / "lidar" / "hesai_qt64_1673401196087570870.pcd"
SHARED_DATA_SKIP = (
    f"optional KITTI/nuScenes scans (CC BY-NC-SA) not found at {SHARED_DATA}: "
    "run scripts/fetch_test_data.sh or set VLA_EDGE_SHARED_DATA"
)


def _have(module: str) -> bool:
    try:
        __import__(module)
    except Exception:  # noqa: BLE001 - any import failure means "absent"
        return False
    return True


HAVE_RCLPY = _have("rclpy")
HAVE_TORCH = _have("torch")

requires_rclpy = pytest.mark.skipif(not HAVE_RCLPY, reason="rclpy not installed (pip install .[ros])")
requires_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed (pip install .[train])")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ros: test starts rclpy and talks DDS on loopback")
    config.addinivalue_line("markers", "slow: test takes more than ~20 s")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Directory of the optional KITTI/nuScenes files (``../shared/data``); never copied into the repo."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real sensor data missing at {SHARED_DATA}; CI must have ../shared/data")
        pytest.skip(SHARED_DATA_SKIP)
    return SHARED_DATA


@pytest.fixture(scope="session")
def committed_scan_path() -> Path:
    """The Apache-2.0 Hesai QT64 scan shipped in ``test/data`` (always present)."""
    assert COMMITTED_SCAN.is_file(), f"{COMMITTED_SCAN} missing from the checkout"
    return COMMITTED_SCAN


@pytest.fixture(scope="session")
def committed_scan(committed_scan_path: Path) -> np.ndarray:
    """The committed real scan as N x 4 float32 (x, y, z, intensity = 0: the PCD has xyz only)."""
    from vla_edge.scans import load_scan  # ROS-free (the GPU machine has no rclpy)

    return load_scan(str(committed_scan_path))


def real_scan_paths() -> list[Path]:
    """Every real scan available: the committed one, plus the optional shared ones when fetched."""
    shared = sorted((SHARED_DATA / "lidar").iterdir()) if (SHARED_DATA / "lidar").is_dir() else []
    return [COMMITTED_SCAN, *(p for p in shared if p.name != COMMITTED_SCAN.name)]


@pytest.fixture
def rclpy_context() -> Iterator[object]:
    """A fresh rclpy context for one test, shut down afterwards."""
    if not HAVE_RCLPY:
        pytest.skip("rclpy not installed (pip install .[ros])")
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        if ctx.ok():
            rclpy.shutdown(context=ctx)


def wait_until(predicate: Callable[[], bool], timeout: float, spin: Callable[[], None] | None = None) -> bool:
    """Poll ``predicate`` (spinning ``spin`` between polls) until true or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if spin is not None:
            spin()
        else:
            time.sleep(0.02)
    return predicate()


@pytest.fixture
def wait() -> Callable[..., bool]:
    """The bounded :func:`wait_until` helper as a fixture."""
    return wait_until


@pytest.fixture()
def small_onpolicy_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of config/ with a small BEV grid and a tiny on-policy loop (CPU-sized), in use."""
    cdir = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", cdir)
    model = yaml.safe_load((cdir / "model.yaml").read_text())
    model["pillars"].update(point_cloud_range=[-16.0, -16.0, -3.0, 16.0, 16.0, 3.0], max_pillars=512)
    model["pillars"]["max_points_per_pillar"] = 8
    (cdir / "model.yaml").write_text(yaml.safe_dump(model))
    train = yaml.safe_load((cdir / "train.yaml").read_text())
    train["train"].update(batch_size=4, val_every=1000, ckpt_every=1000, warmup_steps=1, val_max_frames=8)
    train["onpolicy"].update(
        scenarios=[2],
        seconds=3.0,
        stride=3,
        eval_scenarios=1,
        eval_seconds=2.0,
        workers=1,
        minutes=[0],
        epochs=1,
    )
    (cdir / "train.yaml").write_text(yaml.safe_dump(train))
    monkeypatch.setenv("VLA_EDGE_CONFIG_DIR", str(cdir))
    return cdir
