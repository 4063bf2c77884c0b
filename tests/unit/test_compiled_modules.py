"""The guard against running a compiled module whose source changed since the build."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from streams import refuse_stale_compiled_modules


def tree(root: Path, compiled: bool, manifest: bool) -> Path:
    (root / "streams").mkdir(parents=True)
    (root / "agents").mkdir()
    source = root / "streams" / "timeline.py"
    source.write_text("X = 1\n")
    if compiled:
        (root / "streams" / "timeline.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    if manifest:
        digest = hashlib.sha1(source.read_bytes()).hexdigest()
        (root / "streams" / "compiled.sha1").write_text(f"{digest}  streams/timeline.py\n")
    return source


def test_an_interpreted_tree_and_a_fresh_build_import(tmp_path: Path) -> None:
    tree(tmp_path / "pure", compiled=False, manifest=False)
    refuse_stale_compiled_modules(tmp_path / "pure")
    tree(tmp_path / "built", compiled=True, manifest=True)
    refuse_stale_compiled_modules(tmp_path / "built")


def test_an_edited_source_or_an_unrecorded_build_is_refused(tmp_path: Path) -> None:
    source = tree(tmp_path / "edited", compiled=True, manifest=True)
    source.write_text("X = 2\n")
    with pytest.raises(ImportError, match=r"streams/timeline.py changed after it was compiled: rebuild"):
        refuse_stale_compiled_modules(tmp_path / "edited")
    tree(tmp_path / "unrecorded", compiled=True, manifest=False)
    with pytest.raises(ImportError, match="no record of the build"):
        refuse_stale_compiled_modules(tmp_path / "unrecorded")
