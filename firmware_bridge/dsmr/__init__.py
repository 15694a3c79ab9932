"""DSMR P1 (NL/BE smart meters): crc -> framing -> parser (OBIS table) -> source, plus writer and sim."""

from firmware_bridge.dsmr.framing import FramerConfig, TelegramFramer
from firmware_bridge.dsmr.mapping import MbusPolicy, telegram_to_reading
from firmware_bridge.dsmr.parser import Telegram, parse_telegram
from firmware_bridge.dsmr.source import DsmrConfig, DsmrSource

__all__ = [
    "DsmrConfig",
    "DsmrSource",
    "FramerConfig",
    "MbusPolicy",
    "Telegram",
    "TelegramFramer",
    "parse_telegram",
    "telegram_to_reading",
]
