"""Core of the streaming real-world-evidence engine: settings, topics, codecs, state, CLI."""

import os
from pathlib import Path

# The engine's linear algebra is small (control-limit Markov chains of ~300 states). OpenBLAS
# threads spin while they wait for work, taking CPU from the stages: a 300 x 300 solve took
# 88 ms with the default threads beside a running pipeline and 3.7 ms with one. Set before
# numpy is first imported; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def refuse_stale_compiled_modules(root: Path) -> None:
    """An editable install keeps the mypyc-compiled modules (setup.py) beside their sources,
    and Python imports the compiled one first: after an edit it would run the old code.
    setup.py records the sources it compiled (``compiled.sha1``, sha1sum's format)."""
    import hashlib

    if not any(next((root / package).glob("*.cpython-*.so"), None) for package in ("streams", "agents")):
        return
    manifest = root / "streams" / "compiled.sha1"
    lines = manifest.read_text().splitlines() if manifest.exists() else ["- (no record of the build)"]
    for line in lines:
        digest, path = line.split(maxsplit=1)
        source = root / path
        if not source.exists() or hashlib.sha1(source.read_bytes()).hexdigest() != digest:  # noqa: S324
            raise ImportError(f"{path} changed after it was compiled: rebuild with `./run rebuild` "
                              "(or reinstall with RWE_PURE_PYTHON=1 for no compiled modules)")


refuse_stale_compiled_modules(Path(__file__).resolve().parent.parent)
