"""ZigBee radios: the radio libraries by config name (imported lazily), and a virtual radio.

``VirtualRadioApplication`` is a real zigpy ``ControllerApplication`` whose radio is in-process,
the way zigpy's own test-suite builds its ``App``: outgoing packets (``send_packet``) are routed to
``VirtualZigbeeMeter`` objects, which answer with ZCL frames fed back through ``packet_received``.
Everything above the radio (ZCL parsing, attribute cache, events, request/response matching) is
zigpy's real code.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
from typing import TYPE_CHECKING

from firmware_bridge.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from firmware_bridge.zigbee.virtual_meter import VirtualZigbeeMeter

# config name -> (module, pip package)
RADIO_LIBRARIES: dict[str, tuple[str, str]] = {
    "znp": ("zigpy_znp.zigbee.application", "zigpy-znp"),
    "ezsp": ("bellows.zigbee.application", "bellows"),
    "bellows": ("bellows.zigbee.application", "bellows"),
    "deconz": ("zigpy_deconz.zigbee.application", "zigpy-deconz"),
    "virtual": ("firmware_bridge.zigbee.radio", "unimeter"),
}

COORDINATOR_IEEE = "00:12:4b:00:00:00:00:01"


def load_application_class(radio: str):
    """The ControllerApplication class of ``radio``; a clear error if its library is missing."""
    if radio not in RADIO_LIBRARIES:
        raise ConfigError(f"unknown ZigBee radio {radio!r}; known: {sorted(RADIO_LIBRARIES)}")
    module_name, package = RADIO_LIBRARIES[radio]
    if radio == "virtual":
        return virtual_application_class()
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise MissingDependencyError(
            f"ZigBee radio {radio!r} needs the {package} library: pip install {package}") from e
    return module.ControllerApplication


def _zigpy_app_base():
    import zigpy.application

    return zigpy.application.ControllerApplication


def _make_virtual_class():
    import zigpy.endpoint
    import zigpy.profiles.zha
    import zigpy.state
    import zigpy.types as t
    import zigpy.zdo.types as zdo_t

    class _VirtualRadioApplication(_zigpy_app_base()):
        """A zigpy ControllerApplication over an in-process radio (no hardware)."""

        def __init__(self, config: dict) -> None:
            super().__init__(config)
            self.virtual_devices: dict[int, VirtualZigbeeMeter] = {}
            self.packets_sent = 0

        async def connect(self) -> None:
            return None

        async def disconnect(self) -> None:
            for meter in list(self.virtual_devices.values()):
                meter.detach()

        async def load_network_info(self, *, load_devices: bool = False) -> None:
            self.state.node_info = zigpy.state.NodeInfo(
                nwk=t.NWK(0x0000), ieee=t.EUI64.convert(COORDINATOR_IEEE),
                logical_type=zdo_t.LogicalType.Coordinator)
            self.state.network_info.channel = 15
            self.state.network_info.pan_id = t.PanId(0x1A62)

        async def write_network_info(self, *, network_info, node_info) -> None:
            return None

        async def reset_network_info(self) -> None:
            return None

        async def start_network(self) -> None:
            dev = self.add_device(ieee=self.state.node_info.ieee, nwk=self.state.node_info.nwk)
            dev.node_desc = _node_descriptor(zdo_t.LogicalType.Coordinator)
            ep = dev.add_endpoint(1)
            ep.status = zigpy.endpoint.Status.ZDO_INIT
            ep.profile_id = zigpy.profiles.zha.PROFILE_ID
            ep.device_type = zigpy.profiles.zha.DeviceType.CONFIGURATION_TOOL
            dev.model, dev.manufacturer = "Virtual coordinator", "unimeter"

        async def force_remove(self, dev) -> None:
            return None

        async def add_endpoint(self, descriptor) -> None:
            return None

        async def permit_ncp(self, time_s: int = 60) -> None:
            return None

        async def permit_with_link_key(self, node, link_key, time_s: int = 60) -> None:
            return None

        async def send_packet(self, packet) -> None:
            self.packets_sent += 1
            if packet.dst.addr_mode != t.AddrMode.NWK:
                return  # broadcasts / groups: no virtual device listens to them
            meter = self.virtual_devices.get(int(packet.dst.address))
            if meter is None:
                return
            loop = asyncio.get_running_loop()
            for response in meter.handle_packet(packet):
                loop.call_soon(self.packet_received, response)

        def attach(self, meter: VirtualZigbeeMeter):
            """Join a virtual meter (as an interviewed device) and start its reports."""
            dev = self.add_device(ieee=t.EUI64.convert(meter.ieee), nwk=t.NWK(meter.nwk))
            dev.node_desc = _node_descriptor(zdo_t.LogicalType.Router)
            ep = dev.add_endpoint(1)
            ep.status = zigpy.endpoint.Status.ZDO_INIT
            ep.profile_id = zigpy.profiles.zha.PROFILE_ID
            ep.device_type = zigpy.profiles.zha.DeviceType.METER_INTERFACE
            for cluster_id in meter.cluster_ids:
                ep.add_input_cluster(cluster_id)
            dev.model, dev.manufacturer = meter.model, meter.manufacturer
            self.virtual_devices[meter.nwk] = meter
            meter.attach(self)
            self.device_initialized(dev)
            return dev

    def _node_descriptor(logical_type):
        return zdo_t.NodeDescriptor(
            logical_type=logical_type, complex_descriptor_available=0,
            user_descriptor_available=0, reserved=0, aps_flags=0,
            frequency_band=zdo_t.NodeDescriptor.FrequencyBand.Freq2400MHz,
            mac_capability_flags=zdo_t.NodeDescriptor.MACCapabilityFlags.AllocateAddress,
            manufacturer_code=0x1234, maximum_buffer_size=82, maximum_incoming_transfer_size=82,
            server_mask=0, maximum_outgoing_transfer_size=82,
            descriptor_capability_field=zdo_t.NodeDescriptor.DescriptorCapability.NONE)

    return _VirtualRadioApplication


@functools.cache
def virtual_application_class():
    """The VirtualRadioApplication class (built on first use, so that zigpy is imported lazily)."""
    return _make_virtual_class()
