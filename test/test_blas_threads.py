"""One OpenBLAS thread in node processes and the vla-edge CLI (vla_edge/blas_threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vla_edge.blas_threads import BLAS_THREADS_VAR, limit_blas_threads

REPO = Path(__file__).resolve().parents[1]
PROBE = "import os, vla_edge.nodes, numpy; print(os.environ['{v}'], len(os.listdir('/proc/self/task')))"


def _probe(env_value: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != BLAS_THREADS_VAR}
    if env_value is not None:
        env[BLAS_THREADS_VAR] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(v=BLAS_THREADS_VAR)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to count threads")
def test_a_node_process_loads_numpy_with_one_blas_thread() -> None:
    value, threads = _probe(None)
    assert value == "1"
    # numpy's OpenBLAS would start one worker per extra core; with the variable set first, none
    assert threads == 1


def test_a_value_from_the_environment_wins() -> None:
    value, _ = _probe("3")
    assert value == "3"


def test_too_late_once_numpy_is_loaded() -> None:
    import numpy  # noqa: F401  (the test process has it already)

    assert limit_blas_threads() is False
