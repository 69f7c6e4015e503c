"""Launch the vla_edge drive graph: inference node, arbiter node and (optionally) recorder.

Usage on a vehicle (after ``colcon build`` and sourcing the workspace)::

    ros2 launch vla_edge drive.launch.py
    ros2 launch vla_edge drive.launch.py config:=/path/to/drive.yaml backend:=tensorrt \\
        engine:=/opt/engines/student.onnx record:=true use_sim_time:=false namespace:=vla

Every node gets the same params file (``config/drive.yaml`` format, ``/**: ros__parameters``).
The nodes use the names of ``topics.yaml`` as relative names, so ``namespace:=vla`` moves the
whole graph (inputs and outputs) to ``/vla/...``; remap single topics with ``--ros-args -r``.
Arguments left empty keep the value from that file, so defaults live in one place only.
"""

from __future__ import annotations

import yaml
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "vla_edge"


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _record_from_file(config_file: str) -> bool:
    with open(config_file, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    return bool(data.get("/**", {}).get("ros__parameters", {}).get("record", False))


def _nodes(context, *args, **kwargs):
    """Build the node actions once the launch arguments are known."""
    config_file = LaunchConfiguration("config").perform(context)
    backend = LaunchConfiguration("backend").perform(context)
    engine = LaunchConfiguration("engine").perform(context)
    record = LaunchConfiguration("record").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    use_sim_time = _truthy(LaunchConfiguration("use_sim_time").perform(context))

    overrides = {"use_sim_time": use_sim_time}
    if backend:
        overrides["backend"] = backend
    if engine:
        overrides["engine_path"] = engine
    params = [config_file, overrides]
    record_on = _truthy(record) if record else _record_from_file(config_file)

    actions = [
        Node(
            package=PACKAGE,
            executable="inference_node",
            name="inference_node",
            namespace=namespace,
            parameters=params,
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package=PACKAGE,
            executable="arbiter_node",
            name="arbiter_node",
            namespace=namespace,
            parameters=params,
            output="screen",
            emulate_tty=True,
        ),
    ]
    if record_on:
        actions.append(
            Node(
                package=PACKAGE,
                executable="recorder_node",
                name="recorder_node",
                namespace=namespace,
                parameters=params,
                output="screen",
                emulate_tty=True,
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the nodes of the drive graph."""
    default_config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "drive.yaml"])
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config", default_value=default_config, description="ROS 2 params file (drive.yaml format)"
            ),
            DeclareLaunchArgument(
                "backend",
                default_value="",
                description="onnxruntime | tensorrt | torch_cuda (empty: from config)",
            ),
            DeclareLaunchArgument(
                "engine", default_value="", description="student ONNX path (empty: engine_path from config)"
            ),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="follow /clock (bag replay)"
            ),
            DeclareLaunchArgument(
                "record",
                default_value="",
                description="start the recorder node: true | false (empty: from config)",
            ),
            DeclareLaunchArgument(
                "namespace",
                default_value="",
                description="namespace of the nodes and their topics (topics.yaml names, used as relative)",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
