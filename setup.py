"""Compiles the per-event path with mypyc when a wheel is built (everything else is in pyproject.toml).

The worker is one Python thread, CPU-bound on these modules; compiled, a raw event costs
~40 % less CPU (116.5 -> 69 us in-process, benchmarks/stage_cost.py). Which modules are
compiled is written in each of them: a first-lines comment ``# mypyc: compiled``
(``grep -rl '^# mypyc: compiled' streams agents`` lists them).

An editable install (``./run`` for tests and edits) is never compiled: an edit then takes
effect at once, and py-spy and cProfile can see every function. A wheel (``pip install .``,
``pip wheel .``; ``./run`` builds one for the demo and the benchmarks) is compiled, unless
``RWE_PURE_PYTHON=1`` or the machine has no C compiler (with a warning). The wheel also
carries the top-level ``schemas/`` folder (with the earlier versions in ``history/``) as
``streams/wire/avsc/``.
"""

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
MARKER = "# mypyc: compiled"


def compiled_modules() -> list[str]:
    """Modules that declare themselves compiled, as paths relative to the project root."""
    sources = [*ROOT.glob("streams/**/*.py"), *ROOT.glob("agents/*.py")]
    return sorted(str(p.relative_to(ROOT)) for p in sources
                  if MARKER in p.read_text(encoding="utf-8").split('"""', 1)[0])


def ext_modules() -> list:
    # Only a wheel or an install compiles: metadata and editable builds run this file too.
    building = {"bdist_wheel", "build_ext", "build", "install"} & set(sys.argv)
    if not building or "editable_wheel" in sys.argv or os.environ.get("RWE_PURE_PYTHON"):
        return []
    if not (shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")):
        print("setup.py: no C compiler (cc or gcc) found: building the engine interpreted, ~40 % slower "
              "per event; install gcc and build again", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    # The build environment lacks the runtime dependencies (their types are Any there), so
    # an ignore needed against their stubs may be unused.
    return mypycify(["--no-warn-unused-ignores", *compiled_modules()], opt_level="3")


class BuildWithSchemas(build_py):
    """Copies the Avro schemas into the package, where streams.wire.schemas finds them in a wheel."""

    def run(self) -> None:
        # An in-tree build reuses build/lib: a module deleted or moved since would ship again.
        for package in ("streams", "agents"):
            shutil.rmtree(Path(self.build_lib) / package, ignore_errors=True)
        super().run()
        for schema in [*(ROOT / "schemas").glob("*.avsc"), *(ROOT / "schemas").glob("history/*.avsc")]:
            target = Path(self.build_lib) / "streams" / "wire" / "avsc" / schema.relative_to(ROOT / "schemas")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(schema, target)


setup(ext_modules=ext_modules(), cmdclass={"build_py": BuildWithSchemas})
