"""``config/explain.yaml``: ``vla-edge explain`` teachers, flags, output and HTML."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from vla_edge.config_schema._base import Count, NonNegInt, Pos, Section, irng


class Student(Section):
    recompute_if_missing: bool
    engine: str
    backend: Literal["onnxruntime", "auto"]
    noise_seed: NonNegInt


class SceneTeacher(Section):
    corridor_half_width_m: Pos
    zone_near_m: Pos


class LearnedTeacher(Section):
    artefact: str
    backend: Literal["onnxruntime", "auto"]
    noise_seed: NonNegInt
    produce_command: str


class ExternalVLA(Section):
    endpoint: str
    jpeg_quality: irng(ge=1, le=100)


class Teachers(Section):
    scene: SceneTeacher
    learned: LearnedTeacher
    external_vla: ExternalVLA


class Flag(Section):
    fallback_choices: list[str]
    emergency_choices: list[str]
    divergence_m: Pos


class Output(Section):
    format: Literal["jsonl", "parquet"]
    html: bool


class Html(Section):
    max_plots: NonNegInt
    bev_range_m: Pos
    max_points: Count


class ExplainFile(Section):
    model_config = ConfigDict(**Section.model_config, protected_namespaces=())

    teacher: str = Field(min_length=1)
    topics_config: str
    frame_config: str
    calibration_config: str
    planning_config: str
    model_config_: str = Field(alias="model_config")
    student: Student
    teachers: Teachers
    flag: Flag
    output: Output
    html: Html
