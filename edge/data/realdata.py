"""Real meter data -> the project's units: daily profiles and NILM windows.

:func:`series_to_profiles` turns any :class:`edge.data.loaders.MeterSeries` into
:class:`edge.data.profiles.MeterProfiles` (L mean powers per local day at 15 min, 30 min or hourly,
NaN where a slot is not covered well enough), so real data goes through the same shards, readers
and models as simulated data. Real data has no anomaly-free ground truth: ``load_clean_w`` in the
shards equals ``load_w``, and the temperature is NaN unless the user supplies it.

:func:`meter_profiles_from_shards` reads a profile dataset back as one ``MeterProfiles`` per household.

:data:`APPLIANCE_ALIASES` maps REDD / UK-DALE channel labels to the simulator's appliance names so
that NILM windows from real houses line up with :data:`edge.sim.specs.ALL_APPLIANCES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from edge.data.loaders import MeterSeries
from edge.data.profiles import DAY_S, MeterProfiles, ProfileError, to_profiles
from edge.data.shards import DatasetWriter, iter_profile_batches, read_manifest
from edge.data.split import split_households
from edge.features import CovariateSpec
from edge.sim.specs import ALL_APPLIANCES

# Dataset label -> simulator appliance name (labels not listed are ignored for NILM targets).
APPLIANCE_ALIASES: dict[str, str] = {
    "refrigerator": "fridge", "fridge": "fridge", "fridge_freezer": "fridge", "freezer": "freezer",
    "kettle": "kettle", "toaster": "toaster", "microwave": "microwave", "lighting": "lighting",
    "light": "lighting", "lights": "lighting", "tv": "tv", "television": "tv",
    "washer_dryer": "washing_machine", "washing_machine": "washing_machine", "dishwaser": "dishwasher",
    "dish_washer": "dishwasher", "dishwasher": "dishwasher", "oven": "oven", "electric_oven": "oven",
    "stove": "oven", "tumble_dryer": "tumble_dryer", "electric_heat": "heating",
    "electric_space_heater": "heating", "heat_pump": "heating", "boiler": "water_heater",
    "immersion_heater": "water_heater", "electric_shower": "water_heater", "air_conditioning": "cooling",
    "air_conditioner": "cooling", "laptop": "computer", "desktop": "computer", "computer": "computer",
    "router": "router", "broadband_router": "router", "solar_thermal_pump": "standby",
}


def series_to_profiles(series: MeterSeries, tz: str | None = None, min_coverage: float = 0.5,
                       resolution_s: int | None = None, country: str | None = None,
                       subdiv: str | None = None) -> MeterProfiles:
    """Daily profiles of a meter series (days in local time ``tz``; None: UTC) for shards.

    ``resolution_s``: 900, 1800 or 3600, or None for the series' own (finer data: 30 min); see
    :func:`edge.data.profiles.to_profiles`, which also says what resampling and which clock
    changes happened (``.notes``). Holidays from the ``holidays`` package when ``country`` is
    given. Days without any observed slot are left out.
    """
    spec = CovariateSpec(tz=tz, country=country, subdiv=subdiv) if country else None
    return to_profiles(series, tz, resolution_s, min_coverage, spec.is_holiday if spec else None,
                       keep_empty_days=False)


def series_nilm_windows(series: MeterSeries, window: int, appliances: Sequence[str] = ALL_APPLIANCES,
                        max_missing: float = 0.0) -> dict[str, np.ndarray]:
    """Consecutive NILM windows of a binned REDD/UK-DALE series with aliased appliance targets.

    Windows with more than ``max_missing`` NaN samples in the aggregate are skipped; NaN in an
    appliance channel becomes 0 W. ``appliance_on`` is power > 10 W; ``reactive_var`` is NaN
    (these data sets' low-frequency files carry active power only).
    """
    n = len(series.ts_s) // window
    agg = series.power_w[: n * window].reshape(n, window)
    good = np.isnan(agg).mean(axis=1) <= max_missing
    app_w = np.zeros((n, len(appliances), window), np.float32)
    owned = np.zeros(len(appliances), bool)
    for label, values in series.appliances.items():
        name = APPLIANCE_ALIASES.get(label.lower())
        if name in appliances:
            a = list(appliances).index(name)
            owned[a] = True
            app_w[:, a] += np.nan_to_num(values[: n * window].reshape(n, window)).astype(np.float32)
    return {"start_ts_s": series.ts_s[: n * window : window][good], "load_w": agg[good].astype(np.float32),
            "reactive_var": np.full((int(good.sum()), window), np.nan, np.float32),
            "appliance_w": app_w[good], "appliance_on": app_w[good] > 10.0, "owned": owned}


def write_series(series: Iterable[MeterSeries], out_dir: str | Path, meter_ids: Sequence[str],
                 fractions: dict[str, float] | None = None, seed: int = 0, tz: str | None = None,
                 nilm_window: int = 0, meta: dict | None = None, resolution_s: int | None = None,
                 country: str | None = None, subdiv: str | None = None) -> dict:
    """Write real meter series as profile (and, if they carry appliances, NILM) shards.

    The manifest records the time zone, holiday country, profile resolution and what was
    resampled (``import_notes`` per meter).
    """

    split_of = split_households(meter_ids, fractions, seed)
    writer, notes = None, {}
    for s in series:
        if writer is None:
            writer = DatasetWriter(out_dir, split_of, nilm_window=nilm_window or None,
                                   nilm_resolution_s=s.resolution_s,
                                   meta={"seed": seed, "source": s.source, "tz": tz, "country": country,
                                         "subdiv": subdiv, "import_notes": notes, **(meta or {})})
        prof = series_to_profiles(s, tz, resolution_s=resolution_s, country=country, subdiv=subdiv)
        notes[s.meter_id] = prof.notes
        writer.add_profiles(prof)
        if nilm_window and s.appliances:
            writer.add_nilm(s.meter_id, series_nilm_windows(s, nilm_window))
    if writer is None:
        raise ValueError("no meter series to write")
    return writer.close()


def meter_profiles_from_shards(data_dir, meters: list[str] | None = None) -> list[MeterProfiles]:
    """Each household of a profile dataset (every split) as consecutive local days (missing days NaN).

    Resolution, zone and holidays come from the dataset's manifest and rows, as written by
    ``unimeter import-data`` or ``unimeter simulate``.
    """
    manifest = read_manifest(data_dir)
    section = manifest.get("profiles")
    if section is None:
        raise ProfileError(f"{data_dir}: the dataset holds no daily profiles")
    res, tz = int(section.get("resolution_s", 1800)), manifest.get("tz")
    rows: dict[str, list[dict]] = {}
    cols = ["household_id", "date", "load_w", "temperature_c", "is_holiday"]
    for b in iter_profile_batches(data_dir, columns=cols):
        for hh in np.unique(b["household_id"]):
            if meters and hh not in meters:
                continue
            keep = b["household_id"] == hh
            rows.setdefault(str(hh), []).append({k: b[k][keep] for k in cols[1:]})
    out = []
    for hh, parts in sorted(rows.items()):
        dates = np.concatenate([p["date"] for p in parts]).astype("datetime64[D]")
        order = np.argsort(dates)
        days = dates[order].astype(np.int64)
        n = int(days[-1] - days[0]) + 1
        idx = days - days[0]
        steps = DAY_S // res

        def grid(key: str, fill, dtype, width: int | None = steps, order=order, idx=idx, n=n, parts=parts):
            values = np.concatenate([p[key] for p in parts])[order]
            g = np.full((n, width) if width else n, fill, dtype)
            g[idx] = values
            return g

        all_days = (days[0] + np.arange(n)).astype("datetime64[D]")
        out.append(MeterProfiles(hh, all_days, grid("load_w", np.nan, np.float32), grid("temperature_c", np.nan, np.float32),
                                 ((days[0] + np.arange(n) + 3) % 7).astype(np.int8), grid("is_holiday", False, bool, None),
                                 res, tz, list(manifest.get("import_notes", {}).get(hh, []))))
    if not out:
        raise ProfileError(f"{data_dir}: no household{' of ' + ', '.join(meters) if meters else ''} in the dataset")
    return out
