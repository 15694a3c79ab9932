"""A virtual ZigBee smart-meter plug: Metering (0x0702) and Electrical Measurement (0x0B04) server.

It lives on a ``VirtualRadioApplication``: it answers Read Attributes and Configure Reporting with
real ZCL frames, and sends Report Attributes frames every ``report_interval_s`` with the values of
``power_source``. Raw values use the scaling a typical plug announces (demand in W via divisor
1000 of kW, summation in Wh, voltage in 0.1 V, current in mA, active power in W).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from firmware_bridge.virtual_meter import PowerSource, VirtualMeterState
from firmware_bridge.zigbee.clusters import (
    ATTRIBUTES,
    ELECTRICAL_MEASUREMENT_CLUSTER_ID,
    METERING_CLUSTER_ID,
)

_NAME_TO_ID = {(cid, name): aid for (cid, aid), name in ATTRIBUTES.items()}
_REPORTED = {
    METERING_CLUSTER_ID: ("instantaneous_demand", "current_summ_delivered", "current_summ_received"),
    ELECTRICAL_MEASUREMENT_CLUSTER_ID: ("active_power", "reactive_power", "rms_voltage", "rms_current"),
}


class _VirtualDevice:
    """The radio side of a virtual device: ZDO Bind, Read Attributes and Configure Reporting
    answered with real ZCL frames, and ZCL packets built for ``app.packet_received``.

    Subclasses set ``cluster_ids`` and implement ``read_values(cluster_id)`` (the attribute
    values a Read Attributes request is answered from, as ``TypeValue``s by attribute id).
    """

    supports_reporting_config = True

    def __init__(self, *, ieee: str, nwk: int, model: str, manufacturer: str) -> None:
        self.ieee, self.nwk, self.model, self.manufacturer = ieee, nwk, model, manufacturer
        self.reporting_configured: dict[tuple[int, int], tuple[int, int]] = {}
        self.bound_clusters: set[int] = set()
        self.app = None
        self._tsn = 0

    cluster_ids: tuple[int, ...] = ()

    def read_values(self, cluster_id: int) -> dict[int, object]:
        raise NotImplementedError

    def attach(self, app) -> None:
        self.app = app

    def detach(self) -> None:
        self.app = None

    def report_packet(self, cluster_id: int, records: dict[int, object]):
        """A Report Attributes frame of ``records`` (attribute id -> ``TypeValue``)."""
        from zigpy.zcl import foundation

        payload = b"".join(foundation.Attribute(attrid=attr_id, value=value).serialize()
                           for attr_id, value in records.items())
        return self._packet(cluster_id, foundation.GeneralCommand.Report_Attributes,
                            self._next_tsn(), payload)

    def handle_packet(self, packet) -> list:
        """Answer a ZCL request sent to this device: Read Attributes, Configure Reporting."""
        from zigpy.zcl import foundation

        if int(packet.dst_ep) == 0:  # ZDO
            return self._handle_zdo(packet)
        if int(packet.cluster_id) not in self.cluster_ids:
            return []
        hdr, rest = foundation.ZCLHeader.deserialize(packet.data.serialize())
        if hdr.frame_control.frame_type != foundation.FrameType.GLOBAL_COMMAND:
            return []
        cluster_id = int(packet.cluster_id)
        if hdr.command_id == foundation.GeneralCommand.Read_Attributes:
            return [self._read_response(cluster_id, hdr.tsn, rest)]
        if hdr.command_id == foundation.GeneralCommand.Configure_Reporting:
            return [self._configure_response(cluster_id, hdr.tsn, rest)]
        return []

    def _handle_zdo(self, packet) -> list:
        """Answer Bind_req (the coordinator subscribing to a cluster's reports) with SUCCESS."""
        import zigpy.types as t
        import zigpy.zdo.types as zdo_t

        if int(packet.cluster_id) != zdo_t.ZDOCmd.Bind_req:
            return []
        data = packet.data.serialize()
        tsn = data[0]
        _src_ieee, rest = t.EUI64.deserialize(data[1:])
        _src_ep, rest = t.uint8_t.deserialize(rest)
        cluster_id, _ = t.uint16_t.deserialize(rest)
        self.bound_clusters.add(int(cluster_id))
        status = bytes([tsn]) + zdo_t.Status.SUCCESS.serialize()
        return [t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(self.nwk)), src_ep=0,
            dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0x0000)), dst_ep=0,
            tsn=tsn, profile_id=0, cluster_id=zdo_t.ZDOCmd.Bind_rsp,
            data=t.SerializableBytes(status), lqi=255, rssi=-40)]

    def _read_response(self, cluster_id: int, tsn: int, payload: bytes):
        import zigpy.types as t
        from zigpy.zcl import foundation

        attr_ids, _ = t.List[t.uint16_t].deserialize(payload)
        values = self.read_values(cluster_id)
        records = []
        for attr_id in attr_ids:
            value = values.get(int(attr_id))
            if value is None:
                records.append(foundation.ReadAttributeRecord(
                    attr_id, foundation.Status.UNSUPPORTED_ATTRIBUTE))
                continue
            records.append(foundation.ReadAttributeRecord(attr_id, foundation.Status.SUCCESS, value))
        return self._packet(cluster_id, foundation.GeneralCommand.Read_Attributes_rsp, tsn,
                            b"".join(r.serialize() for r in records))

    def _configure_response(self, cluster_id: int, tsn: int, payload: bytes):
        from zigpy.zcl import foundation

        schema = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Configure_Reporting].schema
        request, _ = schema.deserialize(payload)
        if self.supports_reporting_config:
            for rec in request.config_records:
                self.reporting_configured[(cluster_id, int(rec.attrid))] = (
                    int(rec.min_interval), int(rec.max_interval))
            records = [foundation.ConfigureReportingResponseRecord(
                status=foundation.Status.SUCCESS)]
        else:
            records = [foundation.ConfigureReportingResponseRecord(
                status=foundation.Status.UNSUPPORTED_ATTRIBUTE, direction=0, attrid=rec.attrid)
                for rec in request.config_records]
        body = foundation.ConfigureReportingResponse(records).serialize()
        return self._packet(cluster_id, foundation.GeneralCommand.Configure_Reporting_rsp, tsn, body)

    def _next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) % 256
        return self._tsn

    def _packet(self, cluster_id: int, command_id, tsn: int, payload: bytes):
        import zigpy.profiles.zha
        import zigpy.types as t
        from zigpy.zcl import foundation

        hdr = foundation.ZCLHeader.general(tsn, command_id,
                                           direction=foundation.Direction.Server_to_Client)
        return t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(self.nwk)), src_ep=1,
            dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0x0000)), dst_ep=1,
            tsn=tsn, profile_id=zigpy.profiles.zha.PROFILE_ID, cluster_id=cluster_id,
            data=t.SerializableBytes(hdr.serialize() + payload), lqi=255, rssi=-40)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.detach()


