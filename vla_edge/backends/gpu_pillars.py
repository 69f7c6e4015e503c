"""Pillarization on the GPU as one CUDA graph, writing straight into the model's input buffers.

The torch-CUDA backend's per-frame time was mostly host work around a 1–2 ms graph replay:
the data-sized pillarizer (``pillarize_torch`` before it became static) launched about 440
kernels and synchronised with the host about 28 times a frame (torch profiler, H200, 32k
points: 4.0 ms of pillarization for 2.7 ms of GPU work). Here the points go into a fixed
``[max_points, C]`` buffer and :func:`~vla_edge.backends.torch_pillarize.pillarize_static`
(static shapes, no host sync) is captured once, so a frame is: copy the points into pinned
memory, one asynchronous upload, one graph replay. Clouds larger than the buffer are
pillarized eagerly by the same function at their own size (logged once), never truncated.

The work of a static pillarization grows with its buffer, not with the cloud (H100: about
3 ms for 300k rows, 0.7 ms for 40k), so there is one buffer and graph per size bucket
(32768 rows, doubling, up to ``max_points``) and a cloud goes through the smallest that holds it.

With a ``tail`` (the torch-CUDA backend passes its model forward when ``torch_cuda.fuse_graphs``
is on; off by default, it measured slower: docs/backends.md) each bucket's graph holds the
pillarization *and* the model: a frame is then one replay instead of two launches with a gap
between them, but the host must upload every other input before it. If that capture fails,
the bucket falls back to a pillarization-only graph (reason in
:attr:`GpuPillarizer.fused_error`) and the backend replays its own model graph after it.

torch is imported inside the methods (the vehicle runtime imports torch only for this backend).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from vla_edge.backends.cuda_capture import clear_cuda_error, error_chain
from vla_edge.pillarize import PillarSpec

log = logging.getLogger(__name__)

PILLAR_INPUTS = ("pillar_features", "pillar_coords", "pillar_count")
WARMUP_BEFORE_CAPTURE = 2
SMALLEST_BUCKET = 32768  # rows; a 32-beam sweep fits, and smaller buckets gain little


def bucket_sizes(max_points: int) -> list[int]:
    """Buffer rows per bucket: ``SMALLEST_BUCKET`` doubling while below ``max_points``, then it."""
    sizes, s = [], SMALLEST_BUCKET
    while s < max_points:
        sizes.append(s)
        s *= 2
    return [*sizes, int(max_points)]


class GpuPillarizer:
    """Fixed point buffers plus the captured pillarization for one spec.

    Args:
        torch: The imported torch module.
        device: The CUDA device (a CPU device runs the same buffers eagerly, for tests).
        spec: The pillar spec the model was exported for (sweeps included).
        max_points: Rows of the largest point buffer (``torch_cuda.max_points``).
        targets: The model's static input buffers by name (at least :data:`PILLAR_INPUTS`).
        use_graph: Capture a CUDA graph (``torch_cuda.cuda_graphs``); False runs eagerly.
        tail: Work captured after the pillarization in the same graph (the model forward, which
            reads ``targets``); it returns the tensors the replay leaves its results in. Only
            graphs run it: eager pillarization (CPU device, no graph, oversize clouds) never does,
            and :meth:`launch` then returns None.
    """

    def __init__(
        self,
        torch: Any,
        device: Any,
        spec: PillarSpec,
        max_points: int,
        targets: dict[str, Any],
        use_graph: bool,
        tail: Callable[[], list[Any]] | None = None,
    ) -> None:
        missing = [n for n in PILLAR_INPUTS if n not in targets]
        if missing:
            raise ValueError(f"model inputs lack {missing}: GPU pillarization needs {PILLAR_INPUTS}")
        self._t, self.device, self.spec, self.max_points = torch, device, spec, int(max_points)
        self._targets = {n: targets[n] for n in PILLAR_INPUTS}
        cols = spec.point_columns
        on_cuda = torch.device(device).type == "cuda"  # a CPU device (tests) skips pinning and graphs
        self._host = torch.zeros((self.max_points, cols), dtype=torch.float32)
        if on_cuda:
            self._host = self._host.pin_memory()
        self._host_np = self._host.numpy()
        self.sizes = bucket_sizes(self.max_points)
        self._buffers = [torch.zeros((n, cols), dtype=torch.float32, device=device) for n in self.sizes]
        self._n = torch.zeros((), dtype=torch.long, device=device)
        self.capture_error = ""  # why a graph could not be captured ("" = captured or off)
        self.fused_error = ""  # why pillarization + tail could not share a graph ("" = they do, or no tail)
        self._tail = tail
        self._graphs: list[Any] = [None] * len(self.sizes)
        self._tail_outs: list[Any] = [None] * len(self.sizes)  # per bucket: what the tail returned in capture
        self._big: Any = None  # an oversize cloud on the device, between stage and launch
        self._oversize_logged = False
        if on_cuda:
            for i in range(len(self.sizes)):
                self._capture(i, use_graph)
                if self.capture_error:
                    break

    @property
    def captured(self) -> bool:
        return all(g is not None for g in self._graphs)

    @property
    def fused(self) -> bool:
        """Every bucket's graph holds the pillarization and the tail (the model)."""
        return self.captured and all(o is not None for o in self._tail_outs)

    def _write(self, points: Any, n: Any) -> None:
        from vla_edge.backends.torch_pillarize import pillarize_static

        feats, coords, count = pillarize_static(points, n, self.spec)
        tg = self._targets
        tg["pillar_features"][0].copy_(feats)  # cast to the model's dtype (FP16 in half mode)
        tg["pillar_coords"][0].copy_(coords)
        tg["pillar_count"].copy_(count.reshape(()).expand_as(tg["pillar_count"]))

    def _capture(self, i: int, use_graph: bool) -> None:
        t = self._t
        side = t.cuda.Stream(device=self.device)
        side.wait_stream(t.cuda.current_stream(self.device))
        with t.no_grad(), t.cuda.stream(side):
            for _ in range(WARMUP_BEFORE_CAPTURE):
                self._write(self._buffers[i], self._n)
                if self._tail is not None:
                    self._tail()
        t.cuda.current_stream(self.device).wait_stream(side)
        if not use_graph:
            return
        if self._tail is not None:
            graph = t.cuda.CUDAGraph()
            try:
                with t.no_grad(), t.cuda.graph(graph):
                    self._write(self._buffers[i], self._n)
                    outs = self._tail()
                self._graphs[i], self._tail_outs[i] = graph, outs
                t.cuda.synchronize(self.device)
                return
            except RuntimeError as exc:  # the pillarization alone may still capture
                self.fused_error = error_chain(exc)
                log.warning(
                    "GPU pillarization: capture of pillarization + model in one graph failed (%s); "
                    "capturing the pillarization alone, the model replays its own graph after it",
                    self.fused_error,
                )
                del graph
                clear_cuda_error(t)
                self._tail = None  # the other buckets would fail alike
        graph = t.cuda.CUDAGraph()
        try:
            with t.no_grad(), t.cuda.graph(graph):
                self._write(self._buffers[i], self._n)
            self._graphs[i] = graph
        except RuntimeError as exc:  # an op that syncs or copies from the host: run eagerly
            self.capture_error = error_chain(exc)
            log.warning("GPU pillarization: graph capture failed (%s); running eagerly", self.capture_error)
            del graph
            clear_cuda_error(t)
        t.cuda.synchronize(self.device)

    def stage(self, points: np.ndarray) -> int:
        """Upload ``points`` (N x >= C float) into the smallest bucket that holds them.

        Copies them into pinned memory and starts one asynchronous upload; nothing runs on them
        yet and nothing waits. Returns the bucket for :meth:`launch`, -1 for a cloud above
        ``max_points`` (it goes up at its own size and is pillarized eagerly by :meth:`launch`).
        """
        t = self._t
        cols = self.spec.point_columns
        n = int(points.shape[0])
        if n > self.max_points:  # correct, just slower: the same function at the cloud's size
            if not self._oversize_logged:
                log.warning(
                    "GPU pillarization: %d points exceed torch_cuda.max_points %d; pillarizing such "
                    "clouds without the graph (raise max_points in config/inference.yaml)",
                    n,
                    self.max_points,
                )
                self._oversize_logged = True
            pts = np.ascontiguousarray(points[:, :cols], dtype=np.float32)
            self._big = t.from_numpy(pts).to(self.device)
            return -1
        i = next(k for k, size in enumerate(self.sizes) if n <= size)
        np.copyto(self._host_np[:n], points[:, :cols], casting="same_kind")
        self._buffers[i][:n].copy_(self._host[:n], non_blocking=True)
        self._n.fill_(n)
        return i

    def launch(self, i: int) -> list[Any] | None:
        """Pillarize the cloud :meth:`stage` put in bucket ``i`` into the model's input buffers.

        Replays the bucket's graph (or runs eagerly). Returns the tail's output tensors when the
        graph holds the tail too (the model ran: read its outputs there), else None (the caller
        runs the model). A fused graph reads every model input: upload the others first.
        """
        t = self._t
        with t.no_grad():
            if i < 0:
                big, self._big = self._big, None
                self._write(big, t.full((), int(big.shape[0]), dtype=t.long, device=self.device))
                return None
            if self._graphs[i] is None:
                self._write(self._buffers[i], self._n)
                return None
            self._graphs[i].replay()
            return self._tail_outs[i]

    def __call__(self, points: np.ndarray) -> list[Any] | None:
        """:meth:`stage` then :meth:`launch` (asynchronously; see :meth:`launch` for the result)."""
        with self._t.no_grad():
            return self.launch(self.stage(points))
