"""What the image gets: the Dockerfile installs the project with `pip install .`, a wheel, not the
source folder, so a file the code reads at run time and the wheel leaves out is missing only there
(the released Avro schemas were: the worker and the API stopped at start). The wheel is built here
as pip builds it, offline (no build isolation), from a copy of the source, and read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.version import Version

from schemas.codec import released_schemas

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [pattern.rstrip("*") for pattern in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]]
# What the Dockerfile copies and a wheel has no use for (.dockerignore), and the tests.
LEFT_OUT = shutil.ignore_patterns(".git", ".venv", ".stack", ".invoice-automation", ".cache", ".pytest_cache",
                                  ".hypothesis", "test-artifacts", "build", "dist", "*.egg-info", "__pycache__",
                                  "*.pyc", "target", "tests", "bench", "samples")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The wheel, and the copy of the source it was built from."""
    if Version(version("setuptools")) < Version("77"):
        pytest.fail(f"setuptools {version('setuptools')} cannot build the wheel ([build-system] needs 77): "
                    "pip install -c constraints.txt -e '.[test]'")
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=LEFT_OUT)  # the build writes build/ and the egg-info beside the source
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--wheel-dir", str(tmp / "dist"), str(source)], check=True, timeout=120)
    [wheel] = (tmp / "dist").glob("invoice_automation-*.whl")
    return wheel, source


def test_the_wheel_holds_every_file_of_the_packages(built):
    wheel, source = built
    held = set(zipfile.ZipFile(wheel).namelist())
    # Every file of the packages' folders, Python or not: what the source folder runs on.
    expected = {path.relative_to(source).as_posix() for package in PACKAGES
                for path in (source / package).rglob("*") if path.is_file()}
    assert {"schemas/released/2026.11.1/invoice_automation.Verdict.avsc", "api/static/index.html",
            "connectors/scheduler/migrations/script.py.mako",
            "connectors/scheduler/migrations/versions/0001_processscheduler.py",
            "devstack/log4j2.properties", "devstack/maven/pom.xml"} <= expected
    assert not expected - held, f"missing from the wheel, and so from the image: {sorted(expected - held)}"


def test_what_the_code_loads_at_run_time_is_found_in_the_installed_wheel(built, tmp_path):
    installed = tmp_path / "site"
    zipfile.ZipFile(built[0]).extractall(installed)
    probe = """if True:
        import json
        from api.routes import dashboard
        from connectors.scheduler import migrate
        from devstack import install, jvm
        from schemas import codec
        print(json.dumps({
            "modules": [codec.__file__, dashboard.__file__, migrate.__file__],
            "released": len(codec.released_schemas()),
            "static": sorted(path.name for path in dashboard.STATIC.iterdir()),
            "migrations": sorted(path.name for path in (migrate.MIGRATIONS / "versions").glob("*.py")),
            "alembic": sorted(path.name for path in migrate.MIGRATIONS.iterdir() if path.is_file()),
            "files": [jvm.LOG4J.is_file(), install.POM.is_file()],
        }))
    """
    # Only the unpacked wheel before the installed dependencies: not the source folder.
    env = {**os.environ, "PYTHONPATH": str(installed)}
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert all(Path(module).is_relative_to(installed) for module in found["modules"]), found["modules"]
    assert found["released"] == len(released_schemas())  # as many as the source folder has
    assert found["static"] == sorted(path.name for path in (ROOT / "api" / "static").iterdir())
    versions = ROOT / "connectors" / "scheduler" / "migrations" / "versions"
    assert found["migrations"] == sorted(path.name for path in versions.glob("*.py"))
    assert {"env.py", "script.py.mako"} <= set(found["alembic"])
    assert found["files"] == [True, True]
