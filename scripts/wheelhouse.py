"""Build the wheelhouse an image or the Debian package installs evse-agent from, with no network.

The output holds the project's wheel and one pure-Python wheel (``py3-none-any``) for every dependency
except those listed in packaging/debian-deps.txt (compiled: the distribution's packages provide them) and
what only they need. The resolution runs on this machine's Python with the versions of those Debian
packages as upper bounds, so the wheels work together with them; run it with the oldest Python the
charger may have (3.11) so that dependencies needed only on older versions are included.

Needs the package index (pip download). With --cache DIR the dependency wheels are kept under a key made
of the project's requirements, packaging/debian-deps.txt and the Python version: a second build, or a
build of another version of the same requirements, makes only the project's wheel.

Usage: python3 scripts/wheelhouse.py --out DIR [--source DIR] [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIP_TIMEOUT_S = 900.0  # a cold resolution fetches metadata for a dozen projects; bounded so CI never hangs
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, zip's first date: the same source gives the same wheel bytes
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", ".hypothesis",
)
PURE_WHEEL = re.compile(r"-py3(\.py\d+)?-none-any\.whl$|-py2\.py3-none-any\.whl$")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class WheelhouseError(Exception):
    """The wheelhouse cannot be built; the message says why and what to change."""


@dataclass(frozen=True)
class DebianDep:
    """A dependency taken from the distribution instead of a wheel."""

    project: str
    max_version: str
    depends: str


def canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_debian_deps(path: Path) -> list[DebianDep]:
    """Parse packaging/debian-deps.txt: project, version in the distribution, Depends entry."""
    deps: list[DebianDep] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 2)
        if len(parts) != 3:
            raise WheelhouseError(f"{path}:{number}: expected 'project version depends', got {raw!r}")
        deps.append(DebianDep(canonical(parts[0]), parts[1], parts[2]))
    return deps


def _run(command: list[str], what: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        raise WheelhouseError(f"{what}: no answer within {PIP_TIMEOUT_S:.0f} s: {' '.join(command)}") from err
    if result.returncode != 0:
        raise WheelhouseError(f"{what} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")


def build_project_wheel(source: Path, out: Path, python: str) -> Path:
    """The project's wheel, built from a copy so the checkout gets no build/ or *.egg-info."""
    with tempfile.TemporaryDirectory(prefix="evse-wheel-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=COPY_IGNORE, symlinks=True)
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
        command = [python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(copy)]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False, env=env
            )
        except subprocess.TimeoutExpired as err:
            raise WheelhouseError(f"building the evse-agent wheel took over {PIP_TIMEOUT_S:.0f} s") from err
        if result.returncode != 0:
            raise WheelhouseError(f"building the evse-agent wheel failed:\n{result.stderr[-3000:]}")
    wheels = sorted(out.glob("evse_agent-*.whl"))
    if len(wheels) != 1:
        raise WheelhouseError(f"expected one evse_agent wheel in {out}, found {[w.name for w in wheels]}")
    return wheels[0]


