"""Write P1 telegrams (the meter side): used by the virtual DSMR meter, tests and the benchmark.

Per-version layout is data (``DSMR_VERSIONS``): header, version line, whether the meter sends a
clock and a CRC, and how gas is written. Lines end in CRLF as on the wire; the CRC16/ARC covers
``/`` .. ``!`` inclusive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from firmware_bridge.dsmr.crc import crc16_arc


@dataclass(frozen=True)
class DsmrVersionSpec:
    header: str
    version_line: str | None  # e.g. "1-3:0.2.8(50)"
    has_clock: bool
    has_crc: bool
    gas_obis: str
    power_decimals: int  # kW digits after the point: 3 (1 W) for 4/5, 2 (10 W) for 2.2


DSMR_VERSIONS: dict[str, DsmrVersionSpec] = {
    "2.2": DsmrVersionSpec("/KMP5 ZABF001587315111", None, False, False, "0-1:24.3.0", 2),
    "4": DsmrVersionSpec("/KFM5KAIFA-METER", "1-3:0.2.8(42)", True, True, "0-1:24.2.1", 3),
    "5": DsmrVersionSpec("/ISk5\\2MT382-1000", "1-3:0.2.8(50)", True, True, "0-1:24.2.1", 3),
    "fluvius": DsmrVersionSpec("/FLU5\\253769484_A", "0-0:96.1.4(50217)", True, True, "0-1:24.2.3", 3),
    # encrypted on the wire (dsmr.cipher); these are the plaintext telegrams inside
    "smarty": DsmrVersionSpec("/Lux5\\100000000_D", "1-3:0.2.8(42)", True, True, "0-1:24.2.1", 3),
    "sagemcom-t210": DsmrVersionSpec("/EST5\\253710000_A", "1-3:0.2.8(50)", True, True, "0-1:24.2.1",
                                     3),
}


def format_timestamp(ts_s: float, standard_utc_offset_s: int = 3600, dst: bool | None = None) -> str:
    """UTC epoch -> ``YYMMDDhhmmssX`` in CET/CEST. ``dst=None`` applies the EU rule."""
    utc = dt.datetime.fromtimestamp(int(ts_s), tz=dt.UTC)
    if dst is None:
        dst = _eu_summer_time(utc)
    local = utc + dt.timedelta(seconds=standard_utc_offset_s + (3600 if dst else 0))
    return local.strftime("%y%m%d%H%M%S") + ("S" if dst else "W")


def _eu_summer_time(utc: dt.datetime) -> bool:
    """EU rule: summer time from the last Sunday of March 01:00 UTC to the last Sunday of October."""
    def last_sunday(month: int) -> dt.datetime:
        d = dt.datetime(utc.year, month, 31, 1, tzinfo=dt.UTC)
        return d - dt.timedelta(days=(d.weekday() + 1) % 7)

    return last_sunday(3) <= utc < last_sunday(10)


def with_crc(body: str) -> bytes:
    """Close a telegram text (``/`` .. last line, LF or CRLF) with ``!`` and its CRC16/ARC."""
    text = body.replace("\r\n", "\n").rstrip("\n").replace("\n", "\r\n") + "\r\n!"
    data = text.encode("ascii")
    return data + f"{crc16_arc(data):04X}\r\n".encode("ascii")


def without_crc(body: str) -> bytes:
    text = body.replace("\r\n", "\n").rstrip("\n").replace("\n", "\r\n") + "\r\n!\r\n"
    return text.encode("ascii")


def _kw(value_w: float, decimals: int) -> str:
    width = 3 + decimals if decimals else 2
    return f"{max(value_w, 0.0) / 1000.0:0{width}.{decimals}f}*kW"


def _kwh(value_wh: float) -> str:
    return f"{max(value_wh, 0.0) / 1000.0:010.3f}*kWh"


def encode_telegram(
    values: Mapping[str, float],
    *,
    ts_s: float,
    version: str = "5",
    equipment_id: str = "E0012345678901234",
    tariff: int = 2,
    gas_m3: float | None = None,
    phases: int = 1,
) -> bytes:
    """A telegram for ``values`` (keys power_w, import_wh, export_wh, voltage_v, current_a).

    Net ``power_w`` is split into delivered (>0) and returned (<0); energy is booked on ``tariff``
    (the other tariff register keeps 0 so that the sum equals the counter).
    """
    spec = DSMR_VERSIONS.get(version)
    if spec is None:
        raise ValueError(f"unknown DSMR version {version!r}; known: {sorted(DSMR_VERSIONS)}")
    power_w = float(values.get("power_w", 0.0))
    lines = [spec.header, ""]
    if spec.version_line:
        lines.append(spec.version_line)
    if spec.has_clock:
        lines.append(f"0-0:1.0.0({format_timestamp(ts_s)})")
    lines.append(f"0-0:96.1.1({equipment_id.encode().hex().upper()})")
    t_import = [0.0, 0.0]
    t_export = [0.0, 0.0]
    t_import[tariff - 1] = float(values.get("import_wh", 0.0))
    t_export[tariff - 1] = float(values.get("export_wh", 0.0))
    lines += [f"1-0:1.8.1({_kwh(t_import[0])})", f"1-0:1.8.2({_kwh(t_import[1])})",
              f"1-0:2.8.1({_kwh(t_export[0])})", f"1-0:2.8.2({_kwh(t_export[1])})",
              f"0-0:96.14.0({tariff:04d})",
              f"1-0:1.7.0({_kw(power_w, spec.power_decimals)})",
              f"1-0:2.7.0({_kw(-power_w, spec.power_decimals)})"]
    if version != "2.2":
        lines += _phase_lines(values, power_w, phases)
    lines += _gas_lines(spec, gas_m3, ts_s)
    body = "\n".join(lines)
    return with_crc(body) if spec.has_crc else without_crc(body)


def _phase_lines(values: Mapping[str, float], power_w: float, phases: int) -> list[str]:
    voltage_v = float(values.get("voltage_v", 230.0))
    current_a = float(values.get("current_a", abs(power_w) / max(voltage_v, 1.0)))
    share_w = power_w / phases
    lines = []
    for i, (u, i_code, pp, pn) in enumerate(
        (("32", "31", "21", "22"), ("52", "51", "41", "42"), ("72", "71", "61", "62"))[:phases]
    ):
        amps = current_a if i == 0 else abs(share_w) / max(voltage_v, 1.0)
        lines += [f"1-0:{u}.7.0({voltage_v:05.1f}*V)", f"1-0:{i_code}.7.0({amps:03.0f}*A)",
                  f"1-0:{pp}.7.0({_kw(share_w, 3)})", f"1-0:{pn}.7.0({_kw(-share_w, 3)})"]
    return lines


def _gas_lines(spec: DsmrVersionSpec, gas_m3: float | None, ts_s: float) -> list[str]:
    if gas_m3 is None:
        return []
    hourly_ts_s = ts_s - ts_s % 3600
    if spec.gas_obis.endswith("24.3.0"):  # DSMR 2.2: value on its own line, no S/W suffix
        stamp = format_timestamp(hourly_ts_s)[:-1]
        return ["0-1:24.1.0(3)", f"{spec.gas_obis}({stamp})(00)(60)(1)(0-1:24.2.1)(m3)",
                f"({gas_m3:09.3f})"]
    stamp = format_timestamp(hourly_ts_s)
    return ["0-1:24.1.0(003)", f"{spec.gas_obis}({stamp})({gas_m3:09.3f}*m3)"]
