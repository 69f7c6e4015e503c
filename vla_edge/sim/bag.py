"""Short import path for other sessions: ``from vla_edge.sim.bag import write_scenario_bag``."""

from __future__ import annotations

from vla_edge.sim.bag_writer import GenerateResult, generate_scenario, write_scenario_bag

__all__ = ["GenerateResult", "generate_scenario", "write_scenario_bag"]
