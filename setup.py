"""Compiles the modules on the per-event path with mypyc (everything else stays in pyproject.toml).

The worker is one Python thread, CPU-bound on these modules; compiled, a raw event costs
~40 % less CPU (116.5 -> 69 us in-process, benchmarks/stage_cost.py). ``RWE_PURE_PYTHON=1``
at install time skips the compilation (for debugging and profiling: compiled functions are
opaque to py-spy and cProfile), as does a machine without a C compiler (with a warning). An
editable install leaves the compiled modules beside their sources, so ``streams/__init__.py``
refuses to import one whose source changed since the build (sha1s in streams/compiled.sha1).
"""

import hashlib
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

COMPILED = [
    "agents/aggregate.py",
    "agents/ascertain.py",
    "agents/monitor.py",
    "agents/normalise.py",
    "streams/alerting.py",
    "streams/ascertain_changelog.py",
    "streams/ascertainment.py",
    "streams/avro_codecs.py",  # generated: the engine's schemas' codecs
    "streams/avro_codegen.py",
    "streams/clinical.py",
    "streams/dedupe.py",
    "streams/disclosure.py",
    "streams/event_time_merge.py",
    "streams/feed_health.py",
    "streams/monitoring.py",
    "streams/monitors.py",
    "streams/outcomes.py",
    "streams/pseudonym.py",
    "streams/rolling.py",
    "streams/statistics.py",
    "streams/timeline.py",
]


ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "streams" / "compiled.sha1"  # what streams/__init__.py and ./run check


def ext_modules() -> list:
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not compiler and not os.environ.get("RWE_PURE_PYTHON"):
        print("setup.py: no C compiler (cc or gcc) found: installing the engine interpreted, ~40 % slower "
              "per event; install gcc, then `./run rebuild`", file=sys.stderr)
    if os.environ.get("RWE_PURE_PYTHON") or not compiler:  # and no compiled module left from an earlier build
        for stale in [*ROOT.glob("*__mypyc.*.so"), *ROOT.glob("streams/*.so"), *ROOT.glob("agents/*.so"), MANIFEST]:
            stale.unlink(missing_ok=True)
        return []
    from mypyc.build import mypycify

    MANIFEST.write_text("".join(f"{hashlib.sha1((ROOT / p).read_bytes()).hexdigest()}  {p}\n"  # noqa: S324
                                for p in COMPILED))

    # The build environment lacks the runtime dependencies (their types are Any there), so
    # an ignore needed against their stubs may be unused.
    return mypycify(["--no-warn-unused-ignores", *COMPILED], opt_level="3")


setup(ext_modules=ext_modules())
