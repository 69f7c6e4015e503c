"""Inference backends behind one interface (:mod:`vla_edge.backends.base`).

Submodules import their heavy dependencies (onnxruntime, tensorrt, cuda, torch) lazily,
so importing this package is cheap and works on any machine.
"""

from __future__ import annotations
