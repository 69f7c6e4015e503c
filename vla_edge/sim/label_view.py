"""What a sensor-limited labeller may know: the objects inside the student's view, no intents.

The privileged expert plans from the whole world: agents up to ~100 m away, each agent's own
path, and the time at which a waiting agent will start. Its labels then depend on facts the
student cannot observe (its BEV covers ±40 m; a sweep shows no plan to start), so imitation
averages them. Seen in closed loop on the tuning seed (`crossing_cart_s9200006`): the expert
slows for a tug 49 m ahead and 28 m to the side, outside the student's grid, and the student,
trained on such labels, never slows and hits it.

A :class:`LabelView` gives the expert a world cut to the student's view: agents and static
objects with a footprint corner inside the pillar range (in the ego frame), painted stop lines
whose centre is inside it (the expert otherwise brakes for a line 55 m ahead, a few pixels of
the camera image), and
(:attr:`Expert.view <vla_edge.sim.expert.Expert>`) no anticipation of an agent's start
time: a waiting agent is planned as staying where it is until it moves. The agent's path
along its lane stays known: a moving agent's heading and speed are what two sweeps show.
The driving expert (scores, takeovers) stays privileged; only labels use the view
(``onpolicy.observable_labels`` in ``config/train.yaml``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from vla_edge.pillarize import PillarSpec
from vla_edge.sim.world import World


@dataclass(frozen=True)
class LabelView:
    """An axis-aligned box in the ego frame (metres): what the student's BEV covers."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float

    @classmethod
    def from_spec(cls, spec: PillarSpec) -> LabelView:
        """The pillar range of the model the labels are for."""
        r = spec.point_cloud_range
        return cls(float(r[0]), float(r[3]), float(r[1]), float(r[4]))

    def _inside(self, world: World, corners: np.ndarray) -> np.ndarray:
        """``(K,)`` True where any of the ``(K, 4, 2)`` odom-frame corners lies in view."""
        ego = world.ego
        c, s = np.cos(ego.yaw), np.sin(ego.yaw)
        dx, dy = corners[..., 0] - ego.x, corners[..., 1] - ego.y
        x, y = c * dx + s * dy, -s * dx + c * dy
        inside = (x >= self.x_min) & (x < self.x_max) & (y >= self.y_min) & (y < self.y_max)
        return inside.any(-1)

    def visible(self, world: World) -> World:
        """A shallow copy of ``world`` holding only what is in view (agents are shared, not
        copied: the expert does not change the world)."""
        agents = [a for a in world.agents if a.active and self._inside(world, a.boxes().corners()).any()]
        static = world.static
        if len(static):
            static = static.subset(self._inside(world, static.corners()))
        # painted stop lines (camera): the line's centre on the ego lane; the objects are shared,
        # so the world still updates their rule state
        lines = [
            ln for ln in world.stop_lines if self._inside(world, world.lane.interp(ln.s)[None, None, :2])[0]
        ]
        # the copy's static-box caches must not be the full world's
        return dataclasses.replace(
            world, agents=agents, static=static, stop_lines=lines, _static_corners=None, _static_radius=None
        )
