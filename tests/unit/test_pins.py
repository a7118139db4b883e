"""What the pins say: the runtime needs no test package, and constraints.txt (the versions the
tests passed on) fits every range pyproject.toml allows and is what the installs use."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def _pinned() -> dict[str, str]:
    lines = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    assert all(len(pin) == 2 for pin in pins), "constraints.txt holds exact pins only"
    return {canonicalize_name(name): pinned for name, pinned in pins}


def test_no_test_package_is_a_runtime_dependency():
    runtime = _requirements(PROJECT["dependencies"])
    test_only = _requirements(PROJECT["optional-dependencies"]["test"])
    assert not set(runtime) & set(test_only)
    assert {"pytest", "hypothesis", "testcontainers", "pyyaml", "jsonschema"} <= set(test_only)


def test_every_declared_package_is_pinned_within_its_range():
    pinned = _pinned()
    declared = {**_requirements(PROJECT["dependencies"]),
                **{name: r for extra in ("test", "rocksdb", "mssql")
                   for name, r in _requirements(PROJECT["optional-dependencies"][extra]).items()}}
    for name, requirement in declared.items():
        assert name in pinned, f"{name} is not in constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {name}=={pinned[name]}, outside {requirement}")
    assert "invoice-automation" not in pinned


def test_the_installs_use_the_constraints():
    assert '--constraint "$ROOT/constraints.txt"' in (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "--constraint constraints.txt" in (ROOT / "Dockerfile").read_text()
