"""``vla-edge-train``: every subcommand has --help; bad inputs give typed errors, not tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

SUBCOMMANDS = ("dataset", "label", "train", "distill", "export", "export-calib", "evaluate", "pipeline")


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd, capsys):
    from training.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: vla-edge-train " + cmd in capsys.readouterr().out


def test_python_dash_m_training_help():
    out = subprocess.run(
        [sys.executable, "-m", "training", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and all(c in out.stdout for c in SUBCOMMANDS)


def test_errors_are_reported_not_raised(tmp_path, capsys):
    from training.cli import main

    assert main(["dataset", str(tmp_path / "none"), "--out", str(tmp_path / "ds")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["export-calib", "--dataset", str(tmp_path), "--out", str(tmp_path / "c.npz")]) == 1
    assert "no dataset manifest" in capsys.readouterr().err
    assert (
        main(["label", "--dataset", str(tmp_path), "--teacher", "learned", "--out", str(tmp_path / "l.npz")])
        == 1
    )
    assert "needs --checkpoint" in capsys.readouterr().err
    assert main(["distill", "--dataset", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert "needs --labels" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", str(tmp_path), "--model", "nocheckpoint"]) == 1
    assert "NAME=CHECKPOINT" in capsys.readouterr().err
    assert main([]) == 2
