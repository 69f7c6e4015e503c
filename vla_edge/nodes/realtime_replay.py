"""Realtime replay: play bags over DDS with ``/clock`` into the live graph, record its outputs.

The graph runs with ``use_sim_time`` and one of (``realtime.graph`` / ``--graph``):

* ``inprocess`` - :class:`~vla_edge.nodes.graph.DriveGraph` on its own executor thread in
  this process (the node classes ``vla-edge drive`` composes);
* ``subprocess`` - ``python -m vla_edge drive --use-sim-time --config <resolved params>``,
  stopped with SIGINT afterwards;
* ``external`` - nothing is started: the graph is already up (``ros2 launch vla_edge
  drive.launch.py use_sim_time:=true`` on a vehicle); replay plays and records only.

The :class:`~vla_edge.nodes.bag_player.BagPlayer` publishes only the graph's *inputs*
(LiDAR, odometry, reference path, and the camera the graph uses), never outputs logged in a
recorder bag. A recorder node-like listener (:class:`OutputRecorder`, a
:class:`~vla_edge.nodes.monitor.GraphMonitor` that also takes the candidate) keeps what the
graph published with wall receipt times. Latency of a frame = wall time of its
``/planning/trajectory`` receipt - wall time the sweep was published.

After the last message, ``/clock`` keeps advancing (at the playback rate) for
``realtime.settle_s`` without new outputs (at most ``realtime.max_wait_s``), so timers and
deadline watchdogs that run on sim time can decide the last frames.

rclpy is imported inside the functions only.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from vla_edge.config import load_config
from vla_edge.replay import ReplayError
from vla_edge.replay.lockstep import (
    ReplayResult,
    RunFrames,
    bev_points,
    clusters_of,
    expand_runs,
    input_roles,
    iter_run_frames,
    snapshot_indices,
)
from vla_edge.types import trajectory_to_json

log = logging.getLogger(__name__)

GRAPH_MODES = ("inprocess", "subprocess", "external")
_STABLE_S = 0.5  # s, input reader counts unchanged this long = discovery settled


def cdr_header_stamp(data: bytes) -> float:
    """Header stamp (s) of a serialized message that starts with ``std_msgs/Header``.

    CDR: 4-byte encapsulation header (byte 1: 0/1 = big/little endian), then
    ``int32 sec``, ``uint32 nanosec``. Saves deserializing a whole PointCloud2.
    """
    little = data[1] in (1, 3)
    sec, nsec = struct.unpack("<iI" if little else ">iI", data[4:12])
    return sec + nsec * 1e-9


def write_params_file(values: Mapping[str, Any], path: Path) -> Path:
    """Write resolved flat drive parameters as a ROS 2 params file (for the subprocess)."""
    from vla_edge.params import unflatten

    vals = {k: v for k, v in values.items() if k != "use_sim_time"}
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": unflatten(vals)}}, sort_keys=True))
    return path


def _recorder_class() -> type:
    """:class:`OutputRecorder` (defined lazily: it subclasses an rclpy node)."""
    from nav_msgs.msg import Path as PathMsg

    from vla_edge.conversions.trajectory import path_to_trajectory
    from vla_edge.nodes import qos
    from vla_edge.nodes.monitor import GraphMonitor

    class OutputRecorder(GraphMonitor):
        """GraphMonitor plus the student candidate (``candidate_trajectory``)."""

        def __init__(self, topics: dict[str, Any], **kw: Any) -> None:
            super().__init__(topics, node_name="vla_edge_replay_recorder", **kw)
            self.candidate_topic = topics["outputs"]["candidate_trajectory"]
            self.candidates: dict[float, dict[str, Any]] = {}
            self.sub_cand = self.create_subscription(
                PathMsg, self.candidate_topic, self._on_candidate, qos.reliable_qos(50)
            )

        def _on_candidate(self, msg: Any) -> None:
            try:
                traj = path_to_trajectory(msg, source="student")
            except Exception:  # noqa: BLE001 - a bad candidate is recorded as missing
                return
            with self.lock:
                self.candidates.setdefault(round(traj.stamp, 6), trajectory_to_json(traj))

    return OutputRecorder


class _Graph:
    """The drive graph under test, whichever way it runs."""

    def __init__(self, mode: str, values: Mapping[str, Any], context: Any, workdir: Path) -> None:
        if mode not in GRAPH_MODES:
            raise ReplayError(f"--graph must be one of {', '.join(GRAPH_MODES)}, got {mode!r}")
        self.mode = mode
        self.proc: subprocess.Popen[bytes] | None = None
        self.graph: Any = None
        vals = dict(values)
        vals["use_sim_time"] = True
        if mode == "inprocess":
            from vla_edge.nodes.graph import DriveGraph

            # same topology as `vla-edge drive` (frames shared in-process)
            self.graph = DriveGraph(vals, context=context, share_frames=True).start()
        elif mode == "subprocess":
            params = write_params_file(vals, workdir / "drive_params.yaml")
            cmd = [sys.executable, "-m", "vla_edge", "drive", "--use-sim-time", "--config", str(params)]
            self.log_path = workdir / "drive_subprocess.log"
            self._log = self.log_path.open("wb")
            # env is inherited: ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE stay the same
            self.proc = subprocess.Popen(
                cmd, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ)
            )

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def stop(self) -> None:
        if self.graph is not None:
            self.graph.stop()
            self.graph = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=10.0)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5.0)
            self._log.close()
            self.proc = None


def run_realtime(
    bags: Sequence[str | Path],
    values: Mapping[str, Any],
    replay_cfg: Mapping[str, Any],
    remap: Mapping[str, str],
    workdir: Path,
    *,
    graph: str | None = None,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Play ``bags`` in real time into the drive graph and collect per-frame records.

    Args:
        bags: Bag arguments.
        values: Flat drive parameters (the graph gets exactly these, plus use_sim_time).
        replay_cfg: ``replay.yaml`` mapping.
        remap: Topic remapping.
        workdir: Output folder (subprocess params file and log go there).
        graph: ``inprocess`` | ``subprocess`` | ``external`` (default ``realtime.graph``).
        rate: Playback speed (default ``realtime.rate``).
        progress: Called with 1 per published sweep.

    Raises:
        ReplayError: The graph did not come up in time or died.
    """
    rt = replay_cfg["realtime"]
    mode = str(graph or rt["graph"])
    rate = float(rate if rate is not None else rt["rate"])
    if not rate > 0:
        raise ReplayError(f"--rate must be > 0, got {rate}")
    if mode not in GRAPH_MODES:
        raise ReplayError(f"--graph must be one of {', '.join(GRAPH_MODES)}, got {mode!r}")
    try:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
    except ImportError as exc:
        raise ReplayError(
            f"realtime replay needs rclpy ({exc}); source ROS 2 or pip install .[ros], or use --mode lockstep"
        ) from None

    from vla_edge.bagio import open_bag
    from vla_edge.nodes.bag_player import BagPlayer, RawMessage
    from vla_edge.params import unflatten

    cfg = unflatten(dict(values))
    topics = load_config(str(cfg["topics_config"]), kind="topics")
    roles = {t: r for t, r in input_roles(topics, str(cfg["camera"])).items() if r != "objects"}
    lidar_topic = topics["inputs"]["lidar"]
    runs = expand_runs(bags)

    ctx = Context()
    rclpy.init(context=ctx)
    the_graph: _Graph | None = None
    executor = None
    spin_thread = None
    stop_spin = threading.Event()
    pub_wall: dict[float, float] = {}
    order: list[tuple[str, float]] = []
    t_start = time.perf_counter()
    try:
        types: dict[str, str] = {}
        for run in runs:
            for bag_path in run.bags:
                with open_bag(bag_path, remap) as bag:
                    types.update({t: mt for t, mt in bag.topics.items() if t in roles})
        if lidar_topic not in types:
            raise ReplayError(f"no LiDAR topic {lidar_topic} in the bags; remap it with --remap FROM:=TO")
        player = BagPlayer(types, rate=rate, clock=True, clock_hz=float(rt["clock_hz"]), context=ctx)
        recorder = _recorder_class()(topics, context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(recorder)
        executor.add_node(player)

        def spin() -> None:
            while not stop_spin.is_set() and ctx.ok():
                executor.spin_once(timeout_sec=0.05)

        spin_thread = threading.Thread(target=spin, daemon=True)
        spin_thread.start()
        the_graph = _Graph(mode, values, ctx, workdir)
        _wait_ready(player, recorder, the_graph, list(types), float(rt["startup_timeout_s"]))
        t_ready = time.perf_counter()

        def on_publish(rec: Any, wall: float) -> None:
            if rec.topic == lidar_topic:
                stamp = round(cdr_header_stamp(rec.data), 6)
                pub_wall.setdefault(stamp, wall)
                if progress is not None:
                    progress(1)

        stats = []
        for run in runs:
            state_order: list[float] = []

            def records(run: Any = run, state_order: list[float] = state_order) -> Any:
                for bag_path in run.bags:
                    with open_bag(bag_path, remap) as bag:
                        for m in bag.messages([t for t in bag.topics if t in roles], raw=True):
                            if m.topic == lidar_topic:
                                state_order.append(round(cdr_header_stamp(m.msg), 6))
                            yield RawMessage(m.topic, m.msgtype, m.log_time_ns, m.msg)

            st = player.play(records(), on_publish=on_publish)
            stats.append(st)
            last_ns = round(max(state_order, default=0.0) * 1e9)
            _settle(
                player, recorder, the_graph, last_ns, rate, float(rt["settle_s"]), float(rt["max_wait_s"])
            )
            order.extend((run.name, s) for s in state_order)
        t_played = time.perf_counter()
        with recorder.lock:
            decisions = list(recorder.decisions)
            candidates = dict(recorder.candidates)
            first_rx = dict(recorder.first_rx)
    finally:
        stop_spin.set()
        if spin_thread is not None:
            spin_thread.join(timeout=5.0)
        if the_graph is not None:
            the_graph.stop()
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if ctx.ok():
            rclpy.shutdown(context=ctx)

    by_frame: dict[float, dict[str, Any]] = {}
    triggers: dict[str, int] = {}
    bag_end = max((s for _, s in order), default=0.0) + 1e-6
    decisions = [d for d in decisions if float(d.get("now", 0.0)) <= bag_end or d.get("trigger") != "cycle"]
    for d in decisions:
        triggers[str(d.get("trigger"))] = triggers.get(str(d.get("trigger")), 0) + 1
        key = round(float(d.get("frame_stamp", d.get("stamp", 0.0))), 6)
        by_frame.setdefault(key, d)  # the first decision published for the frame
    recs: list[dict[str, Any]] = []
    latency: list[float | None] = []
    for run_name, stamp in order:
        d = by_frame.get(stamp)
        rx = first_rx.get(stamp)
        lat = None if (rx is None or stamp not in pub_wall) else 1000.0 * (rx - pub_wall[stamp])
        latency.append(lat)
        rec: dict[str, Any] = {
            "run": run_name,
            "stamp": stamp,
            "choice": None if d is None else d["choice"],
            "reasons": [] if d is None else list(d["reasons"]),
            "student": candidates.get(stamp),
            "frenet": None if d is None else _traj(d.get("frenet")),
            "final": None if d is None else _traj(d.get("trajectory")),
            "latency_ms": None if lat is None else round(lat, 3),
            "trigger": None if d is None else d.get("trigger"),
        }
        recs.append(rec)
    n_sweeps = len(order)
    realtime = {
        "graph": mode,
        "rate": rate,
        "sweeps_published": n_sweeps,
        "frames_decided": sum(1 for r in recs if r["choice"] is not None),
        "candidates_received": sum(1 for r in recs if r["student"] is not None),
        "decisions_published": len(decisions),
        "extra_cycles": max(0, len(decisions) - len(by_frame)),
        "triggers": dict(sorted(triggers.items())),
        "late_publish_ms_max": round(max((s.late_ms_max for s in stats), default=0.0), 3),
    }
    states, snapshots = _tracks_and_snapshots(runs, recs, cfg, topics, replay_cfg, remap, decisions)
    timing = {
        "startup_s": t_ready - t_start,
        "play_s": t_played - t_ready,
        "frames": len(recs),
    }
    return ReplayResult(recs, states, snapshots, timing, realtime={**realtime, "latency_ms": latency})


def _traj(d: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not d or not d.get("poses"):
        return None
    return {"dt": round(float(d["dt"]), 6), "poses": d["poses"]}


def _wait_ready(player: Any, recorder: Any, graph: _Graph, inputs: list[str], timeout: float) -> None:
    """Bounded wait until every input has matched readers and our output readers are matched.

    Matching is checked on both ends (publisher ``get_subscription_count``, subscription
    ``get_publisher_count`` where rclpy has it), and the reader counts must stay unchanged
    for ``_STABLE_S`` (the topology - one or two readers per input - is the graph's
    business), so the first sweeps and the first outputs are not lost to discovery.
    """
    last: list[int] = []
    stable_since = time.monotonic()
    subs_out = [recorder.sub_traj, recorder.sub_dec, recorder.sub_cand]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not graph.alive():
            raise ReplayError(
                f"the drive graph exited during start-up; see {getattr(graph, 'log_path', 'its log')}"
            )
        counts = [player.pubs[t].get_subscription_count() for t in inputs]
        if counts != last:
            last, stable_since = counts, time.monotonic()
        ins = all(c > 0 for c in counts) and time.monotonic() - stable_since >= _STABLE_S
        if hasattr(subs_out[0], "get_publisher_count"):
            outs = all(s.get_publisher_count() > 0 for s in subs_out)
        else:  # Humble: only the graph view exists; give matching a moment after it appears
            outs = all(recorder.count_publishers(s.topic_name) > 0 for s in subs_out)
            if outs:
                time.sleep(1.0)
        if ins and outs:
            return
        time.sleep(0.1)
    raise ReplayError(
        f"the drive graph did not come up within {timeout:.0f} s (inputs subscribed / outputs published); "
        "check ROS_DOMAIN_ID, the engine path, or raise realtime.startup_timeout_s"
    )


def _settle(
    player: Any, recorder: Any, graph: _Graph, last_ns: int, rate: float, settle_s: float, max_wait_s: float
) -> None:
    """Keep /clock running after the bag until outputs stop for ``settle_s`` (wall)."""
    t0 = time.monotonic()
    last_count = -1
    quiet_since = t0
    while time.monotonic() - t0 < max_wait_s and graph.alive():
        now = time.monotonic()
        player.publish_clock(last_ns + int((now - t0) * rate * 1e9))
        with recorder.lock:  # new frames planned or candidates (not re-plans of the last frame)
            count = len(recorder.first_rx) + len(recorder.candidates)
        if count != last_count:
            last_count, quiet_since = count, now
        elif now - quiet_since >= settle_s:
            return
        time.sleep(0.02)


def _tracks_and_snapshots(
    runs: Sequence[Any],
    recs: Sequence[Mapping[str, Any]],
    cfg: Mapping[str, Any],
    topics: Mapping[str, Any],
    replay_cfg: Mapping[str, Any],
    remap: Mapping[str, str],
    decisions: Sequence[Mapping[str, Any]],
) -> tuple[list[RunFrames], list[dict[str, Any]]]:
    """Second pass over the bags (no pipeline): logged tracks and BEV points of a few frames."""
    rep = replay_cfg["report"]
    by_stamp = {(r["run"], r["stamp"]): r for r in recs}
    dec_by_stamp = {}
    for d in decisions:
        dec_by_stamp.setdefault(round(float(d.get("frame_stamp", 0.0)), 6), d)
    states, snaps = [], []
    for run in runs:
        state = RunFrames(run.name, list(run.bags))
        states.append(state)
        n = sum(1 for r in recs if r["run"] == run.name)
        picks = snapshot_indices(n, int(rep["bev_frames_per_bag"]))
        frames = iter_run_frames(
            run,
            topics=topics,
            remap=remap,
            frame_cfg=load_config(str(cfg["frame_config"]), kind="frame"),
            calibration_cfg=load_config(str(cfg["calibration_config"]), kind="calibration"),
            camera="none",
            reorder_window_s=float(replay_cfg["lockstep"]["reorder_window_s"]),
            state=state,
            ignore_classes=replay_cfg["metrics"]["collision"]["ignore_classes"],
        )
        for i, frame in enumerate(frames):
            if i not in picks:
                continue
            rec = by_stamp.get((run.name, round(frame.stamp, 6)))
            if rec is None:
                continue
            snaps.append(
                {
                    **rec,
                    "points": bev_points(frame.points, rep["bev_range_m"], int(rep["bev_max_points"])),
                    "clusters": clusters_of(dec_by_stamp.get(rec["stamp"])),
                }
            )
    return states, snaps
