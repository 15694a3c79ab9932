"""Modbus RTU meters: register maps (data) -> pymodbus async client -> Reading; virtual meter."""

from firmware_bridge.modbus.registers import (
           REGISTER_MAPS,
           SDM120,
           SDM630,
           RegisterMap,
           RegisterSpec,
)
from firmware_bridge.modbus.source import ModbusConfig, ModbusSource

__all__ = ["REGISTER_MAPS", "SDM120", "SDM630", "ModbusConfig", "ModbusSource", "RegisterMap",
           "RegisterSpec"]
