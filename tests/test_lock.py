"""constraints.txt pins the whole dependency set that tools/setup.sh installs: every
dependency pyproject.toml declares (the base ones and the extras setup installs) is there
with an ``==`` pin its declared range admits, and setup.sh installs from the lock."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# tools/check-latest.sh points EFFNAS_LOCK at the lock it would write.
LOCK = Path(os.environ.get("EFFNAS_LOCK") or ROOT / "constraints.txt")
SETUP = (ROOT / "tools" / "setup.sh").read_text()

tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and later")
Requirement = pytest.importorskip("packaging.requirements").Requirement


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for n, line in enumerate(LOCK.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.!+]+)", line)
        assert m, f"constraints.txt:{n}: {line!r} is not a NAME==VERSION pin"
        assert _name(m[1]) not in pins, f"constraints.txt:{n}: {m[1]} is pinned twice"
        pins[_name(m[1])] = m[2]
    return pins


def _setup_extras() -> set[str]:
    (extras,) = re.findall(r'-e "\.\[([a-z,]+)\]"', SETUP)
    # timm is installed from the lock too, without its dependencies (setup.sh says why).
    return set(extras.split(",")) | {"timm"}


def test_setup_installs_from_the_lock():
    assert 'LOCK=constraints.txt' in SETUP
    assert '-c "$CONSTRAINTS" -e ".[test,optuna,docs]"' in SETUP
    assert '-c "$LOCK" torch' in SETUP and '-c "$LOCK" pip setuptools' in SETUP
    assert "--no-deps $TIMM_PKGS" in SETUP and "timm==1" not in SETUP  # timm's pin: the lock's


def test_the_lock_pins_every_declared_dependency_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = _setup_extras()
    assert extras == {"test", "optuna", "docs", "timm"}
    declared = list(project["dependencies"])
    for extra in sorted(extras):
        declared += project["optional-dependencies"][extra]
    pins = _lock()
    for text in declared:
        req = Requirement(text)
        name = _name(req.name)
        assert name in pins, f"constraints.txt has no pin for {req.name} ({text})"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {text}"
        if req.extras:
            _extra_dependencies_are_pinned(req, pins)


def _extra_dependencies_are_pinned(req, pins: dict[str, str]) -> None:
    """ray[tune]: the dependencies of the extra are pinned too (read from the installed ray's
    metadata, where that is the locked release)."""
    from importlib import metadata
    from packaging.markers import default_environment
    try:
        if metadata.version(req.name) != pins[_name(req.name)]:
            return
    except metadata.PackageNotFoundError:
        return
    for text in metadata.requires(req.name) or []:
        dep = Requirement(text)
        if dep.marker is None or any(dep.marker.evaluate({**default_environment(), "extra": e})
                                     for e in ("", *req.extras)):
            assert _name(dep.name) in pins, \
                f"constraints.txt has no pin for {dep.name} ({req.name}'s {text})"


def test_the_lock_pins_the_builds_setup_installs_beside_the_project():
    pins = _lock()
    for name in ("pip", "setuptools", "torch", "torchvision", "timm"):
        assert name in pins, name
    # torch 2.N goes with torchvision 0.(N+15) (setup.sh), and the torch pin has no build
    # label, so a CUDA build of the same release satisfies it.
    major, minor = pins["torch"].split(".")[:2]
    assert major == "2" and pins["torchvision"].startswith(f"0.{int(minor) + 15}.")
    assert "+" not in pins["torch"] and "+" not in pins["torchvision"]
    assert "effnas" not in pins and "onnx" not in pins  # the project itself; an extra setup skips
