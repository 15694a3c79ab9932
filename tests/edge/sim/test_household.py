"""Statistical and exactness tests of the household simulator (small fleets, few days)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge.sim import (
    ALL_APPLIANCES,
    HouseholdConfig,
    SimulationError,
    appliance_names,
    parse_resolution,
    simulate_fleet,
    simulate_household,
)
from edge.sim.household import fleet_member


@pytest.fixture(scope="module")
def fleet_profiles():
    """12 households x 28 winter days, as daily 30-min consumption profiles."""
    out = []
    for tr in simulate_fleet(12, 28, "30min", seed=11, start="2024-01-08"):
        if "pv" in tr.appliances:  # the consumption pattern, not the PV export
            tr.power_w = tr.power_w - tr.appliances["pv"].power_w
        out.append(tr.to_profiles())
    return out


@pytest.fixture(scope="module")
def heated():
    cfg = HouseholdConfig(heating="resistive", heating_power_w=6000, heat_loss_w_per_k=180)
    return simulate_household(cfg, 120, "30min", seed=5, start="2024-01-01")


@pytest.fixture(scope="module")
def minute_trace():
    cfg = HouseholdConfig(pv_kwp=4.0, ev_charger_w=7400, heating="heat_pump", heating_power_w=2500,
                          appliances={**HouseholdConfig().appliances, "freezer": 120.0},
                          initial_import_wh=12_345.0, initial_export_wh=678.0)
    return simulate_household(cfg, 14, "1min", seed=3, start="2024-04-01")


def test_night_minimum_and_morning_evening_peaks(fleet_profiles):
    mean = np.mean([p.load_w.mean(axis=0) for p in fleet_profiles], axis=0)  # [48]
    night = mean[2 * 2 : 2 * 5].mean()  # 02:00-05:00
    morning = mean[2 * 6 : 2 * 9].max()  # 06:00-09:00
    midday = mean[2 * 10 : 2 * 15].mean()
    evening = mean[2 * 17 : 2 * 22].max()  # 17:00-22:00
    assert mean.argmin() in range(0, 2 * 6), "daily minimum must fall in the night"
    assert morning > 1.4 * night and morning > midday
    assert evening > 2.0 * night and evening > morning
    assert 2 * 17 <= mean.argmax() < 2 * 22


def test_weekday_weekend_difference():
    cfg = HouseholdConfig(archetype="worker", vacation_days=0)
    profiles = [simulate_household(dataclasses.replace(cfg, household_id=f"w{s}"), 28, "30min", seed=s,
                                   start="2024-02-05").to_profiles() for s in range(6)]
    load = np.concatenate([p.load_w for p in profiles])
    weekend = np.concatenate([p.weekday >= 5 for p in profiles])
    midday = slice(2 * 10, 2 * 16)
    wd, we = load[~weekend][:, midday].mean(), load[weekend][:, midday].mean()
    assert we > 1.3 * wd, f"weekend midday {we:.0f} W should clearly exceed weekday {wd:.0f} W"
    # the weekday morning peak comes earlier than the weekend one
    assert load[~weekend].mean(0)[10:22].argmax() < load[weekend].mean(0)[10:22].argmax()


def test_heating_correlates_with_cold(heated):
    prof = heated.to_profiles()
    daily_temp = prof.temperature_c.mean(axis=1)
    heat = heated.appliances["heating"].power_w.reshape(-1, 48).mean(axis=1)
    r = np.corrcoef(daily_temp, heat)[0, 1]
    assert r < -0.8, f"heating vs temperature correlation {r:.2f}"
    assert heat.max() > 3 * max(heat.min(), 1.0)


def test_fridge_freezer_duty_cycles_plausible(minute_trace):
    for name in ("fridge", "freezer"):
        on = minute_trace.appliances[name].on
        assert 0.2 < on.mean() < 0.6, f"{name} duty {on.mean():.2f}"
        starts = np.flatnonzero(on[1:] & ~on[:-1])
        cycles_per_day = len(starts) / 14
        assert 15 < cycles_per_day < 60, f"{name} cycles/day {cycles_per_day:.1f}"


def test_counters_integrate_true_power(minute_trace):
    tr = minute_trace
    true = tr.true_power_w()
    dt_h = tr.resolution_s / 3600
    net_wh = np.diff(np.concatenate([[12_345.0 - 678.0], tr.import_wh - tr.export_wh]))
    np.testing.assert_allclose(net_wh, true * dt_h, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(tr.import_wh) >= -1e-9) and np.all(np.diff(tr.export_wh) >= -1e-9)
    assert tr.export_wh[-1] - tr.export_wh[0] > 1000, "4 kWp of PV in April must export"
    # the reported power is the true power plus bounded meter noise, quantised
    assert np.all(tr.power_w == np.round(tr.power_w))
    assert np.abs(tr.power_w - true).mean() < 10.0


def test_counters_exact_at_30min():
    tr = simulate_household(HouseholdConfig(), 3, "30min", seed=1)
    inc = np.diff(np.concatenate([[0.0], tr.import_wh]))
    np.testing.assert_allclose(inc, tr.true_power_w() * 0.5, rtol=1e-5, atol=1e-6)


def test_reactive_power_signs(minute_trace):
    a = minute_trace.appliances
    on = a["fridge"].on & (a["fridge"].power_w > 50)
    assert np.all(a["fridge"].reactive_var[on] > 0), "compressor is inductive"
    lit = a["lighting"].power_w > 0
    assert np.all(a["lighting"].reactive_var[lit] < 0), "LED drivers are capacitive"
    assert np.all(a["kettle"].reactive_var == 0), "a kettle is resistive"
    q_over_p = a["fridge"].reactive_var[on] / a["fridge"].power_w[on]
    np.testing.assert_allclose(q_over_p, np.tan(np.arccos(0.8)), rtol=1e-4)


def test_pv_ev_and_appliance_set(minute_trace):
    a = minute_trace.appliances
    assert list(a) == [n for n in ALL_APPLIANCES if n in a]
    assert {"pv", "ev", "heating", "freezer"} <= set(a)
    assert a["pv"].power_w.min() < -1500 and a["pv"].power_w.max() <= 0
    hours = (minute_trace.ts_s % 86400) / 3600
    assert np.all(a["pv"].power_w[(hours < 4) | (hours > 21)] == 0), "no PV at night"
    ev = a["ev"].power_w
    assert ev.max() == pytest.approx(7400, rel=1e-3) and a["ev"].on.mean() < 0.5


def test_determinism_and_seed_sensitivity():
    cfg = HouseholdConfig()
    a = simulate_household(cfg, 2, "1min", seed=7)
    b = simulate_household(cfg, 2, "1min", seed=7)
    c = simulate_household(cfg, 2, "1min", seed=8)
    np.testing.assert_array_equal(a.power_w, b.power_w)
    for name in a.appliances:
        np.testing.assert_array_equal(a.appliances[name].power_w, b.appliances[name].power_w)
    assert not np.array_equal(a.power_w, c.power_w)


def test_a_day_is_the_same_alone_or_inside_a_run():
    cfg = HouseholdConfig(ev_charger_w=3700, heating="resistive")
    run = simulate_household(cfg, 3, "1min", seed=4, start="2024-01-10")
    alone = simulate_household(cfg, 1, "1min", seed=4, start="2024-01-11")
    day = slice(1440, 2880)
    np.testing.assert_array_equal(run.power_w[day], alone.power_w)
    np.testing.assert_allclose(np.diff(run.import_wh[1439:2880]), np.diff(np.r_[0.0, alone.import_wh]), atol=1e-6)


def test_resample_equals_direct_coarse_simulation():
    cfg = HouseholdConfig(pv_kwp=3.0)
    fine = simulate_household(cfg, 2, "1min", seed=2).resample(1800)
    coarse = simulate_household(cfg, 2, "30min", seed=2)
    for name in coarse.appliances:
        np.testing.assert_allclose(fine.appliances[name].power_w, coarse.appliances[name].power_w,
                                   rtol=1e-4, atol=1e-3)
        np.testing.assert_array_equal(fine.appliances[name].on, coarse.appliances[name].on)
    np.testing.assert_allclose(fine.import_wh, coarse.import_wh, rtol=1e-9)


def test_one_second_resolution_has_inrush_and_exact_energy():
    tr = simulate_household(HouseholdConfig(), 1, "1s", seed=9)
    assert len(tr) == 86400 and tr.resolution_s == 1
    fridge = tr.appliances["fridge"].power_w
    assert fridge.max() > 3 * np.median(fridge[fridge > 0]), "compressor inrush visible at 1 s"
    np.testing.assert_allclose(tr.import_wh[-1], tr.true_power_w().sum() / 3600, rtol=1e-6)


def test_to_profiles_shapes_and_calendar(heated):
    prof = heated.to_profiles()
    assert prof.load_w.shape == (120, 48) and prof.temperature_c.shape == (120, 48)
    assert str(prof.dates[0]) == "2024-01-01" and prof.weekday[0] == 0  # a Monday
    holidays = {str(d) for d in prof.dates[prof.is_holiday]}
    assert {"2024-01-01", "2024-03-29", "2024-04-01"} <= holidays  # New Year, Good Friday, Easter Monday
    np.testing.assert_allclose(prof.load_w.reshape(-1), heated.power_w, rtol=1e-6)


def test_fleet_is_diverse_and_reproducible():
    means = [tr.power_w.mean() for tr in simulate_fleet(10, 7, "30min", seed=21)]
    again = [tr.power_w.mean() for tr in simulate_fleet(10, 7, "30min", seed=21, workers=2)]
    np.testing.assert_array_equal(means, again)
    assert np.std(means) / np.mean(means) > 0.25
    configs = [fleet_member(i, 21)[0] for i in range(40)]
    assert len({c.archetype for c in configs}) == 3
    assert len({len(appliance_names(c)) for c in configs}) > 3


@pytest.mark.parametrize("text,seconds", [("1s", 1), ("10s", 10), ("1min", 60), ("15min", 900),
                                          ("30min", 1800), ("1h", 3600), (60, 60)])
def test_parse_resolution(text, seconds):
    assert parse_resolution(text) == seconds


@pytest.mark.parametrize("bad", ["7s", "0s", "abc", "1.5s", "250ms"])
def test_bad_resolution_rejected(bad):
    with pytest.raises(SimulationError):
        parse_resolution(bad)


def test_bad_inputs_rejected():
    with pytest.raises(SimulationError, match="midnight"):
        simulate_household(HouseholdConfig(), 1, 60, start="2024-01-01T05:00")
    with pytest.raises(SimulationError, match="days"):
        simulate_household(HouseholdConfig(), 0, 60)
    with pytest.raises(SimulationError, match="unknown appliances"):
        HouseholdConfig(appliances={"jacuzzi": 3000.0})


def _mean_morning_kettle_hour_utc(tr, days: slice) -> float:
    per_day = 86400 // tr.resolution_s
    on = tr.appliances["kettle"].power_w.reshape(-1, per_day)[days]
    hours = (np.arange(per_day) * tr.resolution_s / 3600)[None, :].repeat(len(on), 0)
    morning = (hours >= 3) & (hours < 11)
    return float((on * hours)[morning].sum() / on[morning].sum())


def test_daylight_saving_moves_behaviour_in_utc():
    """With tz=Europe/London, habits follow the clock: after 31 March they happen 1 h earlier in UTC."""
    base = dict(archetype="worker", vacation_days=0, uses_per_day={"kettle": 8.0})
    shifts = {}
    for tz in (None, "Europe/London"):
        tr = simulate_household(HouseholdConfig(tz=tz, **base), 56, "5min", seed=2, start="2024-03-03")
        shifts[tz] = _mean_morning_kettle_hour_utc(tr, slice(0, 28)) - _mean_morning_kettle_hour_utc(tr, slice(28, 56))
        prof = tr.to_profiles()
        assert len(prof.dates) >= 55 and np.isfinite(prof.load_w).all()
    assert abs(shifts[None]) < 0.35
    assert 0.6 < shifts["Europe/London"] < 1.4
    with pytest.raises(SimulationError, match="time zone"):
        HouseholdConfig(tz="Mars/Olympus")