def type_value(cluster_id: int, name: str, value: int):
    """``value`` as a ZCL ``TypeValue`` of the attribute's declared type (zigpy's AttributeDefs)."""
    from zigpy.zcl import foundation
    from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
    from zigpy.zcl.clusters.smartenergy import Metering

    cluster = Metering if cluster_id == METERING_CLUSTER_ID else ElectricalMeasurement
    python_type = getattr(cluster.AttributeDefs, name).type
    type_id = foundation.DataType.from_python_type(python_type).type_id
    return foundation.TypeValue(type=type_id, value=python_type(value))


def wire_type_value(type_id: int, value: int | float):
    """``value`` as a ZCL ``TypeValue`` of the ZCL type ``type_id`` (what a device chose to send)."""
    from zigpy.zcl import foundation

    python_type = foundation.DataType.from_type_id(type_id).python_type
    return foundation.TypeValue(type=type_id, value=python_type(value))


class VirtualZigbeeMeter(_VirtualDevice):
    """``async with VirtualZigbeeMeter(power_source) as meter:`` then attach it to a virtual radio
    (``ZigbeeSource`` with radio="virtual" and ``virtual_devices=[meter]`` does that).

    ``supports_reporting_config=False`` answers Configure Reporting with UNSUPPORTED_ATTRIBUTE (a
    device that only reports on its own schedule).
    """

    def __init__(self, power_source: PowerSource, *, ieee: str = "00:0d:6f:00:0a:bc:de:01",
                 nwk: int = 0x4A31, report_interval_s: float = 1.0,
                 electrical_measurement: bool = True, supports_reporting_config: bool = True,
                 model: str = "Virtual meter plug", manufacturer: str = "unimeter",
                 silent_attributes: tuple[str, ...] = (),
                 time_fn: Callable[[], float] = time.time) -> None:
        if report_interval_s <= 0:
            raise ValueError("report_interval_s must be > 0")
        super().__init__(ieee=ieee, nwk=nwk, model=model, manufacturer=manufacturer)
        self.state = VirtualMeterState(power_source)
        self.report_interval_s = report_interval_s
        self.electrical_measurement = electrical_measurement
        self.supports_reporting_config = supports_reporting_config
        self.time_fn = time_fn
        self.silent_attributes = silent_attributes  # never reported (e.g. a meter without demand)
        self.scaling = {"multiplier": 1, "divisor": 1000, "unit_of_measure": 0,
                        "ac_power_multiplier": 1, "ac_power_divisor": 1,
                        "ac_voltage_multiplier": 1, "ac_voltage_divisor": 10,
                        "ac_current_multiplier": 1, "ac_current_divisor": 1000}
        self.reports_sent = 0
        self._task: asyncio.Task | None = None

    @property
    def cluster_ids(self) -> tuple[int, ...]:
        if self.electrical_measurement:
            return (METERING_CLUSTER_ID, ELECTRICAL_MEASUREMENT_CLUSTER_ID)
        return (METERING_CLUSTER_ID,)

    def raw_values(self, ts_s: float) -> dict[str, int]:
        """Raw attribute values at ``ts_s`` (the integers a device puts on the air)."""
        regs = self.state.sample(ts_s)
        values = dict(self.scaling)
        values.update(
            instantaneous_demand=round(regs.power_w),  # W with multiplier 1 / divisor 1000 of kW
            current_summ_delivered=max(0, round(regs.import_wh)),
            current_summ_received=max(0, round(regs.export_wh)),
            active_power=max(-32768, min(32767, round(regs.power_w))),
            reactive_power=max(-32768, min(32767, round(regs.reactive_var))),
            rms_voltage=max(0, min(65535, round(regs.voltage_v * 10))),
            rms_current=max(0, min(65535, round(regs.current_a * 1000))),
        )
        return values

    def read_values(self, cluster_id: int) -> dict[int, object]:
        values = self.raw_values(self.time_fn())
        return {aid: type_value(cid, name, values[name]) for (cid, aid), name in ATTRIBUTES.items()
                if cid == cluster_id and name in values}

    def attach(self, app) -> None:
        super().attach(app)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._report_loop())

    def detach(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        super().detach()

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.report_interval_s)
            if self.app is not None:
                self.send_reports()

    def send_reports(self) -> None:
        values = self.raw_values(self.time_fn())
        for cluster_id in self.cluster_ids:
            names = [n for n in _REPORTED[cluster_id] if n not in self.silent_attributes]
            records = {_NAME_TO_ID[(cluster_id, n)]: type_value(cluster_id, n, values[n]) for n in names}
            self.app.packet_received(self.report_packet(cluster_id, records))
        self.reports_sent += 1