def requirements_of(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode("utf-8")
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def _needed(requirement: str) -> str | None:
    """The project a Requires-Dist line names, or None when it belongs to an extra (never installed)."""
    _, _, marker = requirement.partition(";")
    if re.search(r"\bextra\s*==", marker):
        return None
    match = NAME.match(requirement)
    return canonical(match[1]) if match else None


def select(report: dict[str, object], debian: list[DebianDep]) -> dict[str, str]:
    """From pip's install report: {project: version} to ship as wheels, walking from evse-agent.

    A Debian-provided project is not shipped and not walked into: its package brings what it needs.
    """
    installs = report.get("install")
    if not isinstance(installs, list):
        raise WheelhouseError("pip's report has no install list")
    versions: dict[str, str] = {}
    requires: dict[str, list[str]] = {}
    for item in installs:
        meta = item["metadata"]
        name = canonical(meta["name"])
        versions[name] = meta["version"]
        requires[name] = list(meta.get("requires_dist") or [])
    provided = {dep.project for dep in debian}
    chosen: dict[str, str] = {}
    todo = ["evse-agent"]
    while todo:
        name = todo.pop()
        for requirement in requires.get(name, []):
            needed = _needed(requirement)
            # pip left out what its markers exclude on this Python: not in versions, not needed
            if needed is None or needed not in versions or needed in provided or needed in chosen:
                continue
            chosen[needed] = versions[needed]
            todo.append(needed)
    return chosen


def dependency_wheels(project_wheel: Path, debian: list[DebianDep], python: str, out: Path) -> None:
    """Resolve evse-agent's dependencies and download the pure wheels of those not from Debian."""
    with tempfile.TemporaryDirectory(prefix="evse-deps-") as tmp:
        constraints = Path(tmp) / "debian-constraints.txt"
        constraints.write_text("".join(f"{dep.project}<={dep.max_version}\n" for dep in debian), encoding="utf-8")
        report_file = Path(tmp) / "report.json"
        _run(
            [python, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
             "--report", str(report_file), "--constraint", str(constraints), str(project_wheel)],
            "resolving evse-agent's dependencies",
        )
        chosen = select(json.loads(report_file.read_text(encoding="utf-8")), debian)
        if not chosen:
            return
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        _run(
            [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--platform", "any", "--implementation", "py", "--abi", "none", "--python-version", version,
             "--dest", str(out), *(f"{name}=={ver}" for name, ver in sorted(chosen.items()))],
            "downloading pure-Python wheels (a project without one has compiled parts: add it and its Debian "
            "package to packaging/debian-deps.txt)",
        )
    for wheel in out.glob("*.whl"):
        if not PURE_WHEEL.search(wheel.name):
            raise WheelhouseError(f"{wheel.name} is not a pure-Python wheel; add it to packaging/debian-deps.txt")


def cache_key(project_wheel: Path, debian_file: Path) -> str:
    """What the dependency wheels depend on: the project's requirements, the Debian list, the Python."""
    digest = hashlib.sha256()
    for line in sorted(requirements_of(project_wheel)):
        digest.update(line.encode() + b"\n")
    digest.update(debian_file.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return digest.hexdigest()[:20]


def build(source: Path, out: Path, cache: Path | None, python: str = sys.executable) -> list[Path]:
    """Fill out (created, must hold no wheel) with the project's wheel and its dependencies' wheels."""
    debian_file = source / "packaging" / "debian-deps.txt"
    debian = read_debian_deps(debian_file)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.glob("*.whl")):
        raise WheelhouseError(f"{out} already holds wheels; give an empty or new directory")
    project_wheel = build_project_wheel(source, out, python)
    key = cache_key(project_wheel, debian_file)
    cached = cache / key if cache else None
    if cached is not None and cached.is_dir():
        for wheel in cached.glob("*.whl"):
            shutil.copy2(wheel, out / wheel.name)
    else:
        with tempfile.TemporaryDirectory(prefix="evse-deps-out-") as tmp:
            deps = Path(tmp)
            dependency_wheels(project_wheel, debian, python, deps)
            for wheel in deps.glob("*.whl"):
                shutil.copy2(wheel, out / wheel.name)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cached.parent))
                for wheel in deps.glob("*.whl"):
                    shutil.copy2(wheel, staging / wheel.name)
                try:
                    staging.rename(cached)  # atomic: a concurrent build sees all of it or nothing
                except OSError:
                    shutil.rmtree(staging)  # another build stored the same key first
    return sorted(out.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for the wheels (new or empty)")
    parser.add_argument("--source", type=Path, default=REPO, help="evse-agent checkout (default: this one)")
    parser.add_argument("--cache", type=Path, help="keep the dependency wheels here for the next build")
    args = parser.parse_args(argv)
    try:
        wheels = build(args.source.resolve(), args.out, args.cache)
    except WheelhouseError as err:
        print(f"wheelhouse: error: {err}", file=sys.stderr)
        return 1
    print(f"wheelhouse: {len(wheels)} wheels in {args.out}: {' '.join(w.name for w in wheels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
