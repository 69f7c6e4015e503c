"""One schema for every YAML file in ``config/`` (pydantic v2 models, one module per file).

* :data:`FILES` maps the file's short name to its root model.
* :func:`validate_config` checks a mapping against it: unknown keys, wrong types,
  NaN/inf and out-of-range values raise a :class:`~vla_edge.errors.ConfigError` that
  names the file, the key path and the allowed range.
* :func:`deep_merge` layers an override file over the shipped one, so an override holds
  only the keys it changes.
* :func:`json_schema` renders the JSON schema written to ``config/schema/<name>.schema.json``
  (``vla-edge config schema --write``); descriptions come from the shipped YAML comments.

To add a key: add it to the shipped YAML (value + comment) and one line to the section
model in ``vla_edge/config_schema/<file>.py``, then run ``vla-edge config schema --write``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from vla_edge.config_schema._base import Section, validate
from vla_edge.config_schema.arbiter import Arbiter, ArbiterFile
from vla_edge.config_schema.calibration import CalibrationFile
from vla_edge.config_schema.demo import DemoFile
from vla_edge.config_schema.drive import DriveParams
from vla_edge.config_schema.explain import ExplainFile
from vla_edge.config_schema.frame import FrameFile
from vla_edge.config_schema.inference import InferenceFile
from vla_edge.config_schema.model import ModelFile
from vla_edge.config_schema.obstacles import Obstacles, ObstaclesFile
from vla_edge.config_schema.planner import Planner, PlannerFile
from vla_edge.config_schema.recorder import RecorderFile
from vla_edge.config_schema.replay import ReplayFile
from vla_edge.config_schema.sim import SimFile
from vla_edge.config_schema.topics import TopicsFile
from vla_edge.config_schema.train import TrainFile
from vla_edge.config_schema.vehicle import Vehicle, VehicleFile
from vla_edge.errors import ConfigError


class DriveNodeParams(Section):
    ros__parameters: DriveParams


class DriveFile(Section):
    """``drive.yaml`` as a ROS 2 params file (``/**: ros__parameters: ...``)."""

    all_nodes: DriveNodeParams = Field(alias="/**")


class PlanningFile(Section):
    """A ``planning_config`` file: the four planning sections, merged over config/."""

    vehicle: Vehicle
    planner: Planner
    arbiter: Arbiter
    obstacles: Obstacles


#: Root model of each shipped file, by short name (``config/<name>.yaml``).
FILES: dict[str, type[BaseModel]] = {
    "arbiter": ArbiterFile,
    "calibration": CalibrationFile,
    "demo": DemoFile,
    "drive": DriveFile,
    "explain": ExplainFile,
    "frame": FrameFile,
    "inference": InferenceFile,
    "model": ModelFile,
    "obstacles": ObstaclesFile,
    "planner": PlannerFile,
    "recorder": RecorderFile,
    "replay": ReplayFile,
    "sim": SimFile,
    "topics": TopicsFile,
    "train": TrainFile,
    "vehicle": VehicleFile,
}

#: Sections of a ``planning_config`` file, each merged over ``config/<section>.yaml``.
PLANNING_SECTIONS = ("vehicle", "planner", "arbiter", "obstacles")

#: Kinds :func:`validate_config` knows: every file, plus ``planning`` (the merged four).
KINDS: dict[str, type[BaseModel]] = {**FILES, "planning": PlanningFile}


def deep_merge(base: Any, override: Any) -> Any:
    """``override`` over ``base``: mappings merge key by key, anything else replaces.

    Lists replace whole (a list is one value). Neither input is modified.
    """
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def validate_config(kind: str, data: Any, where: str | Path) -> dict[str, Any]:
    """Check ``data`` against the schema of ``kind``; return ``data`` itself once it passed.

    The mapping is returned as read (not the model's dump) so readers see the YAML's values
    unchanged; :func:`parse_config` gives the typed model.

    Raises:
        ConfigError: Naming ``where``, each bad key path, what is wrong and the allowed range.
    """
    model = KINDS.get(kind)
    if model is None:
        raise ConfigError(f"no config schema named '{kind}' (known: {', '.join(sorted(KINDS))})")
    validate(model, data, str(where))
    return data


def parse_config(kind: str, data: Any, where: str | Path) -> Any:
    """The typed model of ``kind`` built from ``data`` (attribute access, ranges checked)."""
    model = KINDS.get(kind)
    if model is None:
        raise ConfigError(f"no config schema named '{kind}' (known: {', '.join(sorted(KINDS))})")
    return validate(model, data, str(where))


def validate_drive_params(params: dict[str, Any], where: str | Path) -> dict[str, Any]:
    """Check nested drive parameters (the ``ros__parameters`` mapping) against the schema."""
    validate(DriveParams, params, str(where))
    return params


# ----------------------------------------------------------------------------- JSON schema
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_/*][\w/*.-]*):(?P<rest>.*)$")


def yaml_comments(path: Path) -> dict[str, str]:
    """Dotted key -> trailing comment of its line (sections included) in a YAML file."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.lstrip().startswith(("#", "-")):
            continue
        m = _KEY.match(raw)
        if m is None:
            continue
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group("key")))
        _, sep, comment = m.group("rest").partition(" #")
        if sep and comment.strip():
            out[".".join(k for _, k in stack)] = comment.strip()
    return out


def _describe(schema: dict[str, Any], comments: dict[str, str]) -> None:
    """Put each YAML comment as ``description`` on its property (next to any ``$ref``)."""
    defs = schema.get("$defs", {})
    for dotted, text in comments.items():
        node: dict[str, Any] | None = schema
        prop: dict[str, Any] | None = None
        for part in dotted.split("."):
            if node is None:
                break
            ref = node.get("$ref")
            if ref:
                node = defs.get(ref.rsplit("/", 1)[-1])
            props = (node or {}).get("properties", {})
            prop = props.get(part)
            node = prop
        if prop is not None:
            prop["description"] = text


def _untitled(node: Any) -> Any:
    """Drop pydantic's generated ``title`` of every property (noise in diffs; YAML comments describe)."""
    if isinstance(node, dict):
        return {k: _untitled(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_untitled(v) for v in node]
    return node


def json_schema(kind: str, yaml_path: Path | None = None) -> dict[str, Any]:
    """JSON schema (draft 2020-12) of one config file, described from its YAML comments."""
    model = FILES[kind]
    schema = _untitled(model.model_json_schema(by_alias=True))
    if yaml_path is not None and yaml_path.is_file():
        _describe(schema, yaml_comments(yaml_path))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{kind}.schema.json",
        "title": f"config/{kind}.yaml",
        **{k: v for k, v in schema.items() if k != "title"},
    }


__all__ = [
    "FILES",
    "KINDS",
    "PLANNING_SECTIONS",
    "deep_merge",
    "json_schema",
    "parse_config",
    "validate_config",
    "validate_drive_params",
    "yaml_comments",
]
