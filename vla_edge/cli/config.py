"""``vla-edge config``: check YAML files against the config schema, write its JSON schemas.

Actions:

* ``check [FILE...]`` - validate files (default: every shipped ``config/*.yaml``). An
  override file is merged over the shipped file of its kind first, as the loaders do.
  The kind comes from ``--kind``, else from the file name (``frame.yaml`` -> frame), a
  ``/**: ros__parameters`` file is a drive params file, and a file holding only
  vehicle/planner/arbiter/obstacles sections is a ``planning_config`` file.
* ``schema [--write | --check]`` - render ``config/schema/<name>.schema.json`` from the
  models in ``vla_edge/config_schema`` (descriptions from the shipped YAML comments).

Examples::

    vla-edge config check
    vla-edge config check my_arbiter_override.yaml --kind planning
    vla-edge config schema --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``config`` subcommand with its ``check`` and ``schema`` actions."""
    p = subparsers.add_parser(
        "config",
        help="check config YAML files, write the JSON schemas",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="config_command", metavar="ACTION")
    c = sub.add_parser(
        "check",
        help="validate YAML files against the schema (default: every shipped file)",
        description="Validate config files; exit 1 naming file, key and allowed range on the first bad file.",
    )
    c.add_argument("files", nargs="*", type=Path, help="YAML files (default: config/*.yaml)")
    c.add_argument(
        "--kind",
        default=None,
        help="schema of the files: a config/ file name (arbiter, sim, ...), 'planning' or 'drive' "
        "(default: from the file name / content)",
    )
    c.set_defaults(func=run_check)
    s = sub.add_parser(
        "schema",
        help="print or write config/schema/<name>.schema.json",
        description="Render the JSON schema of every config file from vla_edge/config_schema.",
    )
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the files (default: print to stdout)")
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed schema file is stale")
    s.add_argument("--dir", type=Path, default=None, help="output folder (default: config/schema)")
    s.set_defaults(func=run_schema)
    p.set_defaults(func=lambda _args: p.print_help() or 2)


def _kind_for(path: Path, data: dict[str, Any]) -> str:
    from vla_edge.config_schema import FILES, PLANNING_SECTIONS
    from vla_edge.errors import ConfigError

    if "/**" in data or any(isinstance(v, dict) and "ros__parameters" in v for v in data.values()):
        return "drive"
    if path.stem in FILES:
        return path.stem
    if data and set(data) <= set(PLANNING_SECTIONS):
        return "planning"
    raise ConfigError(f"{path}: cannot tell which config this is from its name or keys; pass --kind NAME")


def check_file(path: Path, kind: str | None = None) -> str:
    """Validate one file (merged over the shipped one of its kind); return its kind."""
    from vla_edge.config import load_config, load_yaml
    from vla_edge.nodes.params import resolve_overrides

    kind = kind or _kind_for(path, load_yaml(path))
    if kind == "drive":
        resolve_overrides(path)
    else:
        load_config(str(path.resolve()), kind=kind)
    return kind


def run_check(args: argparse.Namespace) -> int:
    """Check each file; print one line per file, errors to stderr; 1 if any file fails."""
    from vla_edge.config import config_dir
    from vla_edge.errors import ConfigError

    files = list(args.files) or sorted(config_dir().glob("*.yaml"))
    bad = 0
    for path in files:
        try:
            kind = check_file(path, args.kind)
        except ConfigError as exc:
            bad += 1
            print(f"FAIL {path}\n{exc}", file=sys.stderr)
            continue
        print(f"ok   {path} ({kind})")
    return 1 if bad else 0


def schema_texts() -> dict[str, str]:
    """``{file name: JSON text}`` of every schema file, as ``schema --write`` writes them."""
    from vla_edge.config import config_dir
    from vla_edge.config_schema import FILES, json_schema

    out = {}
    for kind in sorted(FILES):
        schema = json_schema(kind, config_dir() / f"{kind}.yaml")
        out[f"{kind}.schema.json"] = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    return out


def run_schema(args: argparse.Namespace) -> int:
    """Print, write or check the JSON schema files."""
    from vla_edge.config import config_dir

    folder: Path = args.dir or config_dir() / "schema"
    texts = schema_texts()
    if args.check:
        stale = [n for n, t in texts.items() if not (folder / n).is_file() or (folder / n).read_text() != t]
        for name in stale:
            print(f"stale: {folder / name} (run `vla-edge config schema --write`)", file=sys.stderr)
        return 1 if stale else 0
    if args.write:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            (folder / name).write_text(text, encoding="utf-8")
            print(f"wrote {folder / name}")
        return 0
    json.dump({n: json.loads(t) for n, t in texts.items()}, sys.stdout, indent=2)
    print()
    return 0
