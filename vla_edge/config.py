"""Locate and load the YAML parameter files in ``config/``.

The YAML files are the single source of truth for parameters: code reads them through
:func:`load_config` and never carries its own defaults for values that live there.

Search order for the config directory:

1. ``$VLA_EDGE_CONFIG_DIR``;
2. the source tree (``<repo>/config``) when running from a checkout or editable install;
3. the ament share directory (``share/vla_edge/config``) of a colcon or pip install.
"""

from __future__ import annotations

import os
import sys
from dataclasses import field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vla_edge.errors import ConfigError

PACKAGE = "vla_edge"
T = TypeVar("T")


def _share_dir() -> Path | None:
    try:  # ament_index exists on a vehicle and with the ROS wheels
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - any failure means "not installed via ament"
        pass
    candidate = Path(sys.prefix) / "share" / PACKAGE
    return candidate if candidate.is_dir() else None


def package_root() -> Path:
    """Return the directory that holds ``config/``, ``launch/`` and ``engines/``."""
    src = Path(__file__).resolve().parents[1]
    if (src / "config").is_dir() and (src / "package.xml").is_file():
        return src
    share = _share_dir()
    if share is not None and (share / "config").is_dir():
        return share
    raise ConfigError(
        "cannot find the vla_edge config directory; set VLA_EDGE_CONFIG_DIR "
        "or install the package (pip install -e . or colcon build)"
    )


def config_dir() -> Path:
    """Directory holding the ``*.yaml`` parameter files."""
    env = os.environ.get("VLA_EDGE_CONFIG_DIR")
    if env:
        return Path(env)
    return package_root() / "config"


def engines_dir() -> Path:
    """Directory holding the shipped ONNX student and its manifest."""
    return package_root() / "engines"


def resolve_path(path: str | os.PathLike[str], base: Path | None = None) -> Path:
    """Resolve a path from a config file: absolute, ``~``, or relative to the package root."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute():
        return p
    if p.exists():
        return p.resolve()
    return (base or package_root()) / p


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load one YAML mapping with an error that names the file."""
    p = Path(path)
    try:
        with p.open("r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping, got {type(data).__name__}")
    return data


def _kind_of(name: str, path: Path) -> str | None:
    """Schema of a file named by ``name``: its short name, else the stem of a ``config/`` file."""
    from vla_edge.config_schema import FILES

    if path.stem in FILES and (not _is_path(name) or path.resolve().parent == config_dir().resolve()):
        return path.stem
    return None


def _is_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or os.sep in name


def load_config(name: str, kind: str | None = None) -> dict[str, Any]:
    """Load, merge and validate ``config/<name>.yaml`` or an override file.

    A short name (``"model"``) loads the shipped file. A path loads that file; when its
    schema is known (``kind``, or the name of a ``config/`` file) it is deep-merged over the
    shipped ``config/<kind>.yaml``, so an override holds only the keys it changes. The
    result is checked against the schema (``vla_edge/config_schema``): unknown keys, wrong
    types, NaN and out-of-range values fail here, naming the file, key path and range.

    Args:
        name: Short name such as ``"model"`` or ``"arbiter"``, or a file path.
        kind: Schema of the file (a short name in ``config_schema.KINDS``, or ``"planning"``
            for a file with any of the vehicle/planner/arbiter/obstacles sections).

    Returns:
        The parsed (merged) mapping.

    Raises:
        ConfigError: If the file is missing, malformed or fails the schema.
    """
    from vla_edge.config_schema import validate_config

    path = resolve_path(name) if _is_path(name) else config_dir() / f"{name}.yaml"
    data = load_yaml(path)
    kind = kind or _kind_of(name, path)
    if kind is None:
        return data
    if kind == "planning":
        return load_planning_sections(data, path)
    shipped = config_dir() / f"{kind}.yaml"
    if path.resolve() != shipped.resolve():
        from vla_edge.config_schema import deep_merge

        data = deep_merge(load_yaml(shipped), data)
    return validate_config(kind, data, path)


def load_planning_sections(
    override: dict[str, Any] | None, where: str | Path = "planning config"
) -> dict[str, Any]:
    """The four planning sections (vehicle, planner, arbiter, obstacles), validated.

    Each section of ``override`` is deep-merged over ``config/<section>.yaml`` (one key can
    be changed without copying the section); other top-level keys are refused.
    """
    from vla_edge.config_schema import PLANNING_SECTIONS, deep_merge, validate_config

    override = dict(override or {})
    unknown = sorted(set(override) - set(PLANNING_SECTIONS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown section(s) {', '.join(unknown)}; a planning config holds only "
            f"{', '.join(PLANNING_SECTIONS)} (each merged over config/<section>.yaml)"
        )
    merged: dict[str, Any] = {}
    for section in PLANNING_SECTIONS:
        base = load_yaml(config_dir() / f"{section}.yaml").get(section)
        merged[section] = deep_merge(base, override[section]) if section in override else base
    return validate_config("planning", merged, where)


def require(cfg: dict[str, Any], *keys: str, where: str = "config") -> Any:
    """Fetch a nested key, raising a :class:`ConfigError` that names the missing path."""
    node: Any = cfg
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"{where}: missing key '{'.'.join(keys[: i + 1])}'")
        node = node[key]
    return node


def at(path: str) -> Any:
    """Dataclass field whose value is the config key ``path`` (dotted); see :func:`build`.

    The YAML path sits next to the field, so a new parameter is one field line here plus
    one line in its schema model, and no hand-written mapping.
    """
    return field(metadata={"config": path})


def build(cls: type[T], cfg: dict[str, Any], where: str, **derived: Any) -> T:
    """Instantiate dataclass ``cls`` from a validated config: each :func:`at` field reads its key.

    Lists become tuples (frozen parameter objects). ``derived`` gives the fields computed
    from several keys (``max_curvature``) or built by other parameter classes.
    """
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        path = f.metadata.get("config")
        if path is not None:
            value = require(cfg, *path.split("."), where=where)
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values, **derived)
