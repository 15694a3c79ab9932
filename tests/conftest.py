"""Shared fixtures: a real Mosquitto broker on a free loopback port, and a tiny real model bundle.

``mosquitto`` (per test) and ``mosquitto_module`` (per module) start /usr/sbin/mosquitto with
persistence in a temporary directory; ``broker.stop()`` / ``broker.start()`` restart it on the same
port (a broker outage), keeping retained messages and persistent sessions across the restart.
``tiny_bundle`` (per session) trains and exports a tiny model with ``export.pipeline.quick_bundle``
(or reuses the bundle directory named by $UNIMETER_TINY_BUNDLE).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """A real mosquitto process on 127.0.0.1:<port>; ``stop()``/``start()`` simulate an outage."""

    def __init__(self, directory: Path, port: int | None = None, extra_conf: str = "",
                 anonymous: bool = True):
        self.dir = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.conf = directory / "mosquitto.conf"
        # mosquitto started as root drops to user "mosquitto", which cannot write pytest's private
        # temporary directories: stay the current user so the persistence file can be written.
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.conf.write_text(
            f"user {user}\nlistener {self.port} 127.0.0.1\n{extra_conf}"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            f"persistence true\npersistence_location {directory}/\nautosave_interval 1\n"
            "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest stderr\nlog_type error\n"
        )

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        if not Path(MOSQUITTO).exists():
            pytest.fail("mosquitto is not installed (apt-get install mosquitto; scripts/setup.sh does it)")
        with open(self.dir / "mosquitto.log", "ab") as log_file:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                         stderr=log_file)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError as e:
                if self.proc.poll() is not None:
                    log_text = (self.dir / "mosquitto.log").read_text()
                    raise RuntimeError(f"mosquitto exited: {log_text}") from e
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: mosquitto saves its persistence file)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def mosquitto(tmp_path_factory):
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def mosquitto_module(tmp_path_factory):
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A real bundle from a tiny model trained on simulated data (about a minute, once per session)."""
    reuse = os.environ.get("UNIMETER_TINY_BUNDLE")  # a bundle quick_bundle wrote before (dev loop)
    if reuse:
        return Path(reuse)
    from export.pipeline import quick_bundle

    out = tmp_path_factory.mktemp("tiny_bundle")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return Path(quick_bundle(out, seed=0))
