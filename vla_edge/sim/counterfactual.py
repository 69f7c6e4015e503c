"""A parked object placed close ahead in the ego lane: a counterfactual of the current world.

The student meets parked objects from 40 m away in the scenario families and follows what the
expert did from there; it never sees one that is already close at cruise speed, the state a
crossing cart or a crew member stepping out creates, and plans straight through it
(``scripts/probe_obstacles.py``: 9 of 12 probes). Training adds such frames
(``onpolicy.counterfactual``): the visited world plus one box, rendered by the simulator's
sensors and labelled by the expert on that world; the rollout itself is not changed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vla_edge.sim.world import Boxes, World

#: class -> (length, width, height) m, the sizes the scenario families use for such objects
PARKED_SIZES = {
    "crew": (0.5, 0.6, 1.8),
    "baggage_cart": (2.5, 1.5, 1.5),
    "tug": (3.0, 1.8, 1.8),
    "cone": (0.4, 0.4, 0.7),
}
#: object id of the added box (the scenario's own ids are small)
COUNTERFACTUAL_ID = 10**6


def parked_box(world: World, cls: str, ahead: float, lateral: float = 0.0) -> Boxes:
    """One box of ``cls`` on the ego lane ``ahead`` m in front of the ego, ``lateral`` m to its left."""
    if cls not in PARKED_SIZES:
        raise ValueError(f"unknown object class {cls!r}; one of {sorted(PARKED_SIZES)}")
    x, y, yaw = world.lane.interp(world.ego_s() + float(ahead))
    x, y = x - np.sin(yaw) * lateral, y + np.cos(yaw) * lateral
    return Boxes(
        np.array([[x, y]]), np.array([yaw]), np.array([PARKED_SIZES[cls]]), np.zeros(1), np.array([cls]),
        np.array([COUNTERFACTUAL_ID]), np.array([0.5]), np.array([[255, 140, 0]], dtype=np.uint8),
        np.array([False]), np.zeros((1, 2)),
    )  # fmt: skip


def with_boxes(world: World, extra: Boxes) -> World:
    """A shallow copy of ``world`` with ``extra`` added to its static boxes (the world is not changed)."""
    return dataclasses.replace(
        world, static=Boxes.concat([world.static, extra]), _static_corners=None, _static_radius=None
    )
