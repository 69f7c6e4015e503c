"""Config schema (vla_edge/config_schema): every shipped YAML, bad values per file, overrides, CLI."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from vla_edge.cli import main as cli_main
from vla_edge.cli.config import schema_texts
from vla_edge.config import config_dir, load_config, load_yaml
from vla_edge.config_schema import FILES, deep_merge, validate_config
from vla_edge.errors import ConfigError
from vla_edge.nodes.params import resolve_overrides

SCHEMA_DIR = config_dir() / "schema"
HAVE_JSONSCHEMA = importlib.util.find_spec("jsonschema") is not None
KINDS = sorted(FILES)


def _shipped(kind: str) -> dict[str, Any]:
    data = load_yaml(config_dir() / f"{kind}.yaml")
    return data["/**"]["ros__parameters"] if kind == "drive" else data


def _load_override(kind: str, override: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Write ``override`` as a file and load it the way the package does (merged, validated)."""
    path = tmp_path / f"my_{kind}.yaml"
    if kind == "drive":
        path.write_text(yaml.safe_dump({"/**": {"ros__parameters": override}}))
        return resolve_overrides(path)
    path.write_text(yaml.safe_dump(override))
    return load_config(str(path), kind=kind)


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_file_passes_the_models(kind: str) -> None:
    data = load_yaml(config_dir() / f"{kind}.yaml")
    assert validate_config(kind, data, kind) == json.loads(json.dumps(data))  # unchanged, all keys kept


@pytest.mark.skipif(not HAVE_JSONSCHEMA, reason="jsonschema not installed (pip install .[dev])")
@pytest.mark.parametrize("kind", KINDS)
def test_shipped_file_passes_the_committed_json_schema(kind: str) -> None:
    import jsonschema

    data = load_yaml(config_dir() / f"{kind}.yaml")
    schema = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)] == []
    bad = deep_merge(data, {"no_such_key": 1})  # the schema file refuses what the models refuse
    assert any("no_such_key" in e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(bad))


def test_committed_json_schemas_are_up_to_date() -> None:
    texts = schema_texts()
    assert sorted(texts) == sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json"))
    stale = [name for name, text in texts.items() if (SCHEMA_DIR / name).read_text() != text]
    assert stale == [], "run `vla-edge config schema --write` and commit config/schema/"
    # The schema is generated from the models: a key the models refuse is refused there too.
    frame = json.loads(texts["frame.schema.json"])
    assert frame["$defs"]["Odometry"]["additionalProperties"] is False
    assert frame["$defs"]["Odometry"]["properties"]["buffer_span_s"]["exclusiveMinimum"] == 0
    assert "[s]" in frame["$defs"]["Odometry"]["properties"]["buffer_span_s"]["description"]


