"""Container images built and run with podman, with no registry: the base is made here.

The base stands in for ``python:3.12-slim``: a Debian bookworm root file system from
``debootstrap --variant=minbase`` (the Debian mirror this machine's apt uses, read from its
sources), the runtime libraries CPython needs, and a Python 3.12 from this machine (the one
scripts/find-python.sh finds) installed under /usr/local as in the official image. It is imported
with ``podman import`` under a tag derived from its recipe, so it is built once and reused by
later runs until the recipe changes.

The images are built with ``--network none``: pip inside the build installs the locked,
hash-checked wheels the test downloads on the host into the build context's ``wheels/``.

podman reads tools/containers/containers.conf through ``CONTAINERS_CONF``: the machine's own
configuration is never changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = ROOT / "tools" / "containers" / "containers.conf"
SUITE = "bookworm"
# What python:3.12-slim carries besides Python itself: certificates and CPython's runtime libraries.
PACKAGES = [
    "ca-certificates",
    "netbase",
    "tzdata",
    "libbz2-1.0",
    "libexpat1",
    "libffi8",
    "libgdbm6",
    "liblzma5",
    "libncursesw6",
    "libreadline8",
    "libsqlite3-0",
    "libssl3",
    "libuuid1",
    "zlib1g",
]
RECIPE_VERSION = "3"  # bump when the recipe below changes in a way the tag does not see


class ContainersUnavailable(RuntimeError):
    """podman, debootstrap or a Python 3.12 is missing: the tests say so and skip."""


def environment() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=environment())
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done


def debian_mirror() -> str:
    """The Debian archive apt uses here (``deb URL bookworm ...`` lines or deb822 ``.sources``)."""
    texts = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.is_file() and path.suffix in ("", ".list", ".sources"):
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        for line in text.splitlines():
            match = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if match and match.group(2) == SUITE:
                return match.group(1)
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
            if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
    raise ContainersUnavailable(f"no Debian {SUITE} mirror in /etc/apt/sources.list*")


def python312() -> Path:
    done = subprocess.run([str(ROOT / "scripts" / "find-python.sh"), "3.12"], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise ContainersUnavailable("no Python 3.12 on this machine for the base image (pyenv or PATH)")
    return Path(done.stdout.strip())


def _prefix(python: Path) -> Path:
    done = subprocess.run([str(python), "-c", "import sys; print(sys.base_prefix)"], capture_output=True, text=True)
    return Path(done.stdout.strip())


def base_tag(python: Path) -> str:
    version = subprocess.run([str(python), "--version"], capture_output=True, text=True).stdout.strip()
    recipe = "\n".join([RECIPE_VERSION, SUITE, *PACKAGES, version, str(_prefix(python))])
    return f"localhost/user-limits-base:{SUITE}-py3.12-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def require_tools() -> None:
    for tool in ("podman", "debootstrap", "runc"):
        if shutil.which(tool) is None:
            raise ContainersUnavailable(
                f"{tool} is not installed (make test installs it: scripts/install-system-deps.sh)"
            )


def base_image() -> str:
    """The base image's tag, built and imported unless a previous run already did."""
    require_tools()
    python = python312()
    tag = base_tag(python)
    if podman("image", "exists", tag, check=False).returncode == 0:
        return tag
    with tempfile.TemporaryDirectory(prefix="user-limits-base-") as work:
        rootfs = Path(work) / "rootfs"
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(rootfs),
                debian_mirror(),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise AssertionError(f"debootstrap failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        _install_python(_prefix(python), rootfs)
        subprocess.run(["ldconfig", "-r", str(rootfs)], check=True, capture_output=True)
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        shutil.rmtree(rootfs / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        archive = Path(work) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        podman(
            "import",
            "--change",
            'CMD ["python3"]',
            "--change",
            "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV LANG=C.UTF-8",
            str(archive),
            tag,
        )
    # Bases of earlier recipes are not needed any more.
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/user-limits-base", check=False)
    for old in listed.stdout.split():
        if old != tag:
            podman("rmi", old, check=False)
    return tag


def _install_python(prefix: Path, rootfs: Path) -> None:
    """CPython's installation tree into /usr/local, without its tests, caches, static library or
    the machine's installed packages; with pip."""
    target = rootfs / "usr" / "local"
    skipped = {"test", "idlelib", "tkinter", "turtledemo", "__pycache__", "site-packages"}
    for part in ("bin", "lib", "include"):
        source = prefix / part
        if source.is_dir():
            shutil.copytree(
                source,
                target / part,
                symlinks=True,
                dirs_exist_ok=True,
                ignore=lambda _, names: [name for name in names if name in skipped or name.endswith(".a")],
            )
    site_packages = target / "lib" / "python3.12" / "site-packages"
    site_packages.mkdir(parents=True, exist_ok=True)
    # pip, as the official image has it: the wheel ensurepip bundles, unpacked (pure Python).
    for wheel in sorted((target / "lib" / "python3.12" / "ensurepip" / "_bundled").glob("pip-*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site_packages)
    bin_dir = target / "bin"
    # Scripts whose shebang names the machine's prefix would not run in the image.
    for script in bin_dir.iterdir():
        if script.is_file() and not script.is_symlink() and script.read_bytes()[:2] == b"#!":
            script.unlink()
    for name, points_to in (("python3", "python3.12"), ("python", "python3.12")):
        link = bin_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(points_to)
