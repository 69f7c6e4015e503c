"""Recorder node in-process: operator service, own diagnostics, ERROR when it cannot write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import requires_rclpy, wait_until

from vla_edge.config import load_config

pytestmark = [pytest.mark.ros, requires_rclpy, pytest.mark.timeout(60)]


def _cfg_file(tmp_path: Path) -> str:
    cfg = load_config("recorder")
    cfg["ring"]["min_free_mb"] = 1
    cfg["node"]["diagnostics_period_s"] = 0.1
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump(cfg), "utf-8")
    return str(path)


def _call_flag(node: Any, ex: Any, topics: dict[str, Any]) -> Any:
    from std_srvs.srv import Trigger

    cli = node.create_client(Trigger, topics["services"]["flag_event"])
    assert wait_until(cli.service_is_ready, 20.0, spin=lambda: ex.spin_once(timeout_sec=0.05))
    fut = cli.call_async(Trigger.Request())
    assert wait_until(fut.done, 20.0, spin=lambda: ex.spin_once(timeout_sec=0.05))
    node.destroy_client(cli)
    return fut.result()


def test_operator_service_diagnostics_and_unwritable_dir(tmp_path: Path, rclpy_context: Any) -> None:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import String

    from vla_edge.nodes.qos import reliable_qos
    from vla_edge.nodes.recorder_node import RecorderNode

    topics = load_config("topics")
    cfg = _cfg_file(tmp_path)
    client = Node("recorder_node_test", context=rclpy_context)
    seen: list[DiagnosticStatus] = []

    def on_diag(arr: DiagnosticArray) -> None:
        seen.extend(s for s in arr.status if s.name == "vla_edge/recorder")

    client.create_subscription(DiagnosticArray, topics["outputs"]["diagnostics"], on_diag, reliable_qos())
    pub = client.create_publisher(String, topics["outputs"]["decision"], reliable_qos())
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(client)
    spin = lambda: ex.spin_once(timeout_sec=0.05)  # noqa: E731

    # 1) A healthy recorder: decisions recorded, operator request flags an event, status OK.
    rec = RecorderNode(recorder_config=cfg, output_dir=str(tmp_path / "log"), context=rclpy_context)
    ex.add_node(rec)
    try:
        assert wait_until(lambda: pub.get_subscription_count() > 0, 20.0, spin=spin)
        for i in range(5):
            pub.publish(String(data=json.dumps({"seq": i, "choice": "student"})))
        assert wait_until(lambda: rec.recorder.written >= 5, 20.0, spin=spin)
        res = _call_flag(client, ex, topics)
        assert res.success, res.message
        assert wait_until(lambda: any(s.level == DiagnosticStatus.OK for s in seen), 20.0, spin=spin)
    finally:
        ex.remove_node(rec)
        rec.destroy_node()  # flushes: closes the split, finishes the index
    (event,) = json.loads((tmp_path / "log" / "events" / "index.json").read_text())["events"]
    assert event["kind"] == "operator" and len(event["splits"]) == 1

    # 2) An unwritable output folder (a plain file in the way): ERROR, service refuses politely.
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    seen.clear()
    bad = RecorderNode(recorder_config=cfg, output_dir=str(blocker / "log"), context=rclpy_context)
    ex.add_node(bad)
    try:
        assert wait_until(lambda: any(s.level == DiagnosticStatus.ERROR for s in seen), 20.0, spin=spin)
        err = next(s for s in seen if s.level == DiagnosticStatus.ERROR)
        assert "recorder off" in err.message and {kv.key for kv in err.values} >= {
            "dropped_queue_full",
            "queue_depth",
            "bytes_written",
        }
        res = _call_flag(client, ex, topics)
        assert not res.success and "recorder off" in res.message
    finally:
        ex.remove_node(bad)
        bad.destroy_node()
        client.destroy_node()
