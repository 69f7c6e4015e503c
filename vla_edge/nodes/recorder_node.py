"""Recorder node: thin rclpy adapter around :class:`vla_edge.recording.Recorder`.

* Subscribes to every topic listed in ``config/recorder.yaml`` (names from
  ``config/topics.yaml``) with ``raw=True``, so callbacks get the CDR bytes and hand them
  to the recorder without deserialising or re-serialising. Inputs use SensorDataQoS,
  outputs reliable QoS (``vla_edge/nodes/qos.py``).
* Raw camera images are JPEG-encoded on the recorder's writer thread, not here.
* Serves ``std_srvs/Trigger`` at ``services.flag_event`` for operator event requests.
* Publishes its own ``DiagnosticStatus`` (inside a ``DiagnosticArray`` on
  ``outputs.diagnostics``): drops, queue depth, bytes; ERROR once the recorder turned
  itself off. Driving nodes never depend on this node.

Run: ``ros2 run vla_edge recorder_node --ros-args -p output_dir:=/data/log`` or
``python -m vla_edge.nodes.recorder_node --ros-args -p output_dir:=...``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from std_srvs.srv import Trigger

from vla_edge.config import load_config, require
from vla_edge.nodes.qos import reliable_qos, sensor_qos
from vla_edge.recording import Recorder

LOG = logging.getLogger(__name__)
_LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN, "ERROR": DiagnosticStatus.ERROR}


def _msg_class(msgtype: str) -> type:
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class RecorderNode(Node):
    """Records the drive graph's inputs and outputs (see module docstring).

    ROS parameters (also accepted as keyword arguments, which win):
        ``recorder_config``: ``config/<name>.yaml`` or path of the recorder config.
        ``topics_config``: ``config/<name>.yaml`` or path of the topic names.
        ``output_dir``: Output folder; empty = ``output_dir`` of the recorder config.

    Args:
        recorder_config: Override of the ``recorder_config`` parameter.
        topics_config: Override of the ``topics_config`` parameter.
        output_dir: Override of the ``output_dir`` parameter.
        node_name: ROS node name.
        **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``...).
    """

    def __init__(
        self,
        recorder_config: str | None = None,
        topics_config: str | None = None,
        output_dir: str | None = None,
        node_name: str = "vla_edge_recorder",
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        rec_name = self._param("recorder_config", "recorder", recorder_config)
        topics_name = self._param("topics_config", "topics", topics_config)
        out = self._param("output_dir", "", output_dir)
        self.rec_cfg = load_config(rec_name, kind="recorder")
        topics_cfg = load_config(topics_name, kind="topics")
        node_cfg = require(self.rec_cfg, "node", where="recorder.yaml")
        self.diag_name = str(require(node_cfg, "diagnostics_name", where="recorder.yaml node"))
        self.hardware_id = str(require(node_cfg, "hardware_id", where="recorder.yaml node"))
        self.close_timeout_s = float(require(node_cfg, "close_timeout_s", where="recorder.yaml node"))
        period = float(require(node_cfg, "diagnostics_period_s", where="recorder.yaml node"))

        self.recorder = Recorder(self.rec_cfg, topics_cfg, out or None)
        self.recorder.start()
        self._subs = []
        for spec in self.recorder.topics:
            qos = sensor_qos() if spec.sensor else reliable_qos()
            self._subs.append(
                self.create_subscription(
                    # Relative (namespace applies); recorded under the topics.yaml name.
                    _msg_class(spec.msgtype),
                    spec.topic.lstrip("/"),
                    self._callback(spec),
                    qos,
                    raw=True,
                )
            )
        self.diag_pub = self.create_publisher(
            DiagnosticArray,
            str(require(topics_cfg, "outputs", "diagnostics", where="topics.yaml")).lstrip("/"),
            reliable_qos(),
        )
        self.flag_srv = self.create_service(
            Trigger,
            str(require(topics_cfg, "services", "flag_event", where="topics.yaml")).lstrip("/"),
            self._on_flag,
        )
        self.diag_timer = self.create_timer(period, self.publish_diagnostics)
        self.publish_diagnostics()

    def _param(self, name: str, default: str, override: str | None) -> str:
        value = self.declare_parameter(name, default).value
        return str(override) if override is not None else str(value)

    def _callback(self, spec: Any) -> Any:
        record = self.recorder.record
        clock = self.get_clock()
        topic, msgtype = spec.topic, spec.msgtype

        def on_message(data: bytes) -> None:
            record(topic, msgtype, data, clock.now().nanoseconds)

        return on_message

    def _on_flag(self, request: Any, response: Any) -> Any:
        del request
        ok = self.recorder.flag_event("operator", "operator request", self.get_clock().now().nanoseconds)
        response.success = ok
        response.message = "event window flagged" if ok else f"recorder off: {self.recorder.status().message}"
        return response

    def diagnostic_status(self) -> DiagnosticStatus:
        """The recorder's status as a ``DiagnosticStatus``."""
        st = self.recorder.status()
        return DiagnosticStatus(
            level=_LEVELS[st.level],
            name=self.diag_name,
            message=st.message,
            hardware_id=self.hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in st.values.items()],
        )

    def publish_diagnostics(self) -> None:
        """Publish the status on the diagnostics topic."""
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [self.diagnostic_status()]
        self.diag_pub.publish(arr)

    def destroy_node(self) -> None:
        """Flush and close the open split, then destroy the node."""
        self.recorder.close(self.close_timeout_s)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``recorder_node`` (spins until Ctrl-C / shutdown, then closes the split)."""
    from vla_edge.nodes.spin import spin_nodes

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return spin_nodes([RecorderNode], args)


if __name__ == "__main__":
    sys.exit(main())
