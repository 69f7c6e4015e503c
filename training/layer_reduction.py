"""Shallow-π-style layer reduction: a shallower student initialised from a subset of teacher layers.

``layer_reduction.keep`` maps a module-list prefix of the teacher to the indices kept, in order,
e.g. ``{"head.layers": [0, 3]}`` keeps decoder layers 0 and 3 of a 4-layer teacher, and
``{"backbone.stages.1": [0, 2, 5]}`` keeps three blocks of backbone stage 1 (keep block 0: it
changes stride/channels). :func:`derive_preset` builds the matching shallow preset (same widths,
fewer layers) in an in-memory copy of ``model.yaml``; :func:`reduce_state` copies the kept
teacher layers into it (student layer i ← teacher layer keep[i]) and every other tensor whose
name and shape match. The student is then trained with the distillation loss (task + output
matching), as Shallow-π does.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch

from training.model.config import resolve_preset
from vla_edge.errors import ConfigError

_STAGE = re.compile(r"^backbone\.stages\.(\d+)$")


def derive_preset(
    model_cfg: dict[str, Any], from_preset: str, keep: dict[str, list[int]]
) -> tuple[dict, str]:
    """Add ``<from_preset>_shallow`` to a copy of ``model_cfg``.

    Returns:
        ``(new model cfg, new preset name)``.

    Raises:
        ConfigError: On an unknown prefix or an index out of range.
    """
    cfg = copy.deepcopy(model_cfg)
    base = resolve_preset(cfg, from_preset)
    new = copy.deepcopy(base)
    new["stages"] = [list(s) for s in base["stages"]]
    for prefix, idx in keep.items():
        idx = [int(i) for i in idx]
        if prefix == "head.layers":
            n = int(base["decoder_layers"])
            if not idx or max(idx) >= n or min(idx) < 0:
                raise ConfigError(f"layer_reduction.keep[{prefix}] = {idx}: teacher has {n} decoder layers")
            new["decoder_layers"] = len(idx)
            continue
        m = _STAGE.match(prefix)
        if m is None or int(m.group(1)) >= len(base["stages"]):
            raise ConfigError(
                f"layer_reduction.keep: unknown prefix '{prefix}' (use head.layers or backbone.stages.<i>)"
            )
        s = int(m.group(1))
        n = int(base["stages"][s][1])
        if not idx or idx[0] != 0 or max(idx) >= n:
            raise ConfigError(
                f"layer_reduction.keep[{prefix}] = {idx}: must start with 0 and be < {n} blocks"
            )
        new["stages"][s][1] = len(idx)
    name = f"{from_preset}_shallow"
    cfg["presets"][name] = new
    return cfg, name


def reduce_state(
    teacher_state: dict[str, torch.Tensor], student: torch.nn.Module, keep: dict[str, list[int]]
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """A state dict for ``student`` from the kept teacher layers (plus every matching tensor).

    Returns:
        ``(state dict to load with strict=False, counts {"copied", "skipped"})``.
    """
    target = student.state_dict()
    out: dict[str, torch.Tensor] = {}
    copied = skipped = 0
    for name, tensor in target.items():
        src = name
        for prefix, idx in keep.items():
            m = re.match(re.escape(prefix) + r"\.(\d+)\.(.*)$", name)
            if m:
                src = f"{prefix}.{int(idx[int(m.group(1))])}.{m.group(2)}"
                break
        t = teacher_state.get(src)
        if t is not None and tuple(t.shape) == tuple(tensor.shape):
            out[name] = t.clone()
            copied += 1
        else:
            skipped += 1
    return out, {"copied": copied, "skipped": skipped}
