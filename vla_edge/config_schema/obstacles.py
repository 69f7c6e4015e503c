"""``config/obstacles.yaml``: LiDAR obstacle extraction and tracking."""

from __future__ import annotations

from vla_edge.config_schema._base import AnyFloat, Count, NonNeg, NonNegInt, Pos, Section, ordered


class Box(Section):
    x_min: AnyFloat
    x_max: AnyFloat
    y_min: AnyFloat
    y_max: AnyFloat
    check_order = ordered(("x_min", "x_max"), ("y_min", "y_max"), strict=True)


class Ground(Section):
    cell_size: Pos
    nominal_z: AnyFloat
    nominal_tolerance: NonNeg
    height_threshold: NonNeg
    max_height: Pos


class Grid(Section):
    resolution: Pos
    min_points: Count


class Clusters(Section):
    min_cells: Count
    min_points: Count


class Inflation(Section):
    margin: NonNeg
    n_circles: Count


class Tracking(Section):
    gate: Pos
    max_dt: Pos
    measurement_noise: Pos
    accel_noise: Pos
    initial_speed_std: Pos
    static_speed: NonNeg
    min_hits: NonNegInt
    max_moving_extent: Pos


class Obstacles(Section):
    roi: Box
    self_box: Box
    ground: Ground
    grid: Grid
    clusters: Clusters
    inflation: Inflation
    tracking: Tracking


class ObstaclesFile(Section):
    obstacles: Obstacles
