"""``config/calibration.yaml``: sensor extrinsics relative to base_link."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from vla_edge.config_schema._base import AnyFloat, Count, Pos, Section

Vec3 = Annotated[list[AnyFloat], Field(min_length=3, max_length=3)]


class CropBox(Section):
    min: Vec3
    max: Vec3

    @model_validator(mode="after")
    def _corners(self) -> CropBox:
        if any(lo > hi for lo, hi in zip(self.min, self.max)):
            raise ValueError(f"each of 'min' {self.min} must be <= 'max' {self.max}")
        return self


class Intrinsics(Section):
    width: Count
    height: Count
    fx: Pos
    fy: Pos
    cx: AnyFloat
    cy: AnyFloat


class Sensor(Section):
    frame_ids: list[str] = Field(min_length=1)
    xyz: Vec3
    rpy: Vec3
    crop_box: CropBox | None = None  # LiDAR only
    intensity_scale: Pos = 1.0  # LiDAR only: this sensor's intensity -> the student's 0..255 scale
    intrinsics: Intrinsics | None = None  # cameras only


class MountingPreset(Section):
    xyz: Vec3
    rpy: Vec3
    crop_box: CropBox
    intensity_scale: Pos = 1.0


class CalibrationFile(Section):
    base_frame: str = Field(min_length=1)
    lidar_preset: str
    sensors: dict[str, Sensor]
    mounting_presets: dict[str, MountingPreset]
