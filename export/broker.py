"""A local MQTT broker for the demo: Mosquitto when installed, otherwise amqtt in-process.

Only binds to 127.0.0.1. `LocalBroker` is a context manager; `port` is chosen free at start.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from export.errors import ExportError

log = logging.getLogger(__name__)


class BrokerUnavailableError(ExportError, RuntimeError):
    """Neither Mosquitto nor amqtt can be started here."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerUnavailableError(f"broker did not accept connections on 127.0.0.1:{port}")


@dataclass
class LocalBroker:
    """Start a broker on loopback: ``kind`` is "auto", "mosquitto" or "amqtt"."""

    kind: str = "auto"
    port: int = 0
    kind_used: str = field(default="", init=False)
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)

    def start(self) -> LocalBroker:
        self.port = self.port or free_port()
        mosquitto = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if self.kind in ("auto", "mosquitto") and mosquitto:
            self._start_mosquitto(mosquitto)
        elif self.kind in ("auto", "amqtt"):
            self._start_amqtt()
        else:
            raise BrokerUnavailableError(
                "no MQTT broker: install Mosquitto (apt-get install mosquitto) or amqtt (pip install amqtt)"
            )
        try:
            wait_for_port(self.port)
        except BrokerUnavailableError:
            self.stop()
            raise
        log.info("started %s on 127.0.0.1:%d", self.kind_used, self.port)
        return self

    def _start_mosquitto(self, binary: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="unimeter-broker-")
        conf = Path(self._tmp.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\n"
        )
        self._proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.kind_used = "mosquitto"

    def _start_amqtt(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as e:
            raise BrokerUnavailableError(
                "no MQTT broker: install Mosquitto (apt-get install mosquitto) or amqtt (pip install amqtt)"
            ) from e
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        started = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(broker.start())
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(broker.shutdown())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not started.wait(15):
            raise BrokerUnavailableError("amqtt broker did not start")
        self.kind_used = "amqtt"

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop = self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