# Per file: (override with an unknown key, with a wrong type, with an out-of-range value),
# each with the key path and the text the message must hold (the allowed range).
CASES: dict[str, list[tuple[dict[str, Any], str]]] = {
    "arbiter": [
        ({"arbiter": {"timing": {"frame_deadlin": 0.2}}}, "unknown key 'arbiter.timing.frame_deadlin'"),
        ({"arbiter": {"dt": "0.1"}}, "arbiter.dt = '0.1': Input should be a valid number"),
        (
            {"arbiter": {"dt": 2.0}},
            "arbiter.dt = 2.0: ... (allowed: number, 0 < value <= 1",
        ),
    ],
    "calibration": [
        ({"sensors": {"lidar": {"xyzz": [0, 0, 0]}}}, "unknown key 'sensors.lidar.xyzz'"),
        ({"base_frame": 5}, "base_frame = 5: Input should be a valid string"),
        (
            {"sensors": {"lidar": {"xyz": [1.0, 2.0]}}},
            "sensors.lidar.xyz = [1.0, 2.0]: List should have at least 3 items",
        ),
    ],
    "demo": [
        ({"scenario": {"seeds": 0}}, "unknown key 'scenario.seeds'; did you mean 'seed'?"),
        ({"expect": {"frames": 250}}, "expect.frames = 250: Input should be a valid list"),
        ({"load_warn_per_core": 0.0}, "load_warn_per_core = 0.0: ... (allowed: number, 0 < value)"),
    ],
    "drive": [
        ({"arbiter": {"no_such_key": 1.0}}, "unknown parameter 'arbiter.no_such_key'"),
        ({"arbiter": {"markers": "maybe"}}, "arbiter.markers = 'maybe': Input should be a valid boolean"),
        (
            {"diagnostics": {"drop_warn_ratio": 1.5}},
            "diagnostics.drop_warn_ratio = 1.5: ... (allowed: number, 0 <= value <= 1)",
        ),
    ],
    "explain": [
        ({"html": {"max_plot": 3}}, "unknown key 'html.max_plot'; did you mean 'max_plots'?"),
        (
            {"html": {"max_plots": 2.5}},
            "html.max_plots = 2.5: ... (allowed: integer, 0 <= value)",
        ),
        (
            {"teachers": {"external_vla": {"jpeg_quality": 0}}},
            "teachers.external_vla.jpeg_quality = 0: ... (allowed: integer, 1 <= value <= 100)",
        ),
    ],
    "frame": [
        ({"images": {"decode_all": True}}, "unknown key 'images.decode_all'"),
        ({"images": {"decode": "yes"}}, "images.decode = 'yes': Input should be a valid boolean"),
        (
            {"odometry": {"buffer_span_s": -2.0}},
            "odometry.buffer_span_s = -2.0: ... (allowed: number, 0 < value)",
        ),
    ],
    "inference": [
        ({"onnxruntime": {"threads": 2}}, "unknown key 'onnxruntime.threads'"),
        ({"warmup_runs": "3"}, "warmup_runs = '3': Input should be a valid integer"),
        (
            {"tensorrt": {"builder_optimization_level": 9}},
            "tensorrt.builder_optimization_level = 9: ... (allowed: integer, 0 <= value <= 5)",
        ),
    ],
    "model": [
        ({"pillars": {"max_pilars": 10}}, "unknown key 'pillars.max_pilars'; did you mean 'max_pillars'?"),
        (
            {"trajectory": {"num_poses": 8.5}},
            "trajectory.num_poses = 8.5: ... (allowed: integer, 1 <= value)",
        ),
        (
            {"trajectory": {"smoothing": {"grid_dt": 0.0}}},
            "trajectory.smoothing.grid_dt = 0.0: ... (allowed: number, 0 < value <= 1",
        ),
    ],
    "obstacles": [
        ({"obstacles": {"grid": {"res": 0.2}}}, "unknown key 'obstacles.grid.res'"),
        (
            {"obstacles": {"grid": {"min_points": "2"}}},
            "obstacles.grid.min_points = '2': Input should be a valid integer",
        ),
        (
            {"obstacles": {"tracking": {"accel_noise": -2.0}}},
            "obstacles.tracking.accel_noise = -2.0: ... (allowed: number, 0 < value)",
        ),
    ],
    "planner": [
        ({"planner": {"cost": {"jerkk": 0.1}}}, "unknown key 'planner.cost.jerkk'; did you mean 'jerk'?"),
        ({"planner": {"horizons": 5.0}}, "planner.horizons = 5.0: Input should be a valid list"),
        (
            {"planner": {"horizon": -5.0}},
            "planner.horizon = -5.0: ... (allowed: number, 0 < value)",
        ),
    ],
    "recorder": [
        (
            {"split": {"max_duration": 5.0}},
            "unknown key 'split.max_duration'; did you mean 'max_duration_s'?",
        ),
        ({"split": {"fsync": 1}}, "split.fsync = 1: Input should be a valid boolean"),
        (
            {"queue": {"max_messages": 0}},
            "queue.max_messages = 0: ... (allowed: integer, 1 <= value)",
        ),
    ],
    "replay": [
        ({"gate": {"min_abs": 0.1}}, "unknown key 'gate.min_abs'; did you mean 'min_abs_m'?"),
        (
            {"lockstep": {"noise_seed": "0"}},
            "lockstep.noise_seed = '0': ... (allowed: integer, 0 <= value or null)",
        ),
        (
            {"realtime": {"rate": 0.0}},
            "realtime.rate = 0.0: ... (allowed: number, 0 < value)",
        ),
    ],
    "sim": [
        (
            {"lidar": {"blocked_sector": []}},
            "unknown key 'lidar.blocked_sector'; did you mean 'blocked_sectors'?",
        ),
        (
            {"lidar": {"blocked_sectors": [["a", 10.0]]}},
            "lidar.blocked_sectors[0][0] = 'a': Input should be a valid number",
        ),
        (
            {"lidar": {"dropout": 1.5}},
            "lidar.dropout = 1.5: ... (allowed: number, 0 <= value <= 1)",
        ),
    ],
    "topics": [
        ({"inputs": {"radar": "/radar"}}, "unknown key 'inputs.radar'"),
        ({"inputs": {"lidar": 7}}, "inputs.lidar = 7: Input should be a valid string"),
        (
            {"outputs": {"trajectory": "/planning/my trajectory"}},
            "outputs.trajectory = '/planning/my trajectory': String should match pattern",
        ),
    ],
    "train": [
        ({"onpolicy": {"takeover": {"ttc_s": 1.0}}}, "unknown key 'onpolicy.takeover.ttc_s'"),
        ({"onpolicy": {"scenarios": 400}}, "onpolicy.scenarios = 400: Input should be a valid list"),
        (
            {"onpolicy": {"beta": 1.5}},
            "onpolicy.beta = 1.5: ... (allowed: number, 0 <= value <= 1)",
        ),
    ],
    "vehicle": [
        ({"vehicle": {"max_sped": 8.0}}, "unknown key 'vehicle.max_sped'; did you mean 'max_speed'?"),
        ({"vehicle": {"max_speed": True}}, "vehicle.max_speed = True: Input should be a valid number"),
        (
            {"vehicle": {"max_steer": 2.0}},
            "vehicle.max_steer = 2.0: ... (allowed: number, 0 < value < 1.5708)",
        ),
    ],
}


