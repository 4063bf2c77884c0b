"""What the README and deploy/ say about settings stays true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from streams.settings import describe

ROOT = Path(__file__).resolve().parents[2]
KNOWN = {env for env, _default, _doc in describe()}


def _documented(name: str) -> bool:
    return name in KNOWN or name.startswith("RWE_KAFKA_")


def test_every_setting_the_deployment_uses_exists() -> None:
    used = set(re.findall(r"\bname: (RWE_[A-Z_]+)", (ROOT / "deploy" / "kubernetes" / "worker.yaml").read_text()))
    assert used, "the manifest configures nothing?"
    assert {n for n in used if not _documented(n)} == set()


def test_the_readme_configuration_table_is_complete_and_current() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(RWE_[A-Z0-9_*]+)` \| ([^|]*) \|", readme, flags=re.MULTILINE))
    assert set(rows) == KNOWN
    for env, default, _doc in describe():
        assert rows[env].strip() == (f"`{default}`" if default else ""), env
