"""``vla-edge sim``: the airside scenario simulator.

Subcommands:

* ``generate`` - seeded scenarios driven by the privileged expert, written as rosbag2
  MCAP bags with the vehicle's topics (LiDAR, camera, odometry, reference path) plus
  ground truth under ``/sim/...``; one bag directory per scenario in ``--out``.

Example::

    vla-edge sim generate --scenarios 5 --seconds 60 --seed 1 --out runs/sim
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``sim`` subcommand and its ``generate`` action."""
    p = subparsers.add_parser(
        "sim",
        help="airside scenario simulator (generate synthetic bags)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="sim_command", metavar="ACTION")
    g = sub.add_parser(
        "generate",
        help="generate scenario bags driven by the expert",
        description="Generate seeded scenarios (expert-driven) as rosbag2 MCAP bags, one directory each.",
    )
    g.add_argument("--scenarios", type=int, default=1, help="number of scenarios (default 1)")
    g.add_argument("--seconds", type=float, default=20.0, help="recorded seconds per scenario (default 20)")
    g.add_argument("--seed", type=int, default=0, help="base seed; scenario i uses seed*1000+i (default 0)")
    g.add_argument(
        "--out", type=Path, required=True, help="output directory (bags go to OUT/<scenario name>)"
    )
    g.add_argument(
        "--family",
        action="append",
        default=None,
        help="scenario family to use (repeatable; default: all, cycled). One of: empty_road, "
        "crossing_cart, crew_stepping_out, blocked_lane, narrow_pass",
    )
    g.add_argument(
        "--difficulty",
        default=None,
        help="difficulty 0..1 or 'mixed' (uniform per scenario); default from config/sim.yaml",
    )
    g.add_argument("--lidar", default=None, help="LiDAR preset: 32x1024 (default) or 128x2048")
    g.add_argument(
        "--camera",
        default=None,
        choices=["raw", "jpeg", "none"],
        help="camera output: raw Image, jpeg CompressedImage, or none (default from config)",
    )
    g.add_argument("--overwrite", action="store_true", help="replace bags that already exist in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.set_defaults(func=run_generate)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def run_generate(args: argparse.Namespace) -> int:
    """Generate the scenarios; prints one summary line per bag and writes OUT/index.json."""
    import shutil

    from tqdm import tqdm

    from vla_edge.calibration import Calibration
    from vla_edge.config import load_config
    from vla_edge.errors import BagError
    from vla_edge.sim.bag_writer import generate_scenario
    from vla_edge.sim.scenarios import suite

    cfg = load_config("sim")
    if args.lidar is not None and args.lidar not in cfg["lidar"]["presets"]:
        print(
            f"vla-edge sim generate: unknown --lidar '{args.lidar}'; choose one of "
            f"{', '.join(cfg['lidar']['presets'])}",
            file=sys.stderr,
        )
        return 2
    if args.seconds <= 0:
        print("vla-edge sim generate: --seconds must be > 0", file=sys.stderr)
        return 2
    specs = suite(args.scenarios, args.seed, args.family, args.difficulty, cfg)
    calib = Calibration.from_config(load_config("calibration"))
    topics = load_config("topics")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    frames_each = round(args.seconds / float(cfg["time"]["frame_dt"]))
    bar = tqdm(total=frames_each * len(specs), unit="frame", desc="sim generate", disable=args.no_progress)
    index = []
    try:
        for spec in specs:
            path = out / spec.name
            if path.exists():
                if not args.overwrite:
                    raise BagError(f"{path} exists; pass --overwrite or choose another --out")
                shutil.rmtree(path)
            bar.set_postfix_str(spec.name)
            res = generate_scenario(
                spec,
                path,
                cfg,
                calib,
                topics,
                args.seconds,
                lidar_preset=args.lidar,
                camera_mode=args.camera,
                on_frame=lambda: bar.update(1),
            )
            index.append(
                {
                    "bag": spec.name,
                    "family": spec.family,
                    "seed": spec.seed,
                    "difficulty": spec.difficulty,
                    "frames": res.frames,
                    "messages": res.messages,
                    "collisions": len(res.collisions),
                    "seconds_wall": round(res.timing["total"], 2),
                }
            )
            tqdm.write(
                f"{path}: {res.frames} frames, {res.messages} messages, "
                f"{len(res.collisions)} expert collisions, {res.timing['total']:.1f} s"
            )
    finally:
        bar.close()
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return 0
