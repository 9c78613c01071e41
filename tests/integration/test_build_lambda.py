"""build-lambda: a zip for the Lambda Python 3.12 runtime, with Linux wheels for the chosen
architecture (never the build machine's own), exactly the versions of requirements/lambda.txt, the
handlers importable from its root, and the same bytes every time it is built from the same sources."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from user_limits.cli.build_lambda import LOCK, PROJECT_ROOT, copy_sources, lambda_requirements, zip_time
from user_limits.errors import UserError


def _build(out_dir: Path, arch: str) -> Path:
    out = out_dir / f"lambda-{arch}.zip"
    # The default timestamp, whatever the machine that runs the suite sets.
    env = {name: value for name, value in os.environ.items() if name != "SOURCE_DATE_EPOCH"}
    done = subprocess.run(
        [sys.executable, "-m", "user_limits", "build-lambda", "--arch", arch, "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "lambda-" in done.stdout
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """One build per architecture for the whole module: each takes a while."""
    zips: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in zips:
            zips[arch] = _build(tmp_path_factory.mktemp(f"first-{arch}"), arch)
        return zips[arch]

    return get


@pytest.mark.parametrize(("arch", "machine"), [("x86_64", "x86_64"), ("arm64", "aarch64")])
def test_zip_holds_the_package_and_linux_wheels_for_python_312(
    built: Callable[[str], Path], arch: str, machine: str
) -> None:
    names = zipfile.ZipFile(built(arch)).namelist()
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


def test_zip_ships_exactly_the_locked_versions(built: Callable[[str], Path]) -> None:
    names = zipfile.ZipFile(built("x86_64")).namelist()
    dist_infos = {name.split("/")[0].removesuffix(".dist-info") for name in names if ".dist-info/" in name}
    shipped = {(canonicalize_name(project), version) for project, version in (d.rsplit("-", 1) for d in dist_infos)}
    locked = set()
    for line in lambda_requirements(LOCK.read_text(encoding="utf-8"), "x86_64").splitlines():
        requirement = Requirement(line.split(" --hash=")[0])
        (pin,) = requirement.specifier
        locked.add((canonicalize_name(requirement.name), pin.version))
    assert shipped == locked | {("user-limits", "0.1.0")}


def test_two_builds_from_the_same_sources_are_the_same_bytes(built: Callable[[str], Path], tmp_path: Path) -> None:
    first = built("x86_64")
    second = _build(tmp_path, "x86_64")
    assert hashlib.sha256(first.read_bytes()).hexdigest() == hashlib.sha256(second.read_bytes()).hexdigest()
    entries = zipfile.ZipFile(second).infolist()
    names = [entry.filename for entry in entries]
    assert names == sorted(names)
    assert {entry.date_time for entry in entries} == {(1980, 1, 1, 0, 0, 0)}
    assert {entry.external_attr >> 16 for entry in entries} <= {0o100644, 0o100755}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc") or name.startswith("bin/")]
    # direct_url.json would name the build's temporary folder.
    assert not [name for name in names if name.endswith("direct_url.json")]


def test_markers_are_evaluated_for_lambda_not_for_the_build_machine() -> None:
    lock = (
        "# header\n"
        "old==1.0 ; python_full_version < '3.12' \\\n    --hash=sha256:aa\n"
        "    # via something\n"
        "new==2.0 ; python_full_version >= '3.12' \\\n    --hash=sha256:bb \\\n    --hash=sha256:bc\n"
        "arm==1.0 ; platform_machine == 'aarch64' \\\n    --hash=sha256:cc\n"
        "win==1.0 ; sys_platform == 'win32' \\\n    --hash=sha256:dd\n"
        "cpy==1.0 ; platform_python_implementation != 'PyPy' --hash=sha256:ee\n"
        "all==3.0 \\\n    --hash=sha256:ff\n"
    )
    assert lambda_requirements(lock, "x86_64") == (
        "new==2.0 --hash=sha256:bb --hash=sha256:bc\ncpy==1.0 --hash=sha256:ee\nall==3.0 --hash=sha256:ff\n"
    )
    assert "arm==1.0 --hash=sha256:cc\n" in lambda_requirements(lock, "arm64")


def test_a_lock_line_that_is_not_a_requirement_is_refused() -> None:
    with pytest.raises(UserError, match="not a pinned requirement"):
        lambda_requirements("-e .\n", "x86_64")


def test_sources_leave_out_the_testing_subpackage_and_working_tree_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    package = root / "src" / "user_limits"
    for relative in [
        "pyproject.toml",
        "README.md",
        "src/user_limits/__init__.py",
        "src/user_limits/testing/__init__.py",
        "src/user_limits/__pycache__/__init__.cpython-311.pyc",
        "src/user_limits/stores/testing.py",
        "src/user_limits.egg-info/SOURCES.txt",
    ]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("x")
    copied = copy_sources(root, tmp_path / "copy")
    files = sorted(path.relative_to(copied).as_posix() for path in copied.rglob("*") if path.is_file())
    assert files == ["README.md", "pyproject.toml", "src/user_limits/__init__.py", "src/user_limits/stores/testing.py"]
    assert package.joinpath("testing/__init__.py").is_file()  # the checkout itself is untouched


def test_zip_time_is_1980_or_source_date_epoch() -> None:
    assert zip_time(None) == zip_time("") == (1980, 1, 1, 0, 0, 0)
    assert zip_time("1700000000") == (2023, 11, 14, 22, 13, 20)
    assert zip_time("0") == (1980, 1, 1, 0, 0, 0)  # a zip holds nothing earlier
    for bad in ["soon", "-5", "1e9", " 17"]:
        with pytest.raises(UserError, match="SOURCE_DATE_EPOCH"):
            zip_time(bad)


def test_unknown_architecture_is_one_clear_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "user_limits", "build-lambda", "--arch", "sparc", "--output", str(tmp_path / "x.zip")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0
    assert "sparc" in done.stderr and "Traceback" not in done.stderr