def test_every_file_has_bad_value_cases() -> None:
    assert sorted(CASES) == KINDS


@pytest.mark.parametrize("problem", ["unknown key", "wrong type", "out of range"])
@pytest.mark.parametrize("kind", KINDS)
def test_bad_value_is_refused_naming_file_key_and_range(kind: str, problem: str, tmp_path: Path) -> None:
    override, expected = CASES[kind][["unknown key", "wrong type", "out of range"].index(problem)]
    with pytest.raises(ConfigError) as err:
        _load_override(kind, override, tmp_path)
    msg = str(err.value)
    assert f"my_{kind}.yaml: " in msg
    pos = 0
    for piece in expected.split(" ... "):  # the pieces appear in this order
        pos = msg.find(piece, pos)
        assert pos >= 0, f"{piece!r} not in {msg!r}"


def test_nan_cycle_period_in_drive_params_is_refused(tmp_path: Path) -> None:
    # issue 14 item 7: `.nan` used to be accepted and stopped planning when LiDAR stopped.
    path = tmp_path / "drive_nan.yaml"
    path.write_text("/**:\n  ros__parameters:\n    arbiter:\n      cycle_period_ms: .nan\n")
    with pytest.raises(ConfigError) as err:
        resolve_overrides(path)
    msg = str(err.value)
    assert "drive_nan.yaml" in msg and "arbiter.cycle_period_ms = NaN" in msg and "0 < value" in msg
    with pytest.raises(ConfigError, match=r"command line: arbiter\.deadline_ms = -1\.0.*0 < value"):
        resolve_overrides(None, {"arbiter.deadline_ms": -1.0})


def test_negative_frame_buffer_span_is_refused(tmp_path: Path) -> None:
    # issue 14 item 7: a negative span meant no frame ever, reported as "no odometry received".
    path = tmp_path / "frame.yaml"
    path.write_text("odometry:\n  buffer_span_s: -2.0\n")
    with pytest.raises(ConfigError, match=r"frame\.yaml: odometry\.buffer_span_s = -2\.0: .*0 < value"):
        load_config(str(path), kind="frame")


