"""``config/calibration.yaml``: sensor extrinsics relative to base_link."""

from __future__ import annotations

from pydantic import Field

from vla_edge.config_schema._base import AnyFloat, Section


class Sensor(Section):
    frame_ids: list[str] = Field(min_length=1)
    xyz: list[AnyFloat] = Field(min_length=3, max_length=3)
    rpy: list[AnyFloat] = Field(min_length=3, max_length=3)


class CalibrationFile(Section):
    base_frame: str = Field(min_length=1)
    sensors: dict[str, Sensor]
