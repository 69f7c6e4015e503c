"""The ``vla-edge`` command: one entry point, one module per subcommand.

Each subcommand lives in ``vla_edge/cli/<name>.py`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` to a callable
taking the parsed namespace and returning an exit code. Subcommand modules import heavy
dependencies (rclpy, onnxruntime, ...) inside ``func`` so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from vla_edge import __version__
from vla_edge.blas_threads import limit_blas_threads
from vla_edge.errors import VlaEdgeError

# Order is the order shown by --help.
SUBCOMMANDS = ("demo", "drive", "replay", "explain", "sim", "build_engine", "bench", "config")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="vla-edge",
        description="On-vehicle learned planner with safety arbiter (ROS 2).",
    )
    parser.add_argument("--version", action="version", version=f"vla-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"vla_edge.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"vla_edge.cli.{name}":
                continue  # subcommand not part of this build
            raise
        module.register(sub)
    return parser


def run_parser(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, set up logging (``-v``: debug), run ``args.func``; typed errors -> exit code 1.

    Shared by ``vla-edge`` and ``vla-edge-train`` (their parsers have ``-v`` and ``func``).
    """
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VlaEdgeError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vla-edge`` console script."""
    limit_blas_threads()  # no numpy is loaded yet here (vla_edge/blas_threads.py says why)
    return run_parser(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
