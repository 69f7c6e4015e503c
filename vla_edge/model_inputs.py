"""The one builder of the student's input tensors (``docs/architecture.md``, "Model I/O").

Runtime inference, the training dataset, evaluation, export and on-policy collection all
call :func:`model_inputs`, so a change of the input layout happens in one place. The
diffusion ``noise`` input is not built here: its seed policy differs (runtime seed, training
batches).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_edge.pillarize import PillarSpec, ego_state_input, pillarize, reference_path_input


def model_inputs(
    spec: PillarSpec,
    points: np.ndarray | None,
    reference_path: np.ndarray,
    ego: Any = None,
    batch: bool = False,
) -> dict[str, np.ndarray]:
    """Contract inputs without the noise, as numpy arrays.

    Args:
        spec: Pillar/input spec of the model.
        points: N x 4 (x, y, z, intensity) in ``base_link``; None leaves out the pillar inputs
            (callers that store points sparsely and pillarize later).
        reference_path: M x 2 ego-frame path.
        ego: :class:`~vla_edge.types.EgoState` or ``(v, a, yaw_rate)``; None leaves out ``ego_state``.
        batch: Add a leading batch dimension of 1.

    Returns:
        ``pillar_features`` [P, M, C] float32, ``pillar_coords`` [P, 2] int32, ``pillar_count``
        int32 (shape [1] when batched), ``ego_state`` [6] float32, ``reference_path`` [K, 2] float32.

    Raises:
        ModelInputError: Unusable points, path or ego state.
    """
    out: dict[str, np.ndarray] = {}
    if points is not None:
        feats, coords, count = pillarize(points, spec)
        out["pillar_features"], out["pillar_coords"] = feats, coords
        out["pillar_count"] = np.array(count, dtype=np.int32)
    if ego is not None:
        out["ego_state"] = ego_state_input(ego, spec)
    out["reference_path"] = reference_path_input(reference_path, spec)
    if batch:
        out = {k: (v.reshape(1) if v.ndim == 0 else v[None]) for k, v in out.items()}
    return out


def frame_inputs(
    frame: Any, spec: PillarSpec, batch: bool = False, points: bool = True
) -> dict[str, np.ndarray]:
    """:func:`model_inputs` of a :class:`~vla_edge.types.Frame`."""
    return model_inputs(spec, frame.points if points else None, frame.reference_path, frame.ego, batch)
