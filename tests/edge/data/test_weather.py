"""The agent's weather feed: a CSV of temperatures -> one local day at the model's resolution."""

from __future__ import annotations

import numpy as np
import pytest

from edge.data.loaders import LoaderError
from edge.data.weather import day_temperatures, read_weather_csv
from edge.features import forecast_covariates


def test_hourly_feed_to_a_local_day_at_30_min(tmp_path):
    p = tmp_path / "weather.csv"
    lines = ["timestamp,temperature_c"] + [f"2024-06-02T{h:02d}:00:00,{10 + h}" for h in range(24)]
    lines += ["2024-06-03T00:00:00,"]  # a gap in the feed
    p.write_text("\n".join(lines) + "\n")
    ts, temp = read_weather_csv(p, tz="Europe/London")
    day = day_temperatures(ts, temp, "2024-06-02", "Europe/London", 48)
    assert day.shape == (48,) and day[0] == 10 and day[2] == 11 and day[-1] == 33  # held after 23:00
    assert day_temperatures(ts, temp, "2024-06-03", "Europe/London", 48) is None
    v = forecast_covariates("2024-06-02", day, False)
    assert v[11] == 1.0  # temp_available


def test_fahrenheit_and_bad_files(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("time,temperature_f\n1717286400,50\n")
    _, temp = read_weather_csv(p)
    assert temp[0] == pytest.approx(10.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,wind\n1,2\n")
    with pytest.raises(LoaderError, match="timestamp and temperature_c"):
        read_weather_csv(bad)
    np.testing.assert_array_equal(read_weather_csv(p)[0], [1717286400])
