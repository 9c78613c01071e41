"""``user-limits ARGS`` run in process, for the tests of every tier that drive the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from user_limits.cli import main


class Run(NamedTuple):
    code: int
    out: str
    err: str


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> Run:
    """``user-limits ARGS`` in process, through the same ``main`` the console script calls."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["user-limits", *args])
    code = 0
    try:
        main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "user-limits"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from user_limits.cli import main; main()"]


def subprocess_cli(*args: str, cwd: Path) -> Run:
    done = subprocess.run([*console_script(), *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    return Run(done.returncode, done.stdout, done.stderr)
