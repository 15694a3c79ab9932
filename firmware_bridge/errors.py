"""Exception hierarchy of the bridge, and the root of every unimeter error.

``UnimeterError`` is the root of all of unimeter's exceptions (bridge, signal, bundle, runtime,
agent, data, trainer, export); it lives here because this is the bottom layer, which imports
nothing of ours. ``ConfigError`` is the one configuration error of the whole project (bad source
options here, a bad agent TOML key in ``edge.agent.config``). ``BridgeError`` is the root of the
meter side: callers that only want "the meter side failed" catch it. Frame-level
problems (``FramingError``, ``ChecksumError``, ``ParseError``, ``DecryptionError``) lose one frame
and are counted;
``TransientConnectionError`` means the link is down and the source reconnects with backoff.
"""

from __future__ import annotations


class UnimeterError(Exception):
    """Root of every error unimeter raises on purpose; the message says what is wrong.

    ``exit_code`` is what the ``unimeter`` command returns when such an error reaches it: 1 for a
    failure, 2 for input or configuration the user has to fix.
    """

    exit_code = 1


class ConfigError(UnimeterError, ValueError):
    """Unknown or invalid options; ``key`` names the option at fault when known (``mqtt.port``).

    Raised as ``ConfigError("expected an integer, got 'abc'", key="mqtt.port")``; the message
    is then ``mqtt.port: expected an integer, got 'abc'``.
    """

    exit_code = 2

    def __init__(self, problem: str, *, key: str = "") -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


class BridgeError(UnimeterError):
    """Root of every error raised by firmware_bridge (besides ``ConfigError``)."""


class FrameError(BridgeError):
    """One frame was lost (base of the per-frame errors below)."""


class FramingError(FrameError):
    """Bytes could not be cut into a frame: truncated, oversized, bad trailer."""


class ChecksumError(FrameError):
    """A complete frame whose checksum (CRC16) does not match, or is missing where required."""


class ParseError(FrameError):
    """A frame with a valid envelope whose content cannot be understood."""


class DecryptionError(FrameError):
    """An encrypted frame (DLMS general-glo-ciphering) could not be opened: wrong key, bad tag."""


class TransientConnectionError(BridgeError):
    """The link to the meter is down (port gone, silent reader, no response); retry later."""


class MissingDependencyError(BridgeError, ImportError):
    """An optional library (e.g. a ZigBee radio library) needed by the configuration is absent."""
