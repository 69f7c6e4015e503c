"""``config/vehicle.yaml``: vehicle geometry and dynamic limits."""

from __future__ import annotations

from vla_edge.config_schema._base import NonNeg, Pos, Section, rng


class Vehicle(Section):
    name: str
    wheelbase: Pos
    width: Pos
    length: Pos
    base_link_to_rear: NonNeg
    height: Pos
    max_steer: rng(gt=0, lt=1.5708)
    max_speed: Pos
    max_accel: Pos
    max_decel: Pos
    max_jerk: Pos
    max_lat_accel: Pos
    max_yaw_rate: Pos


class VehicleFile(Section):
    vehicle: Vehicle
