"""The store's tables and how a reading maps onto a row of ``readings``.

Every field of :class:`~firmware_bridge.reading.Reading` is kept: the scalar ones in their own
columns (``power_w``, ``import_wh``, ...; ``extra`` as JSON), the typed groups (per-phase values,
tariff registers, reactive energy, the current tariff, power failures and their log, M-Bus
channels, warnings) as one JSON object in ``detail`` (``Reading.to_dict`` names; NULL when a
reading has none). ``SCHEMA_VERSION`` 3 added ``detail``; 4 added the anomaly score tables
(``ANOMALY_SCORES_SCHEMA``: each meter's daily maximum window score and its refitted threshold,
``edge.agent.anomaly_scores``); ``edge.agent.store`` migrates older stores when they open.
"""

from __future__ import annotations

import json

from firmware_bridge.reading import Reading, ReadingFlag

SCHEMA_VERSION = 4
SCHEMA = """
CREATE TABLE IF NOT EXISTS meters (
    meter_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_ts_s REAL,
    last_received_s REAL
);
CREATE TABLE IF NOT EXISTS readings (
    meter_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts_s REAL NOT NULL,
    received_s REAL NOT NULL,
    power_w REAL, reactive_var REAL, import_wh REAL, export_wh REAL,
    voltage_v REAL, current_a REAL,
    source TEXT NOT NULL DEFAULT '',
    flags INTEGER NOT NULL DEFAULT 0,
    extra TEXT,
    detail TEXT,  -- JSON of the Reading's typed groups (phases, tariffs, M-Bus, ...); NULL if none
    PRIMARY KEY (meter_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_ts ON readings (meter_id, ts_s);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created_s REAL NOT NULL,
    held_rc INTEGER  -- NULL: to send; else the broker's refusal reason code (held)
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# schema 4: created with a new store, or by the migration (in its transaction)
ANOMALY_SCORES_SCHEMA = (
    # the highest window score (logit) of each meter's UTC day under one anomaly model
    """CREATE TABLE IF NOT EXISTS anomaly_day_max (
        meter_id TEXT NOT NULL,
        day INTEGER NOT NULL,  -- UTC day number: floor(window end ts_s / 86400)
        max_logit REAL NOT NULL,
        windows INTEGER NOT NULL,  -- window scores folded into max_logit
        model_id TEXT NOT NULL,  -- the anomaly model that scored them (its graphs' sha256)
        PRIMARY KEY (meter_id, day)
    ) WITHOUT ROWID""",
    # each meter's threshold refitted from those days (edge.calibration.ThresholdCalibration as JSON)
    """CREATE TABLE IF NOT EXISTS anomaly_threshold (
        meter_id TEXT PRIMARY KEY,
        model_id TEXT NOT NULL,
        fitted_through_day INTEGER NOT NULL,  -- fitted on the complete days before this UTC day
        fitted_s REAL NOT NULL,
        calibration TEXT  -- NULL: too few days, the bundle's threshold applies
    )""",
)

READING_COLUMNS = ("power_w", "reactive_var", "import_wh", "export_wh", "voltage_v", "current_a")
# Reading fields kept in the ``detail`` column (JSON, as Reading.to_dict writes them)
DETAIL_FIELDS = ("phases", "import_tariff_wh", "export_tariff_wh", "reactive_import_varh",
                  "reactive_export_varh", "tariff", "power_failures", "long_power_failures",
                  "power_failure_log", "mbus", "warnings")


def _detail_json(r: Reading) -> str | None:
    """The Reading's typed groups as JSON for the ``detail`` column; None when it has none (most
    meters: the fast path costs one attribute test per field)."""
    if all(getattr(r, name) in (None, ()) for name in DETAIL_FIELDS):
        return None
    d = r.to_dict()
    return json.dumps({k: d[k] for k in DETAIL_FIELDS if d[k] not in (None, [])}, separators=(",", ":"))


def reading_row(r: Reading, seq: int) -> tuple:
    """The ``readings`` row of ``r`` stored as number ``seq`` of its meter (columns in table order)."""
    extra = json.dumps(dict(r.extra), separators=(",", ":")) if r.extra else None
    return (r.meter_id, seq, r.ts_s, r.received_s, r.power_w, r.reactive_var, r.import_wh,
            r.export_wh, r.voltage_v, r.current_a, r.source, int(r.flags), extra, _detail_json(r))


# the columns reading_from_row takes, in this order (after meter_id and seq)
READING_SELECT = ("ts_s, received_s, power_w, reactive_var, import_wh, export_wh, voltage_v, current_a, "
                  "source, flags, extra, detail")


def reading_from_row(meter_id: str, row: tuple) -> Reading:
    """The Reading of a ``readings`` row (columns as ``READING_SELECT``), typed groups included."""
    ts_s, rx_s, *vals, source, flags, extra, detail = row
    if detail:  # typed groups (phases, tariffs, M-Bus, ...): rebuilt as Reading.from_dict does
        return Reading.from_dict({
            "meter_id": meter_id, "ts_s": ts_s, "received_s": rx_s,
            **dict(zip(READING_COLUMNS, vals, strict=True)), "source": source, "flags": flags,
            "extra": json.loads(extra) if extra else {}, **json.loads(detail)})
    return Reading(meter_id, ts_s, rx_s, **dict(zip(READING_COLUMNS, vals, strict=True)),
                   source=source, flags=ReadingFlag(flags), extra=json.loads(extra) if extra else {})
