"""Payloads, Home Assistant discovery, resampling and sd_notify (pure units, real sockets)."""

from __future__ import annotations

import json
import socket

import numpy as np

from edge.agent.messages import Topics, iso_utc
from edge.agent.notify import Notifier
from edge.agent.resample import Resampler
from firmware_bridge.reading import Reading

T = Topics("unimeter", "gw1")


def test_reading_payload_has_units_utc_and_seq():
    m = T.reading_message(Reading("p1", 1.8e9, 1.8e9 + 0.2, 512.25, import_wh=12345.0), 7)
    body = json.loads(m.payload)
    assert m.topic == "unimeter/gw1/p1/reading" and m.retain and m.qos == 1
    assert body["seq"] == 7 and body["power_w"] == 512.25 and body["energy_kwh"] == 12.345
    assert body["ts"] == iso_utc(1.8e9) and body["ts"].endswith("Z")
    nan = json.loads(T.reading_message(Reading("p1", 1.8e9, 1.8e9, float("nan")), 8).payload)
    assert nan["power_w"] is None  # valid JSON, never NaN
    assert "energy_kwh" not in nan and "import_kwh" not in nan  # no counter, no counter value


def test_reading_values_flatten_tariffs_phases_and_mbus_with_units_in_keys():
    from edge.agent.messages import reading_values

    extra = {"import_t1_wh": 1000.0, "import_t2_wh": 2500.0, "export_t1_wh": 10.0, "tariff": "0002",
             "power_l2_w": -120.0, "voltage_l2_v": 229.5, "gas_m3": 1234.567, "dsmr_version": "5"}
    v = reading_values(Reading("p1", 1.8e9, 1.8e9, 300.0, import_wh=3500.0, export_wh=10.0,
                               extra=extra))
    assert v["import_kwh"] == v["energy_kwh"] == 3.5 and v["export_kwh"] == 0.01
    assert v["import_t1_kwh"] == 1.0 and v["import_t2_kwh"] == 2.5 and v["export_t1_kwh"] == 0.01
    assert "import_t1_wh" not in v  # one unit per value: kWh
    assert v["tariff"] == 2 and v["power_l2_w"] == -120.0 and v["gas_m3"] == 1234.567
    assert "dsmr_version" not in v  # strings are protocol details, not values


def test_readings_of_one_commit_share_messages_up_to_the_limit():
    from edge.agent.store import StoredReading

    group = [StoredReading(10 + i, Reading("p1", 1.8e9 + i, 1.8e9 + i + 0.1, 100.0 + i)) for i in range(5)]
    single = T.reading_messages(group)
    assert [json.loads(m.payload)["seq"] for m in single] == [10, 11, 12, 13, 14]
    batched = T.reading_messages(group, max_per_message=3)
    bodies = [json.loads(m.payload) for m in batched]
    assert [(b["seq_first"], b["seq"]) for b in bodies] == [(10, 12), (13, 14)]
    assert bodies[0]["samples"]["power_w"] == [100.0, 101.0, 102.0]
    assert bodies[0]["power_w"] == 102.0  # the latest reading is the HA state
    assert batched[0].created_s == 1.8e9 + 0.1  # latency counts from the oldest reading


def test_resampler_means_closed_bins_and_marks_missing():
    r = Resampler(10.0, keep_bins=8)
    for ts, p in [(0, 1.0), (5, 3.0), (12, 10.0), (35, 7.0), (41, 0.0)]:
        r.add(ts, p)
    start, w, counts = r.window(4)
    assert start == 0.0
    np.testing.assert_allclose(w[[0, 1, 3]], [2.0, 10.0, 7.0])
    assert np.isnan(w[2]) and counts.tolist() == [2, 1, 0, 1]
    for ts in range(50, 200, 10):
        r.add(ts, 1.0)
    assert min(r._bins) > r.newest_bin - 8  # old bins evicted


def test_notifier_sends_datagrams_to_notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"})
    assert n.watchdog_interval_s == 10.0
    assert n.ready("3 meters") and n.watchdog()
    assert server.recv(100) == b"READY=1\nSTATUS=3 meters"
    assert server.recv(100) == b"WATCHDOG=1"
    assert not Notifier({}).enabled and not Notifier({}).watchdog()
    server.close()


def test_fill_gaps_interpolates_inside_and_holds_edges():
    from edge.agent.quality import fill_gaps

    w = np.array([np.nan, 1.0, np.nan, np.nan, 4.0, np.nan], np.float32)
    np.testing.assert_allclose(fill_gaps(w), [1.0, 1.0, 2.0, 3.0, 4.0, 4.0])
    assert np.isnan(fill_gaps(np.full(4, np.nan, np.float32))).all()  # nothing to go on: stays missing


def test_reading_values_from_the_typed_groups():
    from edge.agent.messages import reading_values
    from firmware_bridge.reading import MbusChannel, PhaseValues

    r = Reading("p1", 1.8e9, 1.8e9, 300.0, import_wh=3500.0,
                phases=(PhaseValues(100.0, 230.0, 0.5), PhaseValues(200.0, 231.0, 1.0), PhaseValues()),
                import_tariff_wh=(1000.0, None), export_tariff_wh=(0.0, 5.0), tariff=1,
                reactive_import_varh=2000.0, power_failures=4, long_power_failures=1,
                mbus=(MbusChannel(1, "gas", 12.5, "m3", 1.8e9 - 300), MbusChannel(2, "heat", 3.25, "GJ"),
                      MbusChannel(3, "water", 7.0, "m3"), MbusChannel(4, "water", 8.0, "m3")))
    v = reading_values(r)
    assert (v["power_l2_w"], v["voltage_l1_v"], v["current_l2_a"]) == (200.0, 230.0, 1.0)
    assert "power_l3_w" not in v  # a phase without values has no keys
    assert v["import_t1_kwh"] == 1.0 and "import_t2_kwh" not in v and v["export_t2_kwh"] == 0.005
    assert v["tariff"] == 1 and v["reactive_import_kvarh"] == 2.0 and v["power_failures"] == 4
    assert v["gas_m3"] == 12.5 and v["gas_ts_s"] == 1.8e9 - 300 and v["heat_gj"] == 3.25
    assert v["water_3_m3"] == 7.0 and v["water_4_m3"] == 8.0  # two water meters: by channel
