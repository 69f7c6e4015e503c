"""Drive-graph parameters: one YAML file (``config/drive.yaml``), ROS params-file format.

The shipped file is the single source of parameter names, types, defaults and
descriptions: each key's trailing comment becomes its ``ParameterDescriptor.description``.
Nodes declare every key of that file; values given by ``ros2 launch`` (``--params-file``)
or by ``vla-edge drive`` (``parameter_overrides``) take precedence.

This module is ROS-free (core, replay, sim and the CLI use it); declaring the parameters on
a node lives in :mod:`vla_edge.nodes.params`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vla_edge.config import config_dir, load_yaml
from vla_edge.config_schema import validate_drive_params
from vla_edge.errors import ConfigError

#: Parameters that rclpy declares itself and that must not be declared again.
ROS_OWNED = frozenset({"use_sim_time"})


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
    from vla_edge.config_schema import yaml_comments

    skip = ("/**", "ros__parameters")
    return {
        ".".join(k for k in key.split(".") if k not in skip): comment
        for key, comment in yaml_comments(Path(path)).items()
    }


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
            try:
                values[name] = coerce_like(value, shipped[name], name)
            except ConfigError:
                values[name] = value  # the schema check below names file, key and allowed range
    where = " + ".join(w for w, _ in layers) or str(default_params_file())
    validate_drive_params(unflatten(values), where)  # ranges: NaN periods, negative deadlines...
    return values
