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
