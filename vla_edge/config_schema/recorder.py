"""``config/recorder.yaml``: MCAP splits, disk ring, queue, events, node diagnostics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vla_edge.config_schema._base import Count, NonNeg, Pos, Section, irng


class Split(Section):
    max_duration_s: Pos
    max_size_mb: Pos
    fsync: bool
    rosbag_distro: Literal["auto", "humble", "iron", "jazzy", "kilted", "rolling"]


class Ring(Section):
    max_total_mb: Pos
    min_free_mb: NonNeg


class Queue(Section):
    max_messages: Count
    max_mb: Pos
    idle_poll_s: Pos


class Camera(Section):
    jpeg_quality: irng(ge=1, le=100)
    compress: dict[str, str]
    raw_preferred_for_s: NonNeg


class Topics(Section):
    inputs: list[str]
    outputs: list[str]


class Events(Section):
    pre_s: NonNeg
    post_s: NonNeg
    fallback_choices: list[str]
    emergency_choices: list[str]
    disagreement_m: Pos
    max_total_mb: NonNeg
    hardlink: bool


class Node(Section):
    diagnostics_period_s: Pos
    diagnostics_name: str = Field(min_length=1)
    hardware_id: str
    close_timeout_s: Pos


class RecorderFile(Section):
    enabled: bool
    output_dir: str = Field(min_length=1)
    split: Split
    ring: Ring
    queue: Queue
    camera: Camera
    topics: Topics
    topic_types: dict[str, str]
    events: Events
    node: Node
