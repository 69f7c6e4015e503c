"""ament_python package definition for vla_edge.

The same file serves ``colcon build`` on a vehicle (ROS from the system install) and
``pip install .[ros,train,dev]`` on a machine without ROS (ROS 2 from PyPI wheels).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vla_edge"

ROS_WHEELS = [
    "ros-rclpy",
    "ros-rmw-fastrtps-cpp",
    "ros-sensor-msgs",
    "ros-nav-msgs",
    "ros-geometry-msgs",
    "ros-std-msgs",
    "ros-std-srvs",
    "ros-diagnostic-msgs",
    "ros-visualization-msgs",
    "ros-rosgraph-msgs",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Learned planner with safety arbiter, Frenet fallback and bag logging for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "training", "training.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/schema", glob("config/schema/*.json")),
        # Every engine artefact a backend may load: ONNX (onnxruntime, TensorRT), its manifest,
        # TorchScript (torch-CUDA). test/test_install_files.py checks this list against the backends.
        (f"share/{PACKAGE}/engines", glob("engines/*.onnx") + glob("engines/*.json") + glob("engines/*.ts")),
    ],
    install_requires=[
        "setuptools",
        "numpy>=1.22",
        "pyyaml>=5.4",
        "pydantic>=2.5",  # config schema (vla_edge/config_schema): load-time checks, JSON schemas
        "opencv-python-headless>=4.6",
        "onnxruntime>=1.16",
        "rosbags>=0.10",
        "tqdm>=4.60",
        "matplotlib>=3.5",
    ],
    extras_require={
        # ROS 2 Kilted wheels for machines without a ROS install (Python 3.11).
        "ros": ROS_WHEELS,
        # The same message set from the Jazzy wheels (rclpy 7.1.6), for a compatibility run
        # against the vehicle distro's rclpy API (`make test-jazzy`). Do not mix with "ros".
        "jazzy": [
            "ros-jazzy-rclpy[fastrtps]",
            "ros-jazzy-sensor-msgs",
            "ros-jazzy-nav-msgs",
            "ros-jazzy-geometry-msgs",
            "ros-jazzy-std-msgs",
            "ros-jazzy-std-srvs",
            "ros-jazzy-diagnostic-msgs",
            "ros-jazzy-visualization-msgs",
        ],
        # Offline training / export only; the vehicle runtime never imports torch.
        "train": ["torch==2.13.0", "onnx>=1.15", "tensorboard>=2.14"],
        # Benchmark-only peers (x86_64 wheels; never a vehicle dependency).
        "bench": ["frenetix"],
        "dev": [
            "pytest>=7",
            "pytest-timeout>=2.1",
            "pytest-xdist>=3.3",
            "pytest-rerunfailures>=14",  # flaky(): wall-clock DDS timing tests on a shared 2-core runner
            "hypothesis>=6.80",
            "jsonschema>=4.18",  # test_config_schema checks the shipped YAML against config/schema/*.json
            "ruff>=0.5",
            "colcon-common-extensions",
            "ros-ament-package",
        ],
    },
    zip_safe=True,
    maintainer="vla_edge maintainers",
    maintainer_email="maintainers@vla-edge.dev",
    entry_points={
        "console_scripts": [
            "vla-edge = vla_edge.cli:main",
            "inference_node = vla_edge.nodes.inference_node:main",
            "arbiter_node = vla_edge.nodes.arbiter_node:main",
            "recorder_node = vla_edge.nodes.recorder_node:main",
            "vla-edge-train = training.cli:main",
        ],
    },
)