def test_cross_key_rule_names_both_keys(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"arbiter\.student: 'min_horizon' \(20\.0\) must be <= 'max_horizon'"
    ):
        _load_override("arbiter", {"arbiter": {"student": {"min_horizon": 20.0}}}, tmp_path)
    with pytest.raises(ConfigError, match=r"did you mean 'max_jerk'"):
        _load_override("arbiter", {"arbiter": {"limits": {"max_jerkk": 1.0}}}, tmp_path)


def test_recently_added_keys_are_in_the_schema(tmp_path: Path) -> None:
    sim = load_config("sim")
    assert sim["lidar"]["blocked_sectors"] == []
    merged = _load_override("sim", {"lidar": {"blocked_sectors": [[10.0, 40.0]]}}, tmp_path)
    assert merged["lidar"]["blocked_sectors"] == [[10.0, 40.0]]
    with pytest.raises(ConfigError, match=r"lidar\.blocked_sectors\[0\]"):
        _load_override("sim", {"lidar": {"blocked_sectors": [[10.0]]}}, tmp_path)
    with pytest.raises(ConfigError, match=r"onpolicy\.beta = 1\.5: .*0 <= value <= 1"):
        _load_override("train", {"onpolicy": {"beta": 1.5}}, tmp_path)
    with pytest.raises(ConfigError, match=r"trajectory\.smoothing\.grid_dt = 0\.0"):
        _load_override("model", {"trajectory": {"smoothing": {"grid_dt": 0.0}}}, tmp_path)


def test_override_file_deep_merges_one_key(tmp_path: Path) -> None:
    shipped = load_config("frame")
    merged = _load_override("frame", {"max_age_s": {"camera": 0.3}}, tmp_path)
    assert merged["max_age_s"]["camera"] == 0.3
    assert merged["max_age_s"]["odometry"] == shipped["max_age_s"]["odometry"]
    assert merged["odometry"] == shipped["odometry"]
    # planning_config: one arbiter key, the four sections otherwise as shipped
    path = tmp_path / "planning.yaml"
    path.write_text("arbiter:\n  hold_previous:\n    max_cycles: 7\n")
    planning = load_config(str(path), kind="planning")
    assert planning["arbiter"]["hold_previous"]["max_cycles"] == 7
    assert planning["arbiter"]["limits"] == load_config("arbiter")["arbiter"]["limits"]
    assert planning["vehicle"] == load_config("vehicle")["vehicle"]
    path.write_text("arbitre:\n  dt: 0.1\n")
    with pytest.raises(ConfigError, match=r"planning\.yaml: unknown section\(s\) arbitre"):
        load_config(str(path), kind="planning")


def test_deep_merge_replaces_lists_and_keeps_inputs() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 4}
    over = {"a": {"c": [3]}}
    assert deep_merge(base, over) == {"a": {"b": 1, "c": [3]}, "d": 4}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 4}


def test_drive_planning_config_with_one_key_builds_the_cycle(tmp_path: Path) -> None:
    from vla_edge.pipeline import load_cycle

    path = tmp_path / "planning.yaml"
    path.write_text("arbiter:\n  limits:\n    max_jerk: 6.0\n")
    cycle = load_cycle({"planning_config": str(path)})
    assert cycle.arbiter.params.max_jerk == 6.0
    assert math.isclose(
        cycle.arbiter.params.max_lat_accel, load_config("arbiter")["arbiter"]["limits"]["max_lat_accel"]
    )


def test_cli_check_and_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert all(f"{k}.yaml ({k})" in out for k in KINDS)
    assert cli_main(["config", "schema", "--check"]) == 0
    bad = tmp_path / "planner.yaml"
    bad.write_text("planner:\n  horizon: -5.0\n")
    assert cli_main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "planner.yaml: planner.horizon = -5.0" in err and "0 < value" in err
    assert cli_main(["config", "schema", "--write", "--dir", str(tmp_path / "s")]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(schema_texts())
    with pytest.raises(SystemExit) as exc:
        cli_main(["config", "check", "--help"])
    assert exc.value.code == 0
