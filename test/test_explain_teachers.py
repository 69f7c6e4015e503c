"""Teacher protocol, loader, scene facts, learned teacher artefact, external VLA adapter template."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vla_edge.config import load_config
from vla_edge.errors import ModelError
from vla_edge.explain.teachers import (
    ExternalVLAAdapter,
    SceneReasoningTeacher,
    Teacher,
    TeacherContext,
    TeacherError,
    load_teacher,
    project_on_path,
    reasoning_text,
    scene_facts,
)
from vla_edge.types import EgoState, Frame


def _frame(points: np.ndarray, v: float = 5.0, images: dict | None = None) -> Frame:
    path = np.stack([np.linspace(-5, 60, 66), np.zeros(66)], axis=1)
    return Frame(100.0, points.astype(np.float32), EgoState(100.0, 0, 0, 0, v), path, images or {})


def test_project_on_path_gives_arc_length_ahead_and_signed_offset() -> None:
    path = np.array([[-5.0, 0.0], [0.0, 0.0], [10.0, 0.0], [20.0, 10.0]])
    s, d = project_on_path(path, np.array([[5.0, 1.0], [5.0, -2.0], [-3.0, 0.5]]))
    assert s == pytest.approx([5.0, 5.0, -3.0]) and d == pytest.approx([1.0, -2.0, 0.5])


def test_scene_facts_find_the_obstacle_in_path_with_ttc() -> None:
    """Real obstacle extraction on a synthetic box of points 20 m ahead in the corridor."""
    from vla_edge.planning.cycle import load_planning_config
    from vla_edge.planning.obstacles import ObstacleParams, extract_obstacles

    rng = np.random.default_rng(0)
    ground = np.c_[rng.uniform(-30, 30, (4000, 2)), np.full(4000, 0.0), np.ones(4000)]
    box = np.c_[
        rng.uniform(19.5, 20.5, 400), rng.uniform(-0.8, 0.8, 400), rng.uniform(0.3, 1.5, 400), np.ones(400)
    ]
    side = np.c_[rng.uniform(5, 6, 200), rng.uniform(8, 9, 200), rng.uniform(0.3, 1.5, 200), np.ones(200)]
    pts = np.vstack([ground, box, side]).astype(np.float32)
    frame = _frame(pts, v=5.0)
    obs = extract_obstacles(pts, frame.stamp, ObstacleParams.from_config(load_planning_config()))
    facts = scene_facts(frame, obs, corridor_half_width=1.5, zone_near_m=15.0)
    assert facts.n_obstacles >= 2
    assert 17.0 < facts.nearest_in_path_m < 20.5
    assert facts.ttc_s == pytest.approx(facts.nearest_in_path_m / 5.0)
    assert facts.zones.get("front_far", 0) >= 1 and facts.zones.get("left_near", 0) >= 1
    text = reasoning_text(facts, {"choice": "frenet", "reasons": ["student_collision"]}, "Plan.")
    assert "in path" in text and "TTC" in text and "Vehicle chose frenet because student_collision" in text
    clear = scene_facts(_frame(ground.astype(np.float32)), None, 1.5, 15.0)
    assert "Path ahead is clear" in reasoning_text(clear, None, "")


def test_load_teacher_by_name_import_path_and_errors() -> None:
    cfg = load_config("explain")
    t = load_teacher("vla_edge.explain.teachers:SceneReasoningTeacher", cfg)
    assert isinstance(t, SceneReasoningTeacher) and isinstance(t, Teacher) and t.name == "scene"
    with pytest.raises(TeacherError, match=r"unknown teacher 'bogus'.*scene"):
        load_teacher("bogus", cfg)
    with pytest.raises(TeacherError, match="cannot import teacher"):
        load_teacher("vla_edge.explain.teachers:Nope", cfg)
    with pytest.raises(TeacherError, match="no explain"):
        load_teacher("builtins:dict", cfg)


def test_learned_teacher_missing_artefact_names_file_and_command(tmp_path: Path) -> None:
    cfg = copy.deepcopy(load_config("explain"))
    cfg["teachers"]["learned"]["artefact"] = str(tmp_path / "teacher.onnx")
    with pytest.raises(ModelError) as err:
        load_teacher("learned", cfg)
    msg = str(err.value)
    assert (
        str(tmp_path / "teacher.onnx") in msg and "vla-edge-train export" in msg and "--preset teacher" in msg
    )


def test_learned_teacher_runs_an_exported_artefact_with_onnxruntime(shared_data: Path) -> None:
    """No trained `teacher` preset ships; the shipped student ONNX has the same I/O contract,
    so it stands in as the artefact to exercise the real ORT path (not a teacher quality test)."""
    from vla_edge.config import engines_dir

    cfg = copy.deepcopy(load_config("explain"))
    cfg["teachers"]["learned"]["artefact"] = str(engines_dir() / "student.onnx")
    teacher = load_teacher("learned", cfg)
    pts = np.fromfile(shared_data / "lidar" / "kitti_000008.bin", dtype=np.float32).reshape(-1, 4)
    out = teacher.explain(_frame(pts), TeacherContext(0, "bag", {"choice": "student", "reasons": []}))
    assert out.trajectory is not None and out.trajectory.poses.shape == (8, 3) and out.trajectory.is_finite()
    assert 0.0 < out.confidence <= 1.0
    assert "Learned teacher plans" in out.reasoning and "Vehicle chose student" in out.reasoning


def test_external_vla_adapter_template_builds_requests_and_validates_responses(shared_data: Path) -> None:
    rgb = cv2.cvtColor(cv2.imread(str(shared_data / "camera_nuscenes_cam_front.jpg")), cv2.COLOR_BGR2RGB)
    frame = _frame(np.zeros((10, 4)), images={"front": rgb[::4, ::4]})
    adapter = ExternalVLAAdapter(load_config("explain"))
    req = adapter.build_request(frame, TeacherContext(0, "bag", {"choice": "frenet"}))
    json.dumps(req)  # JSON-safe
    assert req["format"] == "vla_edge.vla_request/1" and req["vehicle_decision"] == "frenet"
    jpeg = np.frombuffer(base64.b64decode(req["images_jpeg_b64"]["front"]), np.uint8)
    assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR).shape == rgb[::4, ::4].shape
    good = {"trajectory": [[1.0 * k, 0.0, 0.0] for k in range(1, 9)], "dt": 0.5, "reasoning": "slow down"}
    out = adapter.parse_response(json.dumps(good), frame.stamp)
    assert out.trajectory.poses.shape == (8, 3) and out.reasoning == "slow down" and np.isnan(out.confidence)
    with pytest.raises(TeacherError, match="reasoning"):
        adapter.parse_response({"trajectory": good["trajectory"], "dt": 0.5}, 0.0)
    with pytest.raises(TeacherError, match="T x 3"):
        adapter.parse_response({**good, "trajectory": [[1.0, 2.0]]}, 0.0)
    with pytest.raises(TeacherError, match="non-finite"):
        adapter.parse_response({**good, "trajectory": [[float("nan"), 0.0, 0.0]]}, 0.0)
    with pytest.raises(TeacherError, match="template"):  # never a fabricated result
        adapter.explain(frame, TeacherContext(0, "bag"))
