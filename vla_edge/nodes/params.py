"""Drive-graph parameters: one YAML file (``config/drive.yaml``), ROS params-file format.

The shipped file is the single source of parameter names, types, defaults and
descriptions: each key's trailing comment becomes its ``ParameterDescriptor.description``.
Nodes declare every key of that file; values given by ``ros2 launch`` (``--params-file``)
or by ``vla-edge drive`` (``parameter_overrides``) take precedence.

Only :func:`declare_drive_parameters` and :func:`as_overrides` touch rclpy (lazily), so the
file parsing is testable without ROS.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vla_edge.config import config_dir, load_yaml
from vla_edge.errors import ConfigError

#: Parameters that rclpy declares itself and that must not be declared again.
ROS_OWNED = frozenset({"use_sim_time"})

_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_/*][\w/*.-]*):(?P<rest>.*)$")


def default_params_file() -> Path:
    """Path of the shipped ``drive.yaml`` (source tree, share dir or ``$VLA_EDGE_CONFIG_DIR``)."""
    return config_dir() / "drive.yaml"


def _section(data: dict[str, Any], node_name: str | None, where: str) -> dict[str, Any]:
    """Merge ``/**`` and (if given) ``<node_name>`` ``ros__parameters`` sections."""
    out: dict[str, Any] = {}
    keys = ["/**"] + ([node_name, f"/{node_name}"] if node_name else [])
    found = False
    for key in keys:
        sec = data.get(key)
        if sec is None:
            continue
        if not isinstance(sec, dict) or not isinstance(sec.get("ros__parameters"), dict):
            raise ConfigError(f"{where}: section '{key}' must contain a 'ros__parameters' mapping")
        out.update(flatten(sec["ros__parameters"]))
        found = True
    if not found:
        raise ConfigError(
            f"{where}: not a ROS 2 params file; expected a top-level '/**:' with 'ros__parameters:' "
            "(see config/drive.yaml)"
        )
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to ROS dotted parameter names (``a: {b: 1}`` -> ``a.b``)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten`."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def load_params_file(path: str | Path, node_name: str | None = None) -> dict[str, Any]:
    """Read a ROS 2 params file and return flat ``{dotted_name: value}``.

    Args:
        path: The YAML file.
        node_name: Also merge this node's own section over ``/**`` when present.

    Raises:
        ConfigError: If the file is missing, malformed or not in params-file format.
    """
    return _section(load_yaml(path), node_name, str(path))


def parse_descriptions(path: str | Path) -> dict[str, str]:
    """Map dotted parameter names to the trailing comment of their line in ``path``."""
    descriptions: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        m = _KEY_LINE.match(raw)
        if m is None:
            continue
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group("key")))
        rest = m.group("rest")
        value, _, comment = rest.partition(" #")
        if value.strip():  # a leaf; skip '/**' and 'ros__parameters'
            keys = [k for _, k in stack if k not in ("/**", "ros__parameters")]
            descriptions[".".join(keys)] = comment.strip()
    return descriptions


def coerce_like(value: Any, like: Any, name: str) -> Any:
    """Convert an override to the type of the shipped default (``95`` -> ``95.0``).

    Raises:
        ConfigError: If the value cannot be converted.
    """
    try:
        if isinstance(like, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
        if isinstance(like, str):
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"parameter '{name}': cannot use {value!r} where the shipped drive.yaml "
            f"has a {type(like).__name__}"
        ) from None
    return value


def resolve_overrides(
    config_file: str | Path | None, cli: dict[str, Any] | None = None, node_name: str | None = None
) -> dict[str, Any]:
    """Values for ``vla-edge drive``: shipped defaults < ``config_file`` < CLI flags.

    Unknown keys are refused so typos do not pass silently.
    """
    shipped = load_params_file(default_params_file(), node_name)
    values = dict(shipped)
    layers = []
    if config_file is not None:
        layers.append((str(config_file), load_params_file(config_file, node_name)))
    if cli:
        layers.append(("command line", {k: v for k, v in cli.items() if v is not None}))
    for where, layer in layers:
        for name, value in layer.items():
            if name in ROS_OWNED:
                values[name] = bool(value)
                continue
            if name not in shipped:
                raise ConfigError(
                    f"{where}: unknown parameter '{name}' (known: {', '.join(sorted(shipped))})"
                )
            values[name] = coerce_like(value, shipped[name], name)
    return values


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
