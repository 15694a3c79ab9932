"""ZigBee metering through zigpy: clusters (attribute tables) -> radio -> source; virtual meter."""

from firmware_bridge.zigbee.radio import RADIO_LIBRARIES, load_application_class
from firmware_bridge.zigbee.source import ZigbeeConfig, ZigbeeSource

__all__ = ["RADIO_LIBRARIES", "ZigbeeConfig", "ZigbeeSource", "load_application_class"]
