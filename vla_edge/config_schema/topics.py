"""``config/topics.yaml``: topic names shared by the graph, bags, replay and training."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vla_edge.config_schema._base import Section

# Absolute or relative ROS name: letters, digits, '_', '/', '~' (no spaces, no '//').
Topic = Annotated[str, Field(pattern=r"^[~/]?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")]


class Inputs(Section):
    lidar: Topic
    camera_front: Topic
    camera_front_compressed: Topic
    odometry: Topic
    reference_path: Topic


class Outputs(Section):
    candidate_trajectory: Topic
    candidate_info: Topic
    trajectory: Topic
    decision: Topic
    diagnostics: Topic
    markers: Topic


class Sim(Section):
    objects: Topic
    expert_trajectory: Topic
    reasoning: Topic


class Services(Section):
    flag_event: Topic


class TopicsFile(Section):
    inputs: Inputs
    outputs: Outputs
    sim: Sim
    services: Services
