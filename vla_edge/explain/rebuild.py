"""Rebuild the frames the vehicle saw from logged bags, with the vehicle's own code.

Inputs (LiDAR, odometry, reference path, camera) are replayed in log order through
:class:`~vla_edge.bag_frames.BagFrames`, the loop replay and training use too, which makes
the same :class:`~vla_edge.frame_assembly.FrameAssembler` calls the drive nodes make
(``add_odometry`` / ``add_reference_path`` / ``add_image`` / ``make_frame`` per sweep), so
each rebuilt :class:`~vla_edge.types.Frame` holds exactly what the node had when the
sweep arrived. Logged outputs (candidate trajectory, decision, final trajectory) are read
in a first, light pass and joined to frames by stamp.

Accepted bag arguments: a rosbag2 folder (``metadata.yaml``), a folder holding rosbag2
folders (a recorder output dir, ``splits/``, an events folder; searched recursively,
open ``_open/`` splits skipped), or a bare ``.mcap`` file. Consecutive recorder splits of
one session form one *run* (one assembler and one teacher state); every other bag is its
own run.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_edge.bag_frames import BagFrames, count_messages, frame_roles
from vla_edge.errors import BagError, VlaEdgeError
from vla_edge.msgfactory import stamp_to_sec
from vla_edge.types import Frame, Trajectory

LOG = logging.getLogger(__name__)

_SPLIT_RE = re.compile(r"^(?P<session>.+)_(?P<index>\d{6})$")


@dataclass
class Run:
    """Bags read together, in time order, with one assembler and one teacher state."""

    name: str
    bags: list[Path]


@dataclass
class LoggedOutputs:
    """What the vehicle published for one frame (None when not in the log)."""

    candidate: Trajectory | None = None
    decision: dict[str, Any] | None = None
    final: Trajectory | None = None


@dataclass
class RebuiltFrame:
    """One frame and the outputs logged for it."""

    run: str
    bag: str
    frame: Frame
    logged: LoggedOutputs = field(default_factory=LoggedOutputs)


def _is_bag(p: Path) -> bool:
    return (p.is_dir() and (p / "metadata.yaml").is_file()) or (p.is_file() and p.suffix in (".mcap", ".db3"))


def find_bags(path: str | Path) -> list[Path]:
    """Rosbag2 folders / MCAP files at or under ``path`` (sorted; ``_open`` skipped).

    Raises:
        BagError: If nothing readable is there.
    """
    p = Path(path)
    if _is_bag(p):
        return [p]
    if not p.is_dir():
        raise BagError(f"{p} is neither a rosbag2 folder, an .mcap/.db3 file nor a folder of bags")
    if (p / "splits").is_dir():
        p = p / "splits"  # a recorder output dir: events/ only holds copies of these splits
    found = sorted(
        {
            d.parent if d.name == "metadata.yaml" else d
            for d in [*p.rglob("metadata.yaml"), *p.rglob("*.mcap"), *p.rglob("*.db3")]
        }
    )
    bags = [b for b in found if "_open" not in b.parts and not (b.is_file() and _is_bag(b.parent))]
    if not bags:
        raise BagError(f"no rosbag2 (metadata.yaml) or .mcap under {p}")
    return bags


def group_runs(paths: list[str | Path]) -> list[Run]:
    """Expand arguments to bags and group consecutive recorder splits of one session."""
    runs: list[Run] = []
    seen: set[Path] = set()
    for arg in paths:
        for bag in find_bags(arg):
            if bag.resolve() in seen:
                continue  # e.g. the same split given directly and through its folder
            seen.add(bag.resolve())
            m = _SPLIT_RE.match(bag.name)
            if m and runs and runs[-1].name == f"{bag.parent}/{m['session']}":
                runs[-1].bags.append(bag)
            elif m:
                runs.append(Run(f"{bag.parent}/{m['session']}", [bag]))
            else:
                runs.append(Run(str(bag), [bag]))
    return runs


def path_to_trajectory(msg: Any, source: str) -> Trajectory | None:
    """``nav_msgs/Path`` (base_link, poses at stamp + k*dt) -> Trajectory; None if unusable."""
    from vla_edge.conversions import path_to_trajectory as convert

    try:
        traj = convert(msg)
    except VlaEdgeError as exc:
        LOG.debug("unusable logged %s path: %s", source, exc)
        return None
    traj.source = source
    return traj


def _key(stamp: float) -> int:
    return round(stamp * 1e6)  # microseconds: stamps pass through float and ROS Time


def read_outputs(
    run: Run, topics: dict[str, Any], remap: dict[str, str] | None = None
) -> dict[int, LoggedOutputs]:
    """First pass: logged candidate/decision/final keyed by frame stamp (µs)."""
    out_topics = topics["outputs"]
    wanted = {
        out_topics["candidate_trajectory"]: "candidate",
        out_topics["decision"]: "decision",
        out_topics["trajectory"]: "final",
    }
    logged: dict[int, LoggedOutputs] = {}
    for m in BagFrames(run.bags, wanted, remap=remap, name=run.name):
        kind = m.kind
        if kind == "decision":
            try:
                dec = json.loads(m.msg.data)
                stamp = float(dec["stamp"])
            except (ValueError, KeyError, TypeError):
                continue  # not an ArbiterDecision JSON: the row gets decision = null
            logged.setdefault(_key(stamp), LoggedOutputs()).decision = dec
        else:
            traj = path_to_trajectory(m.msg, "student" if kind == "candidate" else "final")
            if traj is not None:
                setattr(logged.setdefault(_key(traj.stamp), LoggedOutputs()), kind, traj)
    return logged


def iter_frames(
    run: Run,
    topics: dict[str, Any],
    frame_cfg: dict[str, Any],
    calibration_cfg: dict[str, Any],
    remap: dict[str, str] | None = None,
) -> Iterator[RebuiltFrame]:
    """Second pass: replay inputs in log order through the shared :class:`BagFrames` loop.

    Yields one :class:`RebuiltFrame` per LiDAR message that assembles; a sweep the
    assembler refuses (typed error) is logged and skipped, like on the vehicle.
    """
    logged = read_outputs(run, topics, remap)
    roles = frame_roles(topics, camera="both")
    for item in BagFrames(run.bags, roles, frame_cfg, calibration_cfg, remap=remap, name=run.name):
        if item.frame is not None:
            frame = item.frame
            yield RebuiltFrame(run.name, item.bag, frame, logged.get(_key(frame.stamp), LoggedOutputs()))


def lidar_count(run: Run, topics: dict[str, Any], remap: dict[str, str] | None = None) -> int:
    """Number of LiDAR messages in a run (for progress bars)."""
    return count_messages(run.bags, topics["inputs"]["lidar"], remap)


def stamp_of(msg: Any) -> float:
    """Header stamp of a message in float seconds."""
    return stamp_to_sec(msg.header.stamp)
