"""build-lambda: dist/lambda.zip for the Lambda Python 3.12 runtime."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from user_limits.cli.app import app
from user_limits.errors import UserError

# What runs in Lambda: the handler, the API behind API Gateway, and the stores other than SQLite.
# boto3 is left out: the Lambda runtime provides it.
LAMBDA_REQUIREMENTS = [
    "msgspec>=0.18",
    "aws-lambda-powertools>=3.0",
    "aws-kinesis-agg>=1.2",
    "psycopg[binary]>=3.1",
    "fastapi>=0.110",
    "pydantic>=2.6",
    "pydantic-settings>=2.2",
    "pyjwt[crypto]>=2.8",
    "mangum>=0.17",
]
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def build(arch: Literal["x86_64", "arm64"], output: Path) -> Path:
    if arch not in PLATFORMS:
        raise UserError(f"unknown architecture {arch!r}: use x86_64 or arm64")
    if not (PROJECT_ROOT / "pyproject.toml").is_file():
        raise UserError("build-lambda runs from a source checkout (pyproject.toml not found)")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "package"
        pip = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
        ]
        # Linux wheels for Lambda's Python, never the build machine's own.
        _run(
            [
                *pip,
                "--platform", PLATFORMS[arch],
                "--platform", PLATFORMS[arch].replace("manylinux2014", "manylinux_2_28"),
                "--implementation", "cp",
                "--python-version", "3.12",
                "--only-binary", ":all:",
                *LAMBDA_REQUIREMENTS,
            ]
        )  # fmt: skip
        _run([*pip, "--no-deps", str(PROJECT_ROOT)])
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp_zip = output.with_suffix(".zip.part")
        with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for path in sorted(target.rglob("*")):
                relative = path.relative_to(target)
                if path.is_dir() or "__pycache__" in relative.parts or relative.parts[0] == "bin":
                    continue
                archive.write(path, relative.as_posix())
        shutil.move(tmp_zip, output)
    return output


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise UserError(f"building the Lambda package failed: {last}")


@app.command("build-lambda")
def build_lambda(
    arch: Annotated[str, typer.Option("--arch", help="x86_64 or arm64")] = "x86_64",
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the zip.")] = Path("dist/lambda.zip"),
) -> None:
    """Build dist/lambda.zip for the Lambda Python 3.12 runtime (handler user_limits.aws_lambda.handler)."""
    path = build(arch, output)  # type: ignore[arg-type]
    size = path.stat().st_size / 1e6
    print(
        f"{path}: {size:.1f} MB for python3.12 on {arch}; handlers user_limits.aws_lambda.handler "
        "and user_limits.aws_lambda.api_handler"
    )
