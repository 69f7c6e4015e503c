"""``config/demo.yaml``: the README's demo figures that ``vla-edge demo`` compares against."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vla_edge.config_schema._base import AnyFloat, NonNegInt, Pos, Section

Bounds = Annotated[list[AnyFloat | None], Field(min_length=2, max_length=2)]  # [min, max]; null = unbounded


class Scenario(Section):
    seed: NonNegInt
    seconds: Pos


class DemoFile(Section):
    scenario: Scenario
    measured_on: str
    load_warn_per_core: Pos
    expect: dict[str, Bounds]
