"""Test doubles shared by the tests, named as such: they wrap the real ONNX Runtime backend."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from vla_edge.errors import ModelError


class RaisingBackend:
    """Wraps the real backend, but every inference raises ``exc``."""

    def __init__(self, real: Any, exc: Exception | None = None) -> None:
        self.real, self.name = real, "raising-test-double"
        self.exc = exc or ModelError("injected failure (RaisingBackend test double)")

    def __getattr__(self, item: str) -> Any:
        return getattr(self.real, item)

    def infer(self, inputs: dict[str, np.ndarray]) -> Any:
        raise self.exc


class SlowBackend:
    """Runs the real backend, then sleeps ``delay_s`` (past a deadline)."""

    def __init__(self, real: Any, delay_s: float) -> None:
        self.real, self.delay_s, self.name = real, delay_s, "slow-test-double"

    def __getattr__(self, item: str) -> Any:
        return getattr(self.real, item)

    def infer(self, inputs: dict[str, np.ndarray]) -> Any:
        out = self.real.infer(inputs)
        time.sleep(self.delay_s)
        return out


def spin_feeding_odometry(executor: Any, feeder: Any, stop: Any) -> Any:
    """Spin ``executor`` in a daemon thread that also publishes odometry (every 5th spin) and
    the reference path (every 20th) from ``feeder`` until ``stop`` is set; returns the thread."""
    import threading

    def loop() -> None:
        k = 0
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.01)
            now = feeder.clock_now()
            if k % 5 == 0:
                feeder.publish_odometry(now)
            if k % 20 == 0:
                feeder.publish_reference_path(now)
            k += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread
