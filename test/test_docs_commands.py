"""Every command shown in README.md and docs/*.md still works (catches documentation drift).

* Each ``vla-edge`` / ``vla-edge-train`` / ``python -m training...`` command found in a code
  block or inline code is parsed by the real argument parser: a renamed subcommand or flag
  fails here, naming the document.
* ``make X`` targets exist; ``python bench/X.py`` scripts exist and answer ``--help``.
* The CLI subcommands the docs show are then run for real with small arguments, chained on
  one tiny synthetic bag (generate -> replay -> compare -> explain -> dataset -> evaluate).
* No document calls the shipped engine random or a placeholder once its manifest says trained.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

DOCS = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
PREFIXES = (
    "vla-edge ",
    "vla-edge-train ",
    "python -m training",
    "python -m vla_edge",
    "make ",
    "python bench/",
)


def documented_commands() -> list[tuple[str, str]]:
    """``(document, command)`` for every command line in code blocks and inline code."""
    out: list[tuple[str, str]] = []
    for doc in DOCS:
        text = doc.read_text()
        lines: list[str] = []
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            lines += [re.sub(r"\s+#.*$", "", ln.strip()) for ln in block.replace("\\\n", " ").splitlines()]
        lines += [c.strip() for c in re.findall(r"`([^`\n]+)`", text)]
        out += [(doc.name, ln) for ln in lines if ln.startswith(PREFIXES)]
    return out


def normalise(cmd: str) -> list[str] | None:
    """argv for the parser: ``[--opt X]`` kept, ``a\\|b`` -> a, ``BAGS...`` -> BAGS; None = prose."""
    if " ... " in cmd or cmd.endswith(" ..."):
        return None
    cmd = cmd.replace("\\|", "|").replace("[", " ").replace("]", " ")
    argv = [a.split("|")[0].rstrip(".") if not a.startswith("/") else a for a in shlex.split(cmd)]
    if len(argv) > 1 and argv[1].endswith(":"):  # a quoted error message, not a command
        return None
    # Placeholders (N, DIR, BAGS, DS) stand for values: "1" parses as int, float and path.
    return [("1" if re.fullmatch(r"[A-Z][A-Z0-9_]*", a) else a) for a in argv]


def _parsers() -> dict[str, object]:
    from training.cli import build_parser as train_parser
    from vla_edge.cli import build_parser as edge_parser

    return {"vla-edge": edge_parser(), "vla-edge-train": train_parser()}


def test_docs_show_commands() -> None:
    cmds = documented_commands()
    assert len(cmds) > 80, "the command extraction broke"
    assert {"README.md", "replay.md", "training.md", "simulator.md"} <= {d for d, _ in cmds}


def test_every_documented_cli_command_parses(capsys: pytest.CaptureFixture[str]) -> None:
    parsers = _parsers()
    bad = []
    for doc, cmd in documented_commands():
        argv = normalise(cmd)
        if argv is None:
            continue
        if argv[:2] == ["python", "-m"] and argv[2] in ("vla_edge", "training"):
            argv = ["vla-edge" if argv[2] == "vla_edge" else "vla-edge-train", *argv[3:]]
        parser = parsers.get(argv[0])
        if parser is None or len(argv) == 1:
            continue
        try:
            parser.parse_args(argv[1:])  # type: ignore[attr-defined]
        except SystemExit as exc:
            err = (capsys.readouterr().err.strip().splitlines() or [""])[-1]
            # A command named in prose without its required arguments is not drift.
            if exc.code not in (0, None) and not re.search(r"required|expected one argument", err):
                bad.append(f"{doc}: `{cmd}`: {err}")
    assert not bad, "documented commands the CLI no longer accepts:\n" + "\n".join(bad)


def test_make_targets_and_bench_scripts_exist() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    missing, scripts = [], set()
    for doc, cmd in documented_commands():
        argv = shlex.split(cmd.replace("[", " ").replace("]", " "))
        if argv[0] == "make" and argv[1] not in targets:
            missing.append(f"{doc}: `{cmd}`")
        if argv[0] == "python" and argv[1].startswith("bench/"):
            scripts.add(argv[1])
    assert not missing, f"make targets shown in docs but absent: {missing}"
    help_text = subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    assert {t for t in targets if t not in ("help",)} <= set(re.findall(r"^([a-z][\w-]*)", help_text, re.M))
    for script in sorted(scripts):
        res = subprocess.run(
            [sys.executable, script, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0 and "usage:" in res.stdout, f"{script} --help: {res.stderr[-500:]}"


def test_docs_do_not_call_a_trained_engine_random() -> None:
    manifest = json.loads((REPO_ROOT / "engines" / "student.json").read_text())
    if manifest["weights"] != "trained":
        pytest.skip("the shipped engine is not trained; 'random' wording is accurate")
    stale = re.compile(
        r"shipped[^|\n]{0,70}(random|placeholder)|(random|placeholder)[^|\n]{0,40}shipped (engine|student)",
        re.I,
    )
    hits = [
        f"{doc.name}:{i}: {line.strip()[:120]}"
        for doc in DOCS
        for i, line in enumerate(doc.read_text().splitlines(), 1)
        if stale.search(line) and "earlier" not in line and "istorical" not in line
    ]
    assert not hits, "docs still describe the shipped engine as random:\n" + "\n".join(hits)


def _run(tmp: Path, *argv: str, timeout: float = 120.0) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    res = subprocess.run(
        [sys.executable, *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert res.returncode == 0, (
        f"{' '.join(argv)} -> {res.returncode}\n{res.stdout[-1500:]}\n{res.stderr[-2500:]}"
    )
    return res.stdout + res.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_documented_subcommands_run_with_small_arguments(tmp_path: Path) -> None:
    """One tiny bag through the commands the docs show (the long/hardware ones only parse above)."""
    sim, ls = tmp_path / "sim", tmp_path / "ls"
    edge = ("-m", "vla_edge")
    _run(tmp_path, *edge, "sim", "generate", "--scenarios", "1", "--seconds", "6", "--seed", "1",
         "--camera", "none", "--out", str(sim))  # fmt: skip
    bags = sorted(p for p in sim.iterdir() if (p / "metadata.yaml").is_file())
    assert bags, "sim generate wrote no bag"
    out = _run(
        tmp_path, *edge, "replay", str(bags[0]), "--mode", "lockstep", "--out", str(ls), "--no-progress"
    )
    assert (ls / "records.jsonl").is_file(), out
    _run(tmp_path, *edge, "replay", "compare", str(ls), str(ls), "--out", str(tmp_path / "cmp"))
    _run(
        tmp_path, *edge, "explain", str(bags[0]), "--out", str(tmp_path / "ex"), "--no-html", "--no-progress"
    )
    assert (tmp_path / "ex" / "explain.jsonl").is_file()
    _run(
        tmp_path,
        *edge,
        "sim",
        "evaluate",
        "--planner",
        "frenet",
        "--scenarios",
        "1",
        "--seconds",
        "4",
        "--seed",
        "2",
    )
    _run(tmp_path, "-m", "training", "dataset", str(bags[0]), "--out", str(tmp_path / "ds"), "--workers", "1")
    assert (tmp_path / "ds" / "manifest.json").is_file()
