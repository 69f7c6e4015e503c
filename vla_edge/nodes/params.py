"""Drive parameters on a ROS node: declare them (descriptions from ``drive.yaml``), overrides,
and the node's topic names. The file parsing itself is ROS-free in :mod:`vla_edge.params`
(re-exported here for callers that import it from the nodes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vla_edge.config_schema import validate_drive_params
from vla_edge.errors import ConfigError
from vla_edge.params import (  # noqa: F401 - re-exported
    ROS_OWNED,
    coerce_like,
    default_params_file,
    flatten,
    load_params_file,
    parse_descriptions,
    resolve_overrides,
    unflatten,
)


def as_overrides(values: dict[str, Any]) -> list[Any]:
    """Turn ``{name: value}`` into ``rclpy.parameter.Parameter`` overrides for a Node."""
    from rclpy.parameter import Parameter

    return [Parameter(name, value=value) for name, value in values.items()]


def declare_drive_parameters(node: Any, params_file: str | Path | None = None) -> dict[str, Any]:
    """Declare every drive parameter on ``node`` with its description; return the values nested.

    Defaults come from the shipped ``drive.yaml`` (never from code); overrides given to the
    node (params file on the command line, ``parameter_overrides``) win.

    Args:
        node: An ``rclpy.node.Node``.
        params_file: File that defines names/defaults/descriptions; the shipped one by default.

    Returns:
        Nested mapping of the effective values, e.g. ``cfg["arbiter"]["deadline_ms"]``.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import ParameterException

    path = Path(params_file) if params_file else default_params_file()
    defaults = load_params_file(path)
    descriptions = parse_descriptions(path)
    values: dict[str, Any] = {}
    for name, default in defaults.items():
        if name in ROS_OWNED:
            continue
        descriptor = ParameterDescriptor(name=name, description=descriptions.get(name, ""))
        try:
            param = node.declare_parameter(name, default, descriptor)
        except ParameterException as exc:  # e.g. `deadline_ms: 70` where the file has 70.0
            raise ConfigError(
                f"parameter '{name}': {exc}; use the type of the shipped drive.yaml "
                f"({type(default).__name__}, e.g. {default!r})"
            ) from None
        values[name] = param.value
    values["use_sim_time"] = bool(node.get_parameter("use_sim_time").value)
    validate_drive_params(unflatten(values), f"parameters of node '{node.get_name()}'")
    frozen = set(values) - ROS_OWNED
    node.add_on_set_parameters_callback(lambda params: _refuse_runtime_change(params, frozen))
    return unflatten(values)


def _refuse_runtime_change(params: list[Any], frozen: set[str]) -> Any:
    """Drive parameters are read once at start-up; refuse ``ros2 param set`` instead of ignoring it."""
    from rcl_interfaces.msg import SetParametersResult

    changed = sorted(p.name for p in params if p.name in frozen)
    if changed:
        return SetParametersResult(
            successful=False, reason=f"{', '.join(changed)}: read at start-up; restart the node to change"
        )
    return SetParametersResult(successful=True)


def node_topics(topics: dict[str, Any]) -> dict[str, Any]:
    """``topics.yaml`` names made relative (leading ``/`` dropped) for the drive nodes.

    Without a namespace they resolve to the very names in ``topics.yaml`` (which replay,
    bags and the recorder's bag topics use as is); under ``namespace:=vla`` (launch) or
    ``--ros-args -r __ns:=/vla`` the whole graph moves to ``/vla/...``. Any single name can
    still be remapped with the usual ``-r from:=to``.
    """
    out = dict(topics)
    for section in ("inputs", "outputs", "services"):
        if isinstance(topics.get(section), dict):
            out[section] = {k: str(v).lstrip("/") for k, v in topics[section].items()}
    return out
