"""`vla-edge-train`: arguments are checked before any work, the console gets progress and a short end."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from training.cli import build_parser, main, print_report
from training.pipeline import last_progress_line
from training.validate import expected_train_frames, validate_train
from vla_edge.config import load_config
from vla_edge.errors import ConfigError


def test_every_subcommand_help_opens_with_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    assert len(sub.choices) >= 9
    for name, parser in sub.choices.items():
        assert parser.description and len(parser.description) > 15, f"{name} has no description"
        with pytest.raises(SystemExit):
            ap.parse_args([name, "--help"])
        out = capsys.readouterr().out
        assert parser.description.split()[0] in out.split("\n\n")[1], f"{name}: description not under usage"


def test_pipeline_bad_preset_and_tiny_data_fail_before_any_bag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = tmp_path / "wd"
    argv = ["pipeline", "--workdir", str(wd), "--teacher-preset", "huge", "--train-scenarios", "1"]
    assert main([*argv, "--duration", "3", "--epochs", "0"]) == 1
    err = capsys.readouterr().err
    assert "--teacher-preset 'huge' is not a preset" in err and "'teacher'" in err
    assert "--epochs must be >= 1, got 0" in err
    assert "give about 0 training frames" in err and "raise --train-scenarios or --duration" in err
    assert not wd.exists(), "work started before the arguments were checked"


def test_expected_frames_follow_the_configs() -> None:
    cfg, mcfg = load_config("train"), load_config("model")
    # 10 bags of 30 s at 10 Hz, 2 for validation, the last 4 s of each without a full future.
    assert expected_train_frames(cfg, mcfg, 10, 30.0) == 8 * 260
    assert expected_train_frames(cfg, mcfg, 1, 4.0) == 0


def test_train_lists_every_problem(tmp_path: Path) -> None:
    ap = build_parser()
    args = ap.parse_args(
        ["distill", "--dataset", str(tmp_path / "no"), "--out", str(tmp_path / "o"), "--preset", "xl",
         "--minutes", "-1", "--anchors", str(tmp_path / "a.npy")]
    )  # fmt: skip
    with pytest.raises(ConfigError) as exc:
        validate_train(args, load_config("train"), load_config("model"), distill=True)
    msg = str(exc.value)
    for part in ("--preset 'xl'", "has no manifest.json", "distill needs --labels", "a.npy: no such file",
                 "--minutes must be >= 0.0"):  # fmt: skip
        assert part in msg, part


def test_console_mirrors_the_runs_progress_bar(tmp_path: Path) -> None:
    log = tmp_path / "teacher.log"
    log.write_text(
        "started\nteacher:  10%|#  | 10/100 [00:01<00:09]\rteacher:  20%|## | 20/100 [00:02<00:08]\r"
    )
    assert last_progress_line(log).startswith("teacher:  20%")
    assert last_progress_line(tmp_path / "missing.log") == ""


def test_final_report_is_short_and_names_the_json(capsys: pytest.CaptureFixture[str]) -> None:
    print_report("pipeline", {"chosen student": "distilled", "total_s": 1234.5678}, "/w/pipeline_state.json")
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 4 and "1235" in out[2] and out[-1].endswith("/w/pipeline_state.json")
