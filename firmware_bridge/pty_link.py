"""Pseudo-terminals standing in for USB serial devices (simulated meters, tests, benchmark).

``PtyDevice`` is one pty whose slave side the reader opens like ``/dev/ttyUSB0``. Its ``path`` is a
stable symlink (like ``/dev/serial/by-id/...``) so that ``unplug()`` (close the pty: the reader gets
EOF/EIO) and ``replug()`` (a new pty behind the same path) look to the reader like a USB cable.
``PtyBridge`` joins two ptys so that two programs that each open a path (a Modbus client and a
pymodbus server) talk as over a null-modem cable, without socat.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import termios
import tty
import uuid
from pathlib import Path


def _unique_temp_dir(prefix: str) -> str:
    return os.path.join(tempfile.gettempdir(), prefix + uuid.uuid4().hex[:12])


class PtyDevice:
    def __init__(self, name: str = "ttyV0", directory: str | None = None) -> None:
        # the directory is created on plug(): a device that is never plugged leaves nothing behind
        self._dir = Path(directory or _unique_temp_dir("unimeter-pty-"))
        self.path = str(self._dir / name)
        self.master_fd: int | None = None
        self._slave_fd: int | None = None
        self.plugged = False

    def plug(self) -> None:
        """Create a pty and point ``path`` at its slave (atomic symlink swap)."""
        if self.plugged:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        master_fd, slave_fd = os.openpty()
        tty.setraw(slave_fd)
        attrs = termios.tcgetattr(slave_fd)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave_fd, termios.TCSANOW, attrs)
        os.set_blocking(master_fd, False)
        tmp_link = self.path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_link)
        os.symlink(os.ttyname(slave_fd), tmp_link)
        os.replace(tmp_link, self.path)
        self.master_fd, self._slave_fd, self.plugged = master_fd, slave_fd, True

    def unplug(self) -> None:
        """Close the pty: a reader on the slave sees EOF/EIO; the path dangles until replug."""
        for fd in (self.master_fd, self._slave_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master_fd = self._slave_fd = None
        self.plugged = False

    def write(self, data: bytes) -> int:
        """Write without blocking; bytes that do not fit (nobody reading) are dropped, as on a UART."""
        if self.master_fd is None:
            return 0
        try:
            return os.write(self.master_fd, data)
        except (BlockingIOError, OSError):
            return 0

    def remove(self) -> None:
        self.unplug()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            self._dir.rmdir()


class PtyBridge:
    """Two ptys whose masters are relayed to each other: ``path_a`` <-> ``path_b``."""

    def __init__(self) -> None:
        self._dir = _unique_temp_dir("unimeter-bridge-")
        self.a = PtyDevice("ttyA", self._dir)
        self.b = PtyDevice("ttyB", self._dir)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def path_a(self) -> str:
        return self.a.path

    @property
    def path_b(self) -> str:
        return self.b.path

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.a.plug()
        self.b.plug()
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            self._loop.add_reader(src.master_fd, self._relay, src, dst)

    def _relay(self, src: PtyDevice, dst: PtyDevice) -> None:
        try:
            data = os.read(src.master_fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # no process has the slave open (EIO): nothing to relay
            return
        if data:
            dst.write(data)

    def stop(self) -> None:
        if self._loop is not None:
            for dev in (self.a, self.b):
                if dev.master_fd is not None:
                    self._loop.remove_reader(dev.master_fd)
        self.a.remove()
        self.b.remove()
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)

    async def __aenter__(self) -> PtyBridge:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
