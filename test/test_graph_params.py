"""drive.yaml as a ROS params file: parsing, descriptions, overrides (no DDS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_edge.errors import ConfigError
from vla_edge.nodes.params import (
    coerce_like,
    default_params_file,
    flatten,
    load_params_file,
    parse_descriptions,
    resolve_overrides,
    unflatten,
)


def test_shipped_file_is_a_ros_params_file_with_a_description_per_key() -> None:
    values = load_params_file(default_params_file())
    desc = parse_descriptions(default_params_file())
    assert {
        "backend",
        "engine_path",
        "inference.deadline_ms",
        "arbiter.deadline_ms",
        "diagnostics.age_warn_s",
    } <= set(values)
    missing = [k for k in values if not desc.get(k)]
    assert not missing, f"keys without a comment (description + unit): {missing}"
    assert "[ms]" in desc["arbiter.deadline_ms"]


def test_flatten_roundtrip() -> None:
    tree = {"a": 1, "b": {"c": 2.0, "d": {"e": "x"}}}
    assert flatten(tree) == {"a": 1, "b.c": 2.0, "b.d.e": "x"}
    assert unflatten(flatten(tree)) == tree


def test_overrides_layer_and_coerce(tmp_path: Path) -> None:
    cfg = tmp_path / "drive.yaml"
    cfg.write_text("/**:\n  ros__parameters:\n    arbiter:\n      deadline_ms: 50\n    backend: tensorrt\n")
    values = resolve_overrides(cfg, {"backend": "onnxruntime", "use_sim_time": True, "record": None})
    assert values["arbiter.deadline_ms"] == 50.0 and isinstance(values["arbiter.deadline_ms"], float)
    assert values["backend"] == "onnxruntime" and values["use_sim_time"] is True
    assert values["record"] is False  # None means "not given"


def test_unknown_key_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "drive.yaml"
    cfg.write_text("/**:\n  ros__parameters:\n    arbitre:\n      deadline_ms: 50\n")
    with pytest.raises(ConfigError, match=r"unknown parameter 'arbitre\.deadline_ms'"):
        resolve_overrides(cfg)


def test_not_a_params_file(tmp_path: Path) -> None:
    cfg = tmp_path / "drive.yaml"
    cfg.write_text("backend: onnxruntime\n")
    with pytest.raises(ConfigError, match="ros__parameters"):
        load_params_file(cfg)


def test_node_section_merges_over_wildcard(tmp_path: Path) -> None:
    cfg = tmp_path / "drive.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n    noise_seed: 1\narbiter_node:\n  ros__parameters:\n    noise_seed: 2\n"
    )
    assert load_params_file(cfg)["noise_seed"] == 1
    assert load_params_file(cfg, "arbiter_node")["noise_seed"] == 2


def test_coerce_errors() -> None:
    assert coerce_like("true", False, "record") is True
    with pytest.raises(ConfigError, match="record"):
        coerce_like("maybe", False, "record")
    with pytest.raises(ConfigError, match="deadline"):
        coerce_like("fast", 1.0, "deadline")


def test_node_declares_every_key_with_description_and_refuses_runtime_changes(rclpy_context: object) -> None:
    import rclpy
    from rclpy.parameter import Parameter

    from vla_edge.nodes.params import as_overrides, declare_drive_parameters

    overrides = as_overrides({"arbiter.deadline_ms": 55.0, "use_sim_time": True})
    node = rclpy.create_node("params_probe", context=rclpy_context, parameter_overrides=overrides)
    try:
        cfg = declare_drive_parameters(node)
        assert cfg["arbiter"]["deadline_ms"] == 55.0 and cfg["use_sim_time"] is True
        shipped = load_params_file(default_params_file())
        assert cfg["diagnostics"]["age_warn_s"] == shipped["diagnostics.age_warn_s"]
        desc = node.describe_parameters(["arbiter.deadline_ms", "inference.deadline_ms"])
        assert all("[ms]" in d.description for d in desc)
        result = node.set_parameters([Parameter("arbiter.deadline_ms", value=10.0)])[0]
        assert not result.successful and "restart" in result.reason
        assert node.get_parameter("arbiter.deadline_ms").value == 55.0
    finally:
        node.destroy_node()


def test_drive_cli_bad_inputs_fail_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("rclpy")
    from vla_edge.cli import main

    bad_cfg = tmp_path / "drive.yaml"
    bad_cfg.write_text("/**:\n  ros__parameters:\n    arbiter:\n      deadlin_ms: 50\n")
    assert main(["drive", "--config", str(bad_cfg), "--duration", "0.1"]) == 1
    assert "unknown parameter 'arbiter.deadlin_ms'" in capsys.readouterr().err
    # Issue 14.8: a missing engine disables the student only; the Frenet fallback still drives
    # and the reason is an ERROR (log here, /diagnostics per sweep: test_fault_matrix).
    with caplog.at_level("ERROR"):
        assert main(["drive", "--engine", str(tmp_path / "missing.onnx"), "--duration", "0.1"]) == 0
    assert any(
        "missing.onnx" in r.getMessage() and "Frenet fallback only" in r.getMessage() for r in caplog.records
    )


def test_wrong_type_from_params_file_is_config_error(rclpy_context: object) -> None:
    import rclpy
    from rclpy.parameter import Parameter

    from vla_edge.nodes.params import declare_drive_parameters

    node = rclpy.create_node(
        "params_probe_type",
        context=rclpy_context,
        parameter_overrides=[Parameter("arbiter.deadline_ms", value=70)],
    )
    try:
        with pytest.raises(ConfigError, match=r"arbiter\.deadline_ms.*float"):
            declare_drive_parameters(node)
    finally:
        node.destroy_node()


def test_local_dds_env_sets_only_what_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    from vla_edge.nodes.qos import local_dds_env

    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    done = local_dds_env()
    import os

    assert os.environ["ROS_DOMAIN_ID"] == "42" and "ROS_DOMAIN_ID" not in done
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    profile = Path(os.environ["FASTDDS_DEFAULT_PROFILES_FILE"])
    assert profile.name == "fastdds_shm.xml" and profile.is_file()
    assert "127.0.0.1" in profile.read_text() and "<type>SHM</type>" in profile.read_text()


def test_camera_input_reaches_the_frame_over_dds(rclpy_context: object, shared_data: Path) -> None:
    """`camera: compressed`: the real camera JPEG travels over DDS into Frame.images."""
    import time

    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CompressedImage

    from vla_edge.config import load_config
    from vla_edge.nodes.feeder import SensorFeeder, load_scan
    from vla_edge.nodes.frames import CAMERA_NAME, FrameSource, default_lidar_frame
    from vla_edge.nodes.qos import sensor_qos

    cfg = unflatten(resolve_overrides(None, {"camera": "compressed"}))
    topics = load_config("topics")
    node = rclpy.create_node("camera_probe", context=rclpy_context)
    feeder = SensorFeeder(topics, default_lidar_frame(), context=rclpy_context)
    source = FrameSource(node, cfg, topics, group=None, lidar=False)
    pub = feeder.create_publisher(CompressedImage, topics["inputs"]["camera_front_compressed"], sensor_qos())
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    executor.add_node(feeder)
    try:
        end = time.monotonic() + 20
        while pub.get_subscription_count() < 1 or feeder.readers()["odometry"] < 1:
            assert time.monotonic() < end, "camera/odometry subscriptions did not match"
            executor.spin_once(timeout_sec=0.05)
        jpeg = (shared_data / "camera_nuscenes_cam_front.jpg").read_bytes()
        stamp = feeder.clock_now()
        image = CompressedImage(format="jpeg", data=jpeg)
        image.header = feeder.factory.header(stamp, "camera_front")
        for k in range(5):
            feeder.publish_odometry(stamp - 0.04 + 0.02 * k)
        feeder.publish_reference_path(stamp)
        pub.publish(image)
        end = time.monotonic() + 10
        while time.monotonic() < end and not source.assembler._images:
            executor.spin_once(timeout_sec=0.05)
        feeder.set_cloud(load_scan(str(shared_data / "lidar" / "kitti_000008.bin")))
        cloud = feeder._cloud_template
        cloud.header.stamp.sec, cloud.header.stamp.nanosec = int(stamp), int((stamp % 1) * 1e9)
        frame = source.assemble(cloud)
    finally:
        executor.shutdown(timeout_sec=2.0)
        feeder.destroy_node()
        node.destroy_node()
    img = frame.images[CAMERA_NAME]
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.shape[0] > 100
    assert CAMERA_NAME in frame.ages and abs(frame.ages[CAMERA_NAME]) < 0.01


def test_out_of_range_from_params_file_is_config_error(rclpy_context: object) -> None:
    # issue 14 item 7: what `ros2 launch ... --params-file` gives the node is range-checked too.
    import rclpy
    from rclpy.parameter import Parameter

    from vla_edge.nodes.params import declare_drive_parameters

    node = rclpy.create_node(
        "params_probe_range",
        context=rclpy_context,
        parameter_overrides=[Parameter("arbiter.cycle_period_ms", value=float("nan"))],
    )
    try:
        with pytest.raises(ConfigError, match=r"params_probe_range.*cycle_period_ms = NaN.*0 < value"):
            declare_drive_parameters(node)
    finally:
        node.destroy_node()
