"""The architecture the tree claims: pure domain packages, no import loops, one topology, docs that match."""

from __future__ import annotations

import ast
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.runtime import topics
from streams.runtime.memory import InMemoryDriver
from streams.runtime.topology import STAGES, TOPOLOGY, diagram
from streams.settings import DEV, Settings
from streams.vocabulary.dead_letters import Reason

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PURE = ("catalogue", "clinical", "outcomes", "indicators", "monitoring", "vocabulary")
RUNTIME = ("confluent_kafka", "faust", "aiokafka", "prometheus_client", "agents", "streams.runtime", "streams.state",
           "streams.cli", "streams.embedded", "streams.batch")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in [*ROOT.glob("streams/**/*.py"), *ROOT.glob("agents/*.py")]}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (lazy imports count)."""
    found = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:  # `from streams.wire import schemas` imports the module streams.wire.schemas
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found


@pytest.mark.parametrize("package", PURE)
def test_a_pure_domain_package_imports_no_kafka_client_and_no_runtime(package: str) -> None:
    offenders = {name: sorted(i for i in imports(path) if any(i == r or i.startswith(f"{r}.") for r in RUNTIME))
                 for name, path in MODULES.items() if name.startswith(f"streams.{package}")}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_streams_never_imports_agents_and_no_module_imports_itself_back() -> None:
    graph = {name: {i for i in imports(path) if i in MODULES and i != name} for name, path in MODULES.items()}
    assert not [n for n, deps in graph.items() if n.startswith("streams") and any(d.startswith("agents") for d in deps)]
    # Tarjan's strongly connected components: a component of more than one module is a loop.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(n: str) -> None:
        index[n] = low[n] = len(index)
        stack.append(n)
        for m in graph[n]:
            if m not in index:
                visit(m)
                low[n] = min(low[n], low[m])
            elif m in stack:
                low[n] = min(low[n], index[m])
        if low[n] == index[n]:
            component = []
            while True:
                m = stack.pop()
                component.append(m)
                if m == n:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for n in graph:
        if n not in index:
            visit(n)
    assert loops == []


def test_every_stage_reads_and_writes_exactly_what_the_topology_declares() -> None:
    from streams.simulator import SimulationConfig, generate

    settings = Settings(mode=DEV, pseudonym_key="k" * 40, metrics_port=0, partitions=2, min_cell_count=1)
    driver = InMemoryDriver(settings)
    config = SimulationConfig(seed=3, patients_per_site=30, start=datetime(2025, 1, 1, tzinfo=UTC), days=400,
                              malformed_rate=0.02, duplicate_rate=0.02)
    messages, _manifest = generate(config)
    for m in messages:
        driver.pipe(topics.RAW, m.value, m.key)
    driver.run()
    driver.advance(2.0)
    for spec in TOPOLOGY:
        stage = driver.stages[spec.name]
        assert stage.input_topics() == [settings.topic(t) for t in spec.inputs], spec.name
        written = driver.producer.written[spec.name]
        declared = {settings.topic(t) for t in (*spec.outputs, spec.changelog)}
        assert written <= declared, spec.name
        # Everything declared is written on this feed, but the aggregate's and monitor's dead
        # letters (only for malformed observations, which the ascertain stage never writes) and
        # alerts (a small in-control feed need not raise one).
        assert declared - written <= {settings.topic(topics.DLQ), settings.topic(topics.ALERTS)}, spec.name
    assert [s.name for s in TOPOLOGY] == list(STAGES)


def test_the_readme_draws_the_topology_and_lists_every_topic() -> None:
    for line in diagram():
        assert line in README, f"README's architecture diagram lacks: {line}"
    table = set(re.findall(r"^\| `rwe\.([a-z.-]+)`", README, re.M))
    assert table == {spec.name for spec in topics.TOPICS}


def test_the_readme_lists_every_dead_letter_reason() -> None:
    listed = re.search(r"Dead-letter reasons \(`[^`]+`\): (.*?)\.\n", README, re.S)
    assert listed is not None
    assert set(re.findall(r"`([a-z_]+)`", listed.group(1))) == {r.value for r in Reason}


def test_every_module_marked_compiled_is_compiled_in_a_compiled_build() -> None:
    """Runs under ``./run test-compiled`` (CI), which installs the wheel and sets RWE_EXPECT_COMPILED."""
    marked = [name for name, path in MODULES.items() if "# mypyc: compiled" in path.read_text().split('"""', 1)[0]]
    assert "agents.normalise" in marked and "streams.wire.codecs" in marked
    if not os.environ.get("RWE_EXPECT_COMPILED"):
        return  # an editable install is interpreted by design (README, "Architecture")
    import importlib

    interpreted = [name for name in marked if not (importlib.import_module(name).__file__ or "").endswith(".so")]
    assert interpreted == []
