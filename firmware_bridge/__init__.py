"""Meter protocols -> one stream of :class:`Reading`.

This package imports nothing else of unimeter (it is the bottom layer): a virtual meter (a
protocol emulator, ``*.virtual_meter``) takes a plain power-source callable, and the wiring to the
household simulator lives in ``edge/``. ``UnimeterError``, the root of every unimeter error, and
the one ``ConfigError`` are defined here for the same reason.

Layers per protocol, as in zigpy and dsmr_parser: transport (``serial_port``, ``pty_link``, the
zigpy radio), framing (``dsmr.framing``; pymodbus' RTU framer), parsing with data tables
(``dsmr.obis``, ``modbus.registers``, ``zigbee.clusters``), and objects (``Reading``). Every source
implements :class:`MeterSource`; :func:`build_source` builds one from the agent's config. Protocol
libraries (pyserial, pymodbus, zigpy) are imported only when a source of that kind is used.
"""

from firmware_bridge.errors import (
    BridgeError,
    ChecksumError,
    ConfigError,
    DecryptionError,
    FrameError,
    FramingError,
    MissingDependencyError,
    ParseError,
    TransientConnectionError,
    UnimeterError,
)
from firmware_bridge.reading import Reading, ReadingFlag
from firmware_bridge.source import BackoffConfig, MeterSource, SourceEvent, SourceStats
from firmware_bridge.sources import SOURCE_KINDS, build_source

__all__ = [
    "SOURCE_KINDS",
    "BackoffConfig",
    "BridgeError",
    "ChecksumError",
    "ConfigError",
    "DecryptionError",
    "FrameError",
    "FramingError",
    "MeterSource",
    "MissingDependencyError",
    "ParseError",
    "Reading",
    "ReadingFlag",
    "SourceEvent",
    "SourceStats",
    "TransientConnectionError",
    "UnimeterError",
    "build_source",
]