class ReplayZigbeeDevice(_VirtualDevice):
    """A recorded device: answers Read Attributes from ``read`` and sends recorded report frames.

    ``read``: {cluster id: {attribute id: (ZCL type id, value)}}; an attribute not in it answers
    UNSUPPORTED_ATTRIBUTE. ``reports``: a list of frames, each {cluster id: [(attribute id, ZCL
    type id, value), ...]}, sent one by one with ``send_next()`` as one Report Attributes frame
    per cluster, with the type the device put on the air (an invalid number is sent as it was).
    """

    def __init__(self, clusters: tuple[int, ...], read: dict[int, dict[int, tuple[int, int | float]]],
                 reports: list[dict[int, list[tuple[int, int, int | float]]]], *,
                 ieee: str = "00:0d:6f:00:0b:cd:ef:02", nwk: int = 0x5B42,
                 model: str = "Replayed meter", manufacturer: str = "unimeter") -> None:
        super().__init__(ieee=ieee, nwk=nwk, model=model, manufacturer=manufacturer)
        self.cluster_ids = tuple(clusters)
        self.read, self.reports = read, list(reports)
        self.reports_sent = 0

    @classmethod
    def from_case(cls, case: dict, **options) -> ReplayZigbeeDevice:
        """From a case's ``reports.json`` (hex strings as ids: ``{"0x0702": {"0x0300": [48, 0]}}``)."""
        read = {int(c, 16): {int(a, 16): (int(tv[0]), tv[1]) for a, tv in attrs.items()}
                for c, attrs in case.get("read", {}).items()}
        reports = [{int(c, 16): [(int(a, 16), int(type_id), value) for a, type_id, value in recs]
                    for c, recs in frame.items()} for frame in case["reports"]]
        return cls(tuple(int(c) for c in case["clusters"]), read, reports, **options)

    def read_values(self, cluster_id: int) -> dict[int, object]:
        return {aid: wire_type_value(type_id, value)
                for aid, (type_id, value) in self.read.get(cluster_id, {}).items()}

    def send_next(self) -> bool:
        """Send the next recorded frame (one per cluster); False when all were sent."""
        if self.reports_sent >= len(self.reports):
            return False
        frame = self.reports[self.reports_sent]
        for cluster_id, recs in frame.items():
            records = {aid: wire_type_value(type_id, value) for aid, type_id, value in recs}
            self.app.packet_received(self.report_packet(cluster_id, records))
        self.reports_sent += 1
        return True

