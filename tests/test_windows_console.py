"""Every command on a legacy Windows console: cp1252 output redirected to a file (what
`> out.txt` gives a trader on Windows). No UnicodeEncodeError, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], tmp_path: Path, timeout: int = 300) -> tuple[int, str]:
    out = tmp_path / "out.txt"
    env = dict(os.environ, PYTHONIOENCODING="cp1252", AITB_STATE_DIR=str(tmp_path / "state"))
    with open(out, "wb") as f:
        code = subprocess.run(
            [sys.executable, "-m", "ai_trading_bridge", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            timeout=timeout,
        ).returncode
    return code, out.read_bytes().decode("cp1252", "replace")


COMMANDS = [
    ["check"],
    ["halt", "--reason", "Fed → flat"],  # a character cp1252 lacks, in an argument
    ["resume"],
    ["reload", "--timeout", "0.2"],
    ["replay", "synthetic", "--endpoint", "tcp://127.0.0.1:9", "--timeout", "0.1"],
    ["serve", "--bind", "tcp://0.0.0.0:5555"],
    ["deploy", "no-such-bundle", "no-such-target"],
    ["rollback", "no-such-target"],
    ["monitor", "--once", "no-such.log"],
    ["train", "--help"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_command_survives_cp1252_redirected_output(tmp_path, args) -> None:
    code, output = run(args, tmp_path)
    assert "Traceback" not in output and "UnicodeEncodeError" not in output, output
    assert code in (0, 1, 2), output
    assert output.strip(), "every command says something"


def test_validate_writes_its_report_under_cp1252(tmp_path) -> None:
    bundle = ROOT / "bridge" / "default_model"
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    code, output = run(
        ["validate", str(copy), "--episodes", "2", "--episode-bars", "60"], tmp_path, 600
    )
    assert "Traceback" not in output and code in (0, 3), output  # passed or failed
    assert (copy / "validation" / "report.json").is_file()


def test_check_shows_its_verdict_marks_as_words_on_cp1252(tmp_path) -> None:
    """✅/❌ do not exist in cp1252: they are written as PASS:/FAIL:, not as '?'."""
    code, output = run(["check"], tmp_path)
    assert code == 0, output
    assert "PASS: FLAT action mask correct" in output and "? FLAT" not in output
