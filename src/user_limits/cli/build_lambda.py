"""build-lambda: dist/lambda.zip for the Lambda Python 3.12 runtime, from requirements/lambda.txt.

The zip holds exactly the locked versions, as manylinux wheels for the chosen architecture: pip runs
with ``--require-hashes --no-deps``, so nothing is resolved and nothing unpinned is downloaded. The
project is built from a clean copy of its sources by the setuptools already installed (no build
isolation). Built twice from the same commit, the zip is the same, byte for byte: entries sorted,
one timestamp (1980-01-01, or ``SOURCE_DATE_EPOCH``), fixed permissions, no bytecode, and nothing
that names the build's own paths.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import posixpath
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import typer

from user_limits.cli.app import app
from user_limits.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[3]
# What lambda.zip ships: `make lock` writes it from pyproject.toml's `lambda` extra, with the
# versions the suite ran with. It leaves boto3 out: the Lambda runtime provides it (and botocore),
# so shipping them would add some 30 MB (unzipped, of Lambda's 250) for a copy already there.
# The price: on Lambda, the DynamoDB store runs with the runtime's boto3, not the locked one.
LOCK = PROJECT_ROOT / "requirements" / "lambda.txt"
PLATFORMS = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
}
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
LAMBDA_PYTHON = "3.12"
# The earliest time a zip entry can hold.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def build(arch: Literal["x86_64", "arm64"], output: Path) -> Path:
    if arch not in PLATFORMS:
        raise UserError(f"unknown architecture {arch!r}: use x86_64 or arm64")
    if not (PROJECT_ROOT / "pyproject.toml").is_file():
        raise UserError("build-lambda runs from a source checkout (pyproject.toml not found)")
    if not LOCK.is_file():
        raise UserError("build-lambda needs requirements/lambda.txt: run `make lock`")
    for module in ("pip", "setuptools", "packaging"):
        if importlib.util.find_spec(module) is None:
            raise UserError(f"build-lambda needs {module}: `make lambda` installs it from requirements/tools.txt")
    date_time = zip_time(os.environ.get("SOURCE_DATE_EPOCH"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        target = work / "package"
        requirements = work / "lambda.txt"
        requirements.write_text(lambda_requirements(LOCK.read_text(encoding="utf-8"), arch), encoding="utf-8")
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
        install = [*pip, "install", "--quiet", "--no-compile", "--no-deps", "--target", str(target)]
        # Linux wheels for Lambda's Python, never the build machine's own.
        _run(
            [
                *install,
                "--platform", PLATFORMS[arch][0],
                "--platform", PLATFORMS[arch][1],
                "--implementation", "cp",
                "--python-version", LAMBDA_PYTHON,
                "--only-binary", ":all:",
                "--require-hashes",
                "-r", str(requirements),
            ]
        )  # fmt: skip
        source = copy_sources(PROJECT_ROOT, work / "source")
        wheels = work / "wheels"
        _run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels), str(source)])
        # Installed by name from that folder, not by path: pip then writes no direct_url.json, which
        # would name this build's temporary folder.
        _run([*install, "--no-index", "--find-links", str(wheels), "user-limits"])
        write_zip(target, output, date_time)
    return output


def lambda_requirements(lock: str, arch: str) -> str:
    """The lock's requirements that apply on Lambda for ``arch``, with their hashes and without markers.

    pip evaluates markers for the interpreter that runs it, whatever ``--platform`` and
    ``--python-version`` say, so they are evaluated here, for Lambda's Python on that architecture.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    # Lambda's side of every marker variable but two that no lock should test (platform_release and
    # platform_version, which packaging fills in from the build machine).
    environment = {
        "implementation_name": "cpython",
        "implementation_version": f"{LAMBDA_PYTHON}.0",
        "os_name": "posix",
        "platform_machine": MACHINES[arch],
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "python_full_version": f"{LAMBDA_PYTHON}.0",
        "python_version": LAMBDA_PYTHON,
        "sys_platform": "linux",
    }
    kept = []
    for line in re.sub(r"\\\n", " ", lock).splitlines():
        text = re.sub(r"(^|\s)#.*", "", line).strip()
        if not text:
            continue
        words = text.split()
        hashes = [word for word in words if word.startswith("--hash=")]
        spec = " ".join(word for word in words if not word.startswith("--hash="))
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            raise UserError(f"requirements/lambda.txt: not a pinned requirement: {spec!r} (run `make lock`)") from None
        if requirement.marker is None or requirement.marker.evaluate(environment):
            kept.append(" ".join([f"{requirement.name}{requirement.specifier}", *hashes]))
    return "".join(f"{line}\n" for line in kept)


def copy_sources(root: Path, dest: Path) -> Path:
    """What setuptools builds the package from, without what a working tree gathers (bytecode,
    egg-info whose SOURCES.txt setuptools would read, build/) and without a ``testing`` subpackage,
    which is of no use on Lambda."""
    package = root / "src" / "user_limits"

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {name for name in names if name == "__pycache__" or name.endswith((".pyc", ".egg-info"))}
        if Path(directory) == package and "testing" in names:
            skipped.add("testing")
        return skipped

    dest.mkdir(parents=True)
    for path in [root / "pyproject.toml", root / "README.md", *root.glob("LICEN[CS]E*"), *root.glob("NOTICE*")]:
        shutil.copyfile(path, dest / path.name)
    shutil.copytree(root / "src", dest / "src", ignore=ignore)
    return dest


def zip_time(source_date_epoch: str | None) -> tuple[int, int, int, int, int, int]:
    """1980-01-01, or SOURCE_DATE_EPOCH (UTC) as the reproducible-builds convention asks."""
    if not source_date_epoch:
        return ZIP_EPOCH
    if not re.fullmatch(r"[0-9]+", source_date_epoch):
        raise UserError(f"SOURCE_DATE_EPOCH={source_date_epoch!r}: not a number of seconds")
    moment = datetime.fromtimestamp(min(int(source_date_epoch), 4_354_819_198), UTC)  # zip's last: 2107-12-31
    return max(ZIP_EPOCH, (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second))


def write_zip(tree: Path, output: Path, date_time: tuple[int, int, int, int, int, int]) -> None:
    files = {path.relative_to(tree).as_posix(): path for path in tree.rglob("*") if path.is_file()}
    shipped = {name for name in files if _ships(name)}
    output.parent.mkdir(parents=True, exist_ok=True)
    part = output.with_name(output.name + ".part")
    with zipfile.ZipFile(part, "w") as archive:
        for name in sorted(shipped):
            info = zipfile.ZipInfo(name, date_time)
            info.create_system = 3  # Unix, wherever it is built, so that Lambda reads the permissions
            executable = files[name].stat().st_mode & 0o111
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = files[name].read_bytes()
            if name.endswith(".dist-info/RECORD"):
                data = _shipped_record(data, name, shipped)
            archive.writestr(info, data, compresslevel=6)
    os.replace(part, output)


def _shipped_record(record: bytes, name: str, shipped: set[str]) -> bytes:
    """A dist-info RECORD with only the files the zip holds: the lines of console scripts hash a first
    line that names the build machine's interpreter, so they would differ from one checkout to another."""
    site = PurePosixPath(name).parent.parent
    rows = csv.reader(io.StringIO(record.decode("utf-8")))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        if row and posixpath.normpath(site / row[0]) in shipped:
            writer.writerow(row)
    return out.getvalue().encode("utf-8")


def _ships(name: str) -> bool:
    parts = name.split("/")
    # bin/: console scripts, whose first line names the build machine's interpreter. Bytecode: none is
    # compiled (--no-compile), and the build machine's would not be Lambda's Python anyway.
    return parts[0] != "bin" and "__pycache__" not in parts and not name.endswith(".pyc")


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
