"""A built wheel carries what the engine reads at run time, and runs outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built interpreted (the compiled build takes minutes; CI's
    ``./run test-compiled`` and ``./run demo`` run the compiled one)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, env={**os.environ, "RWE_PURE_PYTHON": "1"}, capture_output=True)
    (built,) = out.glob("rwe_engine-*.whl")
    return built


def test_the_wheel_carries_the_catalogue_and_the_schemas(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in [*ROOT.glob("streams/catalogue/**/*.toml")]:
        assert str(path.relative_to(ROOT)) in names
    schemas = {str(p.relative_to(ROOT / "schemas")) for p in (ROOT / "schemas").glob("**/*.avsc")}
    bundled = {n.removeprefix("streams/wire/avsc/") for n in names if n.startswith("streams/wire/avsc/")}
    assert schemas and bundled == schemas
    assert {"agents/normalise.py", "streams/runtime/topology.py"} <= names
    sources = {str(p.relative_to(ROOT)) for p in [*ROOT.glob("streams/**/*.py"), *ROOT.glob("agents/*.py")]}
    assert {n for n in names if n.endswith(".py")} == sources  # nothing stale from an earlier build
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]


def test_the_installed_wheel_validates_the_catalogue_and_evaluates_a_feed(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    # -P and a working directory outside the tree: only the installed copy can be imported.
    env = {**os.environ, "PYTHONPATH": str(target), "RWE_MODE": "dev"}

    def rwe(*args: str) -> str:
        code = "import sys; from streams.cli.main import main; sys.exit(main(sys.argv[1:]))"
        done = subprocess.run([sys.executable, "-P", "-c", code, *args], check=False, cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.run([sys.executable, "-P", "-c", "import streams; print(streams.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(target))
    assert "valid" in rwe("catalogue", "validate").lower()
    feed = tmp_path / "feed.avro"
    rwe("simulate", "--seed", "2", "--patients-per-site", "20", "--days", "120", "--out", str(feed))
    report = rwe("evaluate", "--events", str(feed), "--format", "csv")
    assert report.count("\n") > 10 and "hf_mortality_30d" in report
