"""What a failed CUDA-graph capture leaves behind: its root cause, and a pending CUDA error.

Shared by the torch-CUDA backend's model graph and the GPU pillarization graph. torch is
passed in, never imported here (the vehicle runtime imports torch only for that backend).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

log = logging.getLogger(__name__)


def error_chain(exc: BaseException, limit: int = 4) -> str:
    """First lines of ``exc`` and its causes/contexts, root cause last.

    A failed capture surfaces as "operation failed due to a previous error during capture"
    from the graph's ``__exit__``; the op that broke it is in ``__context__``.
    """
    parts: list[str] = []
    cur: BaseException | None = exc
    while cur is not None and len(parts) < limit:
        text = str(cur).strip()
        parts.append(f"{type(cur).__name__}: {text.splitlines()[0][:200] if text else ''}")
        cur = cur.__cause__ or cur.__context__
    return " <- ".join(parts)


def clear_cuda_error(torch: Any) -> None:
    """Reset a pending non-sticky CUDA error left by an invalidated capture."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            rt = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - binding absent: try the next way
            continue
        rt.cudaGetLastError()
        break
    try:
        torch.cuda.synchronize()
    except RuntimeError as exc:  # the error surfaces once and is consumed
        log.info("torch_cuda: cleared CUDA error after failed capture: %s", str(exc).splitlines()[0][:200])
