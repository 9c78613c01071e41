"""build-lambda: a zip for the Lambda Python 3.12 runtime, with Linux wheels for the chosen
architecture (never the build machine's own), and the handlers importable from its root."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from user_limits.cli.build_lambda import PROJECT_ROOT


def _build(tmp_path: Path, arch: str) -> zipfile.ZipFile:
    out = tmp_path / f"lambda-{arch}.zip"
    done = subprocess.run(
        [sys.executable, "-m", "user_limits", "build-lambda", "--arch", arch, "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "lambda-" in done.stdout
    return zipfile.ZipFile(out)


@pytest.mark.parametrize(("arch", "machine"), [("x86_64", "x86_64"), ("arm64", "aarch64")])
def test_zip_holds_the_package_and_linux_wheels_for_python_312(tmp_path: Path, arch: str, machine: str) -> None:
    names = _build(tmp_path, arch).namelist()
    assert "user_limits/aws_lambda.py" in names
    assert "user_limits/data/sample_events.json" in names
    assert any(name.startswith("aws_lambda_powertools/") for name in names)
    assert any(name.startswith("aws_kinesis_agg/") for name in names)
    assert any(name.startswith("mangum/") for name in names)
    extensions = [name for name in names if name.endswith(".so")]
    msgspec_ext = [name for name in extensions if name.startswith("msgspec/")]
    assert msgspec_ext and all(f"cpython-312-{machine}-linux-gnu" in name for name in msgspec_ext), msgspec_ext
    # Nothing built for the build machine's interpreter.
    assert not [name for name in extensions if "cpython-311" in name]
    # boto3 comes with the Lambda runtime.
    assert not any(name.startswith("boto3/") for name in names)


def test_unknown_architecture_is_one_clear_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "user_limits", "build-lambda", "--arch", "sparc", "--output", str(tmp_path / "x.zip")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0
    assert "sparc" in done.stderr and "Traceback" not in done.stderr
