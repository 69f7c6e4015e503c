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
from pathlib import Path
from typing import Any

import yaml

from vla_edge.errors import ConfigError

PACKAGE = "vla_edge"


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


def load_config(name: str) -> dict[str, Any]:
    """Load ``config/<name>.yaml`` (``name`` may also be a path to a YAML file).

    Args:
        name: Short name such as ``"model"`` or ``"arbiter"``, or a file path.

    Returns:
        The parsed mapping.

    Raises:
        ConfigError: If the file is missing or malformed.
    """
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        return load_yaml(resolve_path(name))
    return load_yaml(config_dir() / f"{name}.yaml")


def require(cfg: dict[str, Any], *keys: str, where: str = "config") -> Any:
    """Fetch a nested key, raising a :class:`ConfigError` that names the missing path."""
    node: Any = cfg
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"{where}: missing key '{'.'.join(keys[: i + 1])}'")
        node = node[key]
    return node


def check_range(
    value: Any,
    where: str,
    key: str,
    lo: float = -float("inf"),
    hi: float = float("inf"),
    lo_open: bool = False,
) -> float:
    """Return ``value`` as a finite float inside ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``).

    Minimal load-time range check (NaN, inf and out-of-range values are refused); the
    message names the file, the key and the allowed range.

    Raises:
        ConfigError: The value is not a number, not finite or out of range.
    """
    left = "(" if lo_open else "["
    allowed = f"{left}{lo:g}, {hi:g}]"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key} must be a number in {allowed}, got {value!r}") from None
    ok = v == v and abs(v) != float("inf") and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        raise ConfigError(f"{where}: {key} must be in {allowed}, got {value!r}")
    return v
