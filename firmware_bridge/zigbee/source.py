"""ZigBee metering devices through zigpy: attribute reports -> Reading.

A zigpy ``ControllerApplication`` (radio library chosen by config) is started; every device with a
Metering (0x0702) or Electrical Measurement (0x0B04) server cluster is subscribed with
``cluster.on_event("attribute_report", ...)`` (current zigpy; the legacy ``attribute_updated``
listener is not used), its scaling attributes are read and reporting is configured where the device
accepts it. The reports of one frame are coalesced into one ``Reading`` per device.

An attribute reported (or read) as its type's ZCL invalid number (``datatypes.INVALID_VALUES``:
all ones for unsigned types, 0x80.. for signed ones, NaN for floats) has no value: the field of
the Reading is None, the Reading carries ``ReadingFlag.INVALID_VALUE`` and
``extra["invalid_attributes"]`` names the attributes, and ``stats.invalid_values`` counts them
(also those of attributes the Reading does not carry, such as tier summations, which flag nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.errors import ConfigError, TransientConnectionError
from firmware_bridge.reading import Reading, ReadingFlag
from firmware_bridge.source import BackoffConfig, MeterSource
from firmware_bridge.zigbee.clusters import (
    ATTRIBUTES,
    ELECTRICAL_MEASUREMENT_CLUSTER_ID,
    METERING_CLUSTER_ID,
    REPORTING,
    SCALING_ATTRIBUTES,
    MeteringState,
)
from firmware_bridge.zigbee.datatypes import is_invalid_zigpy_value
from firmware_bridge.zigbee.radio import RADIO_LIBRARIES, load_application_class

LOGGER = logging.getLogger(__name__)
_REPORTING_PER_REQUEST = 3  # attribute records per Configure Reporting request (ZHA sends 3)
WATCHED_CLUSTERS = (METERING_CLUSTER_ID, ELECTRICAL_MEASUREMENT_CLUSTER_ID)
READ_ATTRIBUTES = frozenset(ATTRIBUTES.values())


@dataclass
class ZigbeeConfig:
    """Options of ``build_source("zigbee", ...)``.

    radio: "znp" (zigpy-znp), "ezsp"/"bellows" (bellows), "deconz" (zigpy-deconz), or "virtual".
    device_path / baudrate / flow_control: the coordinator's serial port.
    database_path: zigpy's SQLite device database (None: in memory, devices re-join each start).
    meters: device IEEE ("00:0d:6f:...") -> meter id; devices not listed get their IEEE as id
        unless ``only_listed`` is set.
    configure_reporting: bind each metering cluster to the coordinator and send Configure
        Reporting (report_min/max_interval_s) to it; refusals are recorded, never fatal.
    request_timeout_s: timeout of the reads/configure requests at subscription.
    read_timeout_s: no report from any device for this long -> restart the radio (None: never).
    virtual_devices: VirtualZigbeeMeter objects to attach (radio="virtual" only).
    """

    radio: str = "znp"
    device_path: str = "/dev/ttyUSB0"
    baudrate: int = 115200
    flow_control: str | None = None
    database_path: str | None = None
    meters: Mapping[str, str] = field(default_factory=dict)
    only_listed: bool = False
    configure_reporting: bool = True
    report_min_interval_s: int = 1
    report_max_interval_s: int = 60
    request_timeout_s: float = 5.0
    read_timeout_s: float | None = None
    virtual_devices: Sequence[Any] = ()

    def __post_init__(self) -> None:
        if self.radio not in RADIO_LIBRARIES:
            raise ConfigError(f"unknown ZigBee radio {self.radio!r}; known {sorted(RADIO_LIBRARIES)}")
        if self.virtual_devices and self.radio != "virtual":
            raise ConfigError("virtual_devices need radio='virtual'")
        self.meters = {k.lower(): v for k, v in self.meters.items()}

    def zigpy_config(self) -> dict:
        import zigpy.config as zc

        device = {zc.CONF_DEVICE_PATH: self.device_path, zc.CONF_DEVICE_BAUDRATE: self.baudrate}
        if self.flow_control:
            device[zc.CONF_DEVICE_FLOW_CONTROL] = self.flow_control
        return {
            zc.CONF_DEVICE: device,
            zc.CONF_DATABASE: self.database_path,
            zc.CONF_OTA: {zc.CONF_OTA_ENABLED: False},
            zc.CONF_TOPO_SCAN_ENABLED: False,
            zc.CONF_NWK_BACKUP_ENABLED: self.radio != "virtual",
        }


class ZigbeeSource(MeterSource):
    kind = "zigbee"

    def __init__(self, config: ZigbeeConfig, *, meter_id: str = "zigbee",
                 backoff: BackoffConfig | None = None, on_event=None,
                 extra_flags: ReadingFlag = ReadingFlag.NONE, source_name: str = "zigbee") -> None:
        super().__init__(meter_id, backoff=backoff, on_event=on_event)
        self.config = config
        self.extra_flags, self.source_name = extra_flags, source_name
        self.app = None
        self.states: dict[str, MeteringState] = {}  # by IEEE
        self.configured: dict[str, dict] = {}  # IEEE -> {attribute name: status}
        self._last_counters: dict[str, tuple[float, float | None, float | None]] = {}
        self._queue: asyncio.Queue[Reading] = asyncio.Queue(maxsize=4096)
        self._dirty: set[str] = set()
        self._invalid: dict[str, set[str]] = {}  # IEEE -> attributes sent as invalid this frame
        self._flush_scheduled = False
        self._unsubscribe: list = []
        self._setup_tasks: set[asyncio.Task] = set()
        self._lost: BaseException | None = None

    # -- MeterSource ----------------------------------------------------------------------------
    async def _connect(self) -> None:
        app_class = load_application_class(self.config.radio)
        self._lost = None
        self.states.clear()  # a new application has new cluster objects: subscribe afresh
        self._dirty.clear()
        self._drop_wakeups()
        try:
            self.app = await app_class.new(self.config.zigpy_config(), auto_form=True)
        except Exception as e:  # zigpy raises its own TransientConnectionError, OSError, ...
            raise TransientConnectionError(f"ZigBee radio {self.config.radio} failed to start: {e}") from e
        self.app.add_listener(self)
        for device in list(self.app.devices.values()):
            self._watch_device(device)
        for meter in self.config.virtual_devices:
            self._watch_device(self.app.attach(meter))

    async def _close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for task in self._setup_tasks:
            task.cancel()
        app, self.app = self.app, None
        if app is not None:
            with contextlib.suppress(Exception):
                await app.shutdown()

    async def _read(self) -> Reading:
        if self._lost is not None:
            raise TransientConnectionError(f"ZigBee radio connection lost: {self._lost}")
        try:
            async with asyncio.timeout(self.config.read_timeout_s):
                reading = await self._queue.get()
        except TimeoutError as e:
            self.stats.read_timeouts += 1
            raise TransientConnectionError(
                f"no ZigBee report for {self.config.read_timeout_s} s; restarting the radio") from e
        if reading is None:
            raise TransientConnectionError(f"ZigBee radio connection lost: {self._lost}")
        return reading

    def _drop_wakeups(self) -> None:
        """Remove the connection-lost sentinels (None) from the queue, keeping the readings."""
        kept = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                kept.append(item)
        for item in kept:
            self._queue.put_nowait(item)

    # -- zigpy listener callbacks ---------------------------------------------------------------
    def device_initialized(self, device) -> None:
        self._watch_device(device)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = exc or ConnectionError("radio disconnected")
        with contextlib.suppress(asyncio.QueueFull):  # wake a waiting reader
            self._queue.put_nowait(None)  # type: ignore[arg-type]

    # -- devices --------------------------------------------------------------------------------
    def meter_id_for(self, ieee: str) -> str | None:
        ieee = ieee.lower()
        if ieee in self.config.meters:
            return self.config.meters[ieee]
        return None if self.config.only_listed else ieee

    def _watch_device(self, device) -> None:
        ieee = str(device.ieee).lower()
        if self.meter_id_for(ieee) is None or ieee in self.states:
            return
        clusters = [cluster for ep_id, ep in device.endpoints.items() if ep_id != 0
                    for cid, cluster in ep.in_clusters.items() if cid in WATCHED_CLUSTERS]
        if not clusters:
            return
        self.states[ieee] = MeteringState()
        for cluster in clusters:
            self._unsubscribe.append(cluster.on_event("attribute_report", self._on_report))
        task = asyncio.get_running_loop().create_task(self._setup_device(ieee, clusters))
        self._setup_tasks.add(task)
        task.add_done_callback(self._setup_tasks.discard)

    async def _setup_device(self, ieee: str, clusters) -> None:
        """Read scaling attributes and configure reporting; failures are logged, never fatal."""
        status: dict[str, object] = {}
        for cluster in clusters:
            names = SCALING_ATTRIBUTES.get(cluster.cluster_id, ())
            try:
                async with asyncio.timeout(self.config.request_timeout_s):
                    ok, _failed = await cluster.read_attributes(list(names))
                for name, value in ok.items():
                    key = name if isinstance(name, str) else cluster.find_attribute(name).name
                    if is_invalid_zigpy_value(value):
                        self.stats.invalid_values += 1
                        continue  # not set: the default scaling (1/1) stays
                    self.states[ieee].update(key, float(value))
            except Exception as e:  # a sleepy or minimal device: keep defaults (1/1)
                LOGGER.info("%s: reading scaling attributes failed: %s", ieee, e)
            if self.config.configure_reporting:
                status[f"bind_{cluster.cluster_id:#06x}"] = await self._bind(cluster)
                status.update(await self._configure(cluster))
        self.configured[ieee] = status

    async def _bind(self, cluster) -> object:
        """Bind the cluster to the coordinator so that reports are sent to us (as ZHA does)."""
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                result = await cluster.bind()
            return result[0] if isinstance(result, list | tuple) and result else result
        except Exception as e:  # devices that report to the coordinator by default
            LOGGER.info("bind of cluster %#06x failed: %s", cluster.cluster_id, e)
            return f"failed: {e}"

    async def _configure(self, cluster) -> dict[str, object]:
        """Configure Reporting for the cluster's ``REPORTING`` attributes, a few per request (as ZHA
        does: fewer round trips, and a device that chokes on a long frame still gets the others).
        Returns attribute name -> ZCL status, or "failed: ..." where the request failed."""
        from zigpy.zcl import ReportingConfig

        names = list(REPORTING.get(cluster.cluster_id, {}).items())
        out: dict[str, object] = {}
        for i in range(0, len(names), _REPORTING_PER_REQUEST):
            chunk = dict(names[i:i + _REPORTING_PER_REQUEST])
            config = {cluster.find_attribute(name): ReportingConfig(
                self.config.report_min_interval_s, self.config.report_max_interval_s, change)
                for name, change in chunk.items()}
            try:
                async with asyncio.timeout(self.config.request_timeout_s):
                    result = await cluster.configure_reporting_multiple(config)
                out.update({attr.name: status for attr, status in result.items()})
            except Exception as e:  # the device does not allow it: it reports on its own schedule
                out.update({name: f"failed: {e}" for name in chunk})
        return out

    def _on_report(self, event) -> None:
        ieee = str(event.device_ieee).lower()
        state = self.states.get(ieee)
        if state is None or event.attribute_name is None or event.value is None:
            return
        raw = event.raw_value if event.raw_value is not None else event.value
        if is_invalid_zigpy_value(raw):
            state.invalidate(event.attribute_name)
            self.stats.invalid_values += 1
            if event.attribute_name in READ_ATTRIBUTES:  # a value the Reading would carry
                self._invalid.setdefault(ieee, set()).add(event.attribute_name)
        else:
            try:
                state.update(event.attribute_name, float(event.value))
            except (TypeError, ValueError):
                return
        self._dirty.add(ieee)
        if not self._flush_scheduled:  # one Reading per frame: flush after this frame's events
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        received_s = time.time()
        for ieee in sorted(self._dirty):
            reading = self._reading(ieee, received_s)
            if reading is None:
                continue
            if self._queue.full():  # consumer too slow: drop the oldest, never block zigpy
                self._queue.get_nowait()
            self._queue.put_nowait(reading)
        self._dirty.clear()
        self._invalid.clear()

    def _reading(self, ieee: str, received_s: float) -> Reading | None:
        values = self.states[ieee].values()
        invalid = sorted(self._invalid.get(ieee, ()))
        if values["power_w"] is None and values["import_wh"] is None:
            return None  # only scaling, voltage or invalid values so far (the latter counted)
        flags = ReadingFlag.CLOCK_FALLBACK | self.extra_flags
        extra: dict[str, float | str] = {"ieee": ieee}
        if invalid:
            flags |= ReadingFlag.INVALID_VALUE
            extra["invalid_attributes"] = ",".join(invalid)
        if values["power_w"] is None:
            values["power_w"] = self._power_from_counters(ieee, values, received_s)
            if values["power_w"] is not None:
                flags |= ReadingFlag.ESTIMATED
        self._last_counters[ieee] = (received_s, values["import_wh"], values["export_wh"])
        meter_id = self.meter_id_for(ieee) or ieee
        return Reading(meter_id=meter_id, ts_s=received_s, received_s=received_s,
                       source=self.source_name, extra=extra, flags=flags, **values)

    def _power_from_counters(self, ieee: str, values: dict, received_s: float) -> float | None:
        """Mean power since the previous report from the summation counters (a device that
        reports energy but no demand). None until two reports, or when a counter went backwards."""
        last = self._last_counters.get(ieee)
        if last is None or values["import_wh"] is None or last[1] is None:
            return None
        dt_s = received_s - last[0]
        d_import_wh = values["import_wh"] - last[1]
        d_export_wh = (values["export_wh"] or 0.0) - (last[2] or 0.0)
        if dt_s <= 0 or d_import_wh < 0 or d_export_wh < 0:
            return None
        return (d_import_wh - d_export_wh) * 3600.0 / dt_s
