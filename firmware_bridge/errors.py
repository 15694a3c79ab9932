"""Exception hierarchy of the bridge.

``BridgeError`` is the root: callers that only want "the meter side failed" catch it. Frame-level
problems (``FramingError``, ``ChecksumError``, ``ParseError``, ``DecryptionError``) lose one frame
and are counted;
``TransientConnectionError`` means the link is down and the source reconnects with backoff.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error raised by firmware_bridge."""


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


class ConfigError(BridgeError, ValueError):
    """A source was configured with unknown or invalid options."""


class MissingDependencyError(BridgeError, ImportError):
    """An optional library (e.g. a ZigBee radio library) needed by the configuration is absent."""
