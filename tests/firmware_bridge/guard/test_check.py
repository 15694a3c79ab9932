"""The reading guard: counters that never decrease except on a flagged reset, plausibility limits,
the clock policy; and that nothing it withholds is lost."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.errors import ConfigError
from firmware_bridge.guard import (
    KIND_LIMITS,
    MODEL_EXCLUDED,
    WITHHELD_SUFFIX,
    MeterLimits,
    ReadingGuard,
    limits_for,
)
from firmware_bridge.reading import Reading, ReadingFlag

T0 = 1_700_000_000.0


def _reading(i: int, *, ts_s: float | None = None, dt_s: float = 10.0, **values) -> Reading:
    received_s = T0 + i * dt_s
    return Reading("m", received_s if ts_s is None else ts_s, received_s,
                   values.pop("power_w", 500.0), **values)


def _guard(**limits) -> ReadingGuard:
    return ReadingGuard("m", MeterLimits(**limits), now_fn=lambda: T0)


def _run_counter(values_wh, guard=None, dt_s: float = 10.0):
    guard = guard or _guard()
    return guard, [guard.check(_reading(i, dt_s=dt_s, import_wh=v)) for i, v in enumerate(values_wh)]


def test_a_one_poll_jump_that_comes_back_is_a_withheld_glitch():
    guard, out = _run_counter([180_100.0, 180_200.0, 5_000_000.0, 180_400.0])
    assert [r.import_wh for r in out] == [180_100.0, 180_200.0, None, 180_400.0]
    assert ReadingFlag.COUNTER_GLITCH in out[2].flags
    assert out[2].extra["import_wh" + WITHHELD_SUFFIX] == 5_000_000.0  # withheld, not lost
    assert out[2].power_w == 500.0  # the rest of the reading is not delayed or touched
    assert guard.stats.counter_glitches == 1 and guard.stats.counter_resets == 0
    assert not any(ReadingFlag.COUNTER_GLITCH in r.flags for r in (out[0], out[1], out[3]))


def test_a_drop_to_zero_for_two_polls_is_a_glitch_too():
    _, out = _run_counter([50_000.0, 0.0, 0.0, 50_010.0, 50_020.0])
    assert [r.import_wh for r in out] == [50_000.0, None, None, 50_010.0, 50_020.0]


def test_a_reset_is_confirmed_by_consecutive_readings_and_flagged():
    guard, out = _run_counter([7_000_000.0, 7_000_050.0, 10.0, 20.0, 30.0, 40.0])
    assert [r.import_wh for r in out] == [7_000_000.0, 7_000_050.0, None, None, 30.0, 40.0]
    assert ReadingFlag.COUNTER_RESET in out[4].flags
    assert guard.stats.counter_resets == 1 and guard.stats.counter_glitches == 0
    assert [r.extra.get("import_wh_withheld") for r in out[2:4]] == [10.0, 20.0]


def test_a_meter_swap_upwards_is_a_reset_after_confirmation():
    guard, out = _run_counter([1_000.0, 1_010.0, 9_000_000.0, 9_000_010.0, 9_000_020.0],
                              guard=_guard(counter_confirm_readings=2))
    assert [r.import_wh for r in out] == [1_000.0, 1_010.0, None, 9_000_010.0, 9_000_020.0]
    assert ReadingFlag.COUNTER_RESET in out[3].flags


def test_a_small_decrease_stalls_the_published_counter():
    _, out = _run_counter([10_000.0, 10_300.0, 10_100.0, 10_200.0, 10_400.0])
    assert [r.import_wh for r in out] == [10_000.0, 10_300.0, None, None, 10_400.0]
    assert all(ReadingFlag.COUNTER_RESET not in r.flags for r in out)


def test_the_guard_continues_from_a_seeded_counter():
    guard = _guard()
    guard.seed_counter("import_wh", 180_200.0, T0 - 10)
    _, out = _run_counter([5_000_000.0, 180_400.0], guard=guard)
    assert [r.import_wh for r in out] == [None, 180_400.0]


events = st.lists(st.tuples(st.sampled_from(["use", "use", "use", "glitch", "reset"]),
                            st.floats(0.0, 2000.0), st.floats(0.0, 1e7)), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(events)
def test_published_counters_never_decrease_except_on_a_flagged_reset(steps):
    guard = _guard(counter_confirm_readings=3)
    true_wh, inputs = 1_000_000.0, []
    for kind, use_wh, other_wh in steps:
        if kind == "reset":
            true_wh = other_wh / 100.0
        true_wh += use_wh
        inputs.append(other_wh if kind == "glitch" else true_wh)
    _, out = _run_counter(inputs, guard=guard)
    last = None
    for given_wh, r in zip(inputs, out, strict=True):
        # nothing is lost: a value is either published or kept with the reading
        assert r.import_wh == given_wh or r.extra.get("import_wh" + WITHHELD_SUFFIX) == given_wh
        if r.import_wh is None:
            continue
        if last is not None and r.import_wh < last:
            assert ReadingFlag.COUNTER_RESET in r.flags
        last = r.import_wh


def test_negative_power_on_an_import_only_meter_is_withheld():
    guard = _guard(export=False)
    r = guard.check(_reading(0, power_w=-5000.0))
    assert r.power_w is None and ReadingFlag.IMPLAUSIBLE in r.flags
    assert r.extra["power_w_withheld"] == -5000.0
    assert guard.stats.implausible_by_field == {"power_w": 1}
    assert guard.check(_reading(1, power_w=-20.0)).power_w == -20.0  # standby noise passes


def test_export_is_allowed_where_the_meter_has_an_export_counter():
    auto = _guard()  # export=None: decided from the meter
    assert auto.check(_reading(0, power_w=-5000.0)).power_w is None
    assert auto.check(_reading(1, power_w=-5000.0, export_wh=10.0)).power_w == -5000.0
    assert _guard(export=True).check(_reading(0, power_w=-5000.0)).power_w == -5000.0


@pytest.mark.parametrize("field_name,value", [("power_w", 1e308), ("power_w", 70_000.0),
                                               ("voltage_v", 1e308), ("voltage_v", -3.0),
                                               ("current_a", 1e6), ("reactive_var", -1e308),
                                               ("import_wh", 2.8e14), ("export_wh", -1.0)])
def test_values_beyond_the_connection_are_withheld(field_name, value):
    guard = _guard(phases=3, main_fuse_a=25.0)  # 3 x 230 V x 25 A x 1.5 = 25.9 kW
    r = guard.check(_reading(0, **{field_name: value}))
    assert getattr(r, field_name) is None and ReadingFlag.IMPLAUSIBLE in r.flags
    assert r.extra[field_name + WITHHELD_SUFFIX] == value
    assert guard.stats.implausible == 1


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_no_value(value):
    guard = _guard()
    r = guard.check(_reading(0, power_w=value, import_wh=value))
    assert r.power_w is None and r.import_wh is None and ReadingFlag.INVALID_VALUE in r.flags
    assert guard.stats.invalid_values == 2


def test_max_power_follows_the_main_fuse():
    assert MeterLimits(phases=1, main_fuse_a=25.0, margin=1.5).power_limit_w == pytest.approx(8625.0)
    assert MeterLimits(phases=3, main_fuse_a=35.0, margin=1.0).power_limit_w == pytest.approx(24150.0)
    assert MeterLimits(max_power_w=5000.0).power_limit_w == 5000.0
    guard = _guard(phases=1, main_fuse_a=25.0)
    assert guard.check(_reading(0, power_w=8000.0)).power_w == 8000.0
    assert guard.check(_reading(1, power_w=9000.0)).power_w is None


def test_a_reading_dated_a_day_ahead_moves_to_the_receive_time_and_is_flagged():
    guard = _guard()
    r = guard.check(_reading(0, ts_s=T0 + 86_400.0))
    assert ReadingFlag.CLOCK_SKEW in r.flags and r.flags & MODEL_EXCLUDED
    assert r.ts_s == T0 and r.extra["meter_ts_s"] == T0 + 86_400.0
    assert guard.stats.clock_skewed == 1 and guard.stats.clock_offset_s == pytest.approx(86_400.0)
    assert guard.check(_reading(0, ts_s=T0 - 7200.0)).flags & ReadingFlag.CLOCK_SKEW  # far behind
    ok = guard.check(_reading(0, ts_s=T0 + 2.5))
    assert not ok.flags & ReadingFlag.CLOCK_SKEW and guard.stats.clock_offset_s == pytest.approx(2.5)


def test_a_source_that_already_fell_back_keeps_its_reading_and_reports_the_offset():
    guard = _guard()
    r = Reading("m", T0, T0, 100.0, flags=ReadingFlag.CLOCK_FALLBACK, extra={"meter_ts_s": T0 - 900.0})
    assert guard.check(r) is r
    assert guard.stats.clock_offset_s == pytest.approx(-900.0)


def test_a_clean_reading_passes_unchanged():
    guard = _guard()
    r = _reading(0, import_wh=100.0, export_wh=5.0, voltage_v=231.0, current_a=2.0)
    assert guard.check(r) is r


def test_limits_per_meter_kind_and_overrides():
    assert limits_for("modbus", "sdm120").phases == 1
    assert limits_for("virtual-modbus", "sdm630").main_fuse_a == KIND_LIMITS["sdm630"]["main_fuse_a"]
    assert limits_for("sim-modbus", "sdm630") == limits_for("virtual-modbus", "sdm630")  # earlier name
    assert limits_for("sim_dsmr").phases == 3
    assert limits_for("dsmr", overrides={"main_fuse_a": 25, "phases": 1}).power_limit_w == pytest.approx(8625.0)
    with pytest.raises(ConfigError, match="limits.fuse_a: unknown key"):
        limits_for("dsmr", overrides={"fuse_a": 25})


@pytest.mark.parametrize("overrides,message", [
    ({"phases": 4}, "limits.phases: must be 1, 2 or 3"),
    ({"main_fuse_a": -25}, "limits.main_fuse_a: must be a number > 0"),
    ({"margin": 0.5}, "limits.margin: must be a number >= 1"),
    ({"export": "yes"}, "limits.export: must be true or false"),
    ({"counter_confirm_readings": 0}, "limits.counter_confirm_readings: must be an integer in 1..100"),
    ({"clock_max_ahead_s": 0}, "limits.clock_max_ahead_s: must be a number > 0"),
])
def test_bad_limits_are_refused_with_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        limits_for("dsmr", overrides=overrides)


def test_tariff_registers_and_reactive_energy_are_counters_too():
    guard = _guard()
    values = [(1000.0, 500.0), (1010.0, 505.0), (9e8, 510.0), (1020.0, 515.0)]
    out = [guard.check(_reading(i, import_tariff_wh=(t1, 20_000.0), reactive_import_varh=q))
           for i, (t1, q) in enumerate(values)]
    assert [r.import_tariff_wh[0] for r in out] == [1000.0, 1010.0, None, 1020.0]
    assert [r.import_tariff_wh[1] for r in out] == [20_000.0] * 4  # the other register untouched
    assert out[2].extra["import_tariff_1_wh_withheld"] == 9e8
    assert isinstance(out[2].import_tariff_wh, tuple)
    assert [r.reactive_import_varh for r in out] == [500.0, 505.0, 510.0, 515.0]
    r = guard.check(_reading(9, reactive_export_varh=-5.0))
    assert r.reactive_export_varh is None and ReadingFlag.IMPLAUSIBLE in r.flags


def test_per_phase_values_are_checked_against_one_phase():
    from firmware_bridge.reading import PhaseValues

    guard = _guard(phases=3, main_fuse_a=25.0, export=False)  # one phase: 230 V x 25 A x 1.5 = 8.6 kW
    phases = (PhaseValues(power_w=900.0, voltage_v=231.0), PhaseValues(power_w=-5000.0, voltage_v=1e308),
              PhaseValues(power_w=9000.0, voltage_v=229.0, current_a=3.0))
    r = guard.check(_reading(0, phases=phases))
    assert r.phases[0] == phases[0]
    assert r.phases[1].power_w is None and r.phases[1].voltage_v is None
    assert r.phases[2].power_w is None and r.phases[2].voltage_v == 229.0 and r.phases[2].current_a == 3.0
    assert r.extra["power_l2_w_withheld"] == -5000.0 and r.extra["voltage_l2_v_withheld"] == 1e308
    assert r.extra["power_l3_w_withheld"] == 9000.0
    assert guard.stats.implausible_by_field == {"power_l2_w": 1, "voltage_l2_v": 1, "power_l3_w": 1}


def test_an_mbus_gas_counter_never_decreases_and_a_withheld_channel_leaves_the_reading():
    from firmware_bridge.reading import MbusChannel

    guard = _guard()

    def gas(i: int, m3: float) -> Reading:
        ch = MbusChannel(channel=1, device_type="gas", value=m3, unit="m3", capture_ts_s=T0 + 300 * i)
        return guard.check(_reading(i, dt_s=300.0, mbus=(ch,), extra={"gas_m3": m3, "gas_ts_s": T0}))

    out = [gas(i, v) for i, v in enumerate([1200.000, 1200.250, 99999.0, 1200.610, 1200.9])]
    assert [r.mbus[0].value if r.mbus else None for r in out] == [1200.0, 1200.25, None, 1200.61, 1200.9]
    assert out[2].extra["mbus_1_m3_withheld"] == 99999.0 and ReadingFlag.COUNTER_GLITCH in out[2].flags
    assert "gas_m3" not in out[2].extra and out[3].extra["gas_m3"] == 1200.61  # the mirror goes too
    assert guard.stats.counter_glitches == 1


def _gas_telegrams(guard: ReadingGuard, captures: list[float], per_capture: int = 30) -> list[Reading]:
    """A DSMR 5 meter: a telegram every 10 s, the gas capture (every 5 min) repeated in each."""
    from firmware_bridge.reading import MbusChannel

    out = []
    for k, m3 in enumerate(captures):
        for j in range(per_capture):
            ch = MbusChannel(channel=1, device_type="gas", value=m3, unit="m3", capture_ts_s=T0 + 300 * k)
            out.append(guard.check(_reading(k * per_capture + j, mbus=(ch,))))
    return out


def test_one_bad_gas_capture_repeated_in_every_telegram_stays_a_glitch():
    guard = _guard()
    out = _gas_telegrams(guard, [3870.412, 0.0, 3870.530])
    published = [r.mbus[0].value if r.mbus else None for r in out]
    assert published == [3870.412] * 30 + [None] * 30 + [3870.530] * 30
    assert not any(ReadingFlag.COUNTER_RESET in r.flags for r in out)
    assert all(r.extra["mbus_1_m3_withheld"] == 0.0 for r in out[30:60])  # withheld, not lost
    assert guard.stats.counter_glitches == 1 and guard.stats.counter_resets == 0


def test_a_new_gas_meter_is_a_reset_after_three_captures():
    guard = _guard()
    out = _gas_telegrams(guard, [3870.412, 0.0, 0.01, 0.02, 0.03], per_capture=3)
    published = [r.mbus[0].value if r.mbus else None for r in out]
    assert published == [3870.412] * 3 + [None] * 6 + [0.02] * 3 + [0.03] * 3
    assert ReadingFlag.COUNTER_RESET in out[9].flags and guard.stats.counter_resets == 1


def test_power_failure_counts_are_counters():
    guard = _guard()
    out = [guard.check(_reading(i, power_failures=n)) for i, n in enumerate([4, 4, 5, 3, 5])]
    assert [r.power_failures for r in out] == [4, 4, 5, None, 5]  # never down without a reset
