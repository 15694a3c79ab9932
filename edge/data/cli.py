"""``unimeter import-data``: real meter files (CER, LCL, REDD, UK-DALE, PJM, Home Assistant
history, CSV/Parquet) -> shards."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMMAND = "import-data"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="convert real meter files into Parquet profile (and NILM) shards",
        description="Load real smart-meter files with edge.data.loaders and write daily 30-min "
        "profiles (and NILM windows for REDD/UK-DALE houses) as shards split by meter, like "
        "'unimeter simulate' does for simulated households.",
    )
    p.add_argument("format", choices=["cer", "lcl", "redd", "ukdale", "pjm", "generic", "homeassistant"])
    p.add_argument("paths", nargs="+", type=Path, help="files (or REDD/UK-DALE house directories)")
    p.add_argument("--out", required=True, type=Path, help="output dataset directory")
    add_format_options(p)
    p.add_argument("--split", default="train=0.8,val=0.1,test=0.1", help="split fractions by meter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nilm-window", type=int, default=0, metavar="SAMPLES",
                   help="also write NILM windows of this length from houses with appliance channels")
    p.set_defaults(func=run)


def add_format_options(p: argparse.ArgumentParser) -> None:
    """Options that say how to read a user's files (shared with ``unimeter train all``)."""
    g = p.add_argument_group("reading the files")
    g.add_argument("--tz", default=None,
                   help="the meter's IANA time zone, e.g. Europe/London: days are its local days, and "
                   "timestamps written without a UTC offset are its local times (DST-aware)")
    g.add_argument("--resolution", type=int, choices=(900, 1800, 3600), default=None, metavar="S",
                   help="profile resolution in s: 900 (15 min, 96 points a day), 1800 (30 min, 48) or "
                   "3600 (hourly, 24). Default: the data's own; finer data is averaged to 1800. "
                   "Every resample is logged and recorded")
    g.add_argument("--unit", default=None, help="unit of the value column when its name does not say it "
                   "(W, kW, MW, Wh, kWh; Home Assistant: W/kW for power, kWh/Wh for energy)")
    g.add_argument("--value-column", default=None, help="generic: the value column's name")
    g.add_argument("--time-column", default=None, help="generic: the time column's name when it is not one of "
                   "timestamp, ts_s, time, datetime, date_time (e.g. Zeitstempel)")
    g.add_argument("--time-format", default=None, help="generic: strptime format of times that are not "
                   "ISO 8601, e.g. '%%d/%%m/%%Y %%H:%%M'")
    g.add_argument("--entity", default=None, help="homeassistant: the meter entity, e.g. sensor.house_power")
    g.add_argument("--temperature-entity", default="auto",
                   help="homeassistant: outdoor temperature entity ('auto': the one with 'temperature' "
                   "in its id; 'none': no weather)")
    g.add_argument("--country", default=None, help="ISO country code for public holidays (holidays package), e.g. GB")
    g.add_argument("--subdiv", default=None, help="subdivision code for holidays, e.g. ENG, VIC")


def loader_options(args: argparse.Namespace) -> dict:
    """Loader keyword options from :func:`add_format_options` arguments (None = loader default)."""
    temp = getattr(args, "temperature_entity", "auto")
    options = {"tz": args.tz, "unit": args.unit, "value_column": args.value_column,
               "time_format": getattr(args, "time_format", None), "time_column": getattr(args, "time_column", None)}
    if args.format == "homeassistant":
        options = {"unit": args.unit, "entity": args.entity,
                   "temperature_entity": None if temp in (None, "none") else temp}
    return options


def load_all(args: argparse.Namespace) -> list:
    """Every series of ``args.paths`` in ``args.format`` (raises LoaderError)."""
    from edge.data.loaders import load

    series = []
    for path in args.paths:
        series += load(path, args.format, **loader_options(args))
    return series


def run(args: argparse.Namespace) -> int:
    from edge.data.loaders import LoaderError
    from edge.data.profiles import ProfileError
    from edge.features import CovariateError

    try:
        from edge.data.realdata import write_series
    except ImportError as e:
        print(f"unimeter {COMMAND}: needs pyarrow ({e}); pip install 'unimeter[data]'", file=sys.stderr)
        return 2
    try:
        series = load_all(args)
        fractions = {k.strip(): float(v) for k, _, v in (part.partition("=") for part in args.split.split(","))}
        manifest = write_series(series, args.out, [s.meter_id for s in series], fractions, args.seed,
                                args.tz, args.nilm_window, meta={"inputs": [str(p) for p in args.paths]},
                                resolution_s=args.resolution, country=args.country, subdiv=args.subdiv)
    except (LoaderError, ProfileError, CovariateError) as e:
        print(f"unimeter {COMMAND}: {e}", file=sys.stderr)
        return 2
    for meter, notes in manifest.get("import_notes", {}).items():
        for note in notes:
            print(f"unimeter {COMMAND}: {meter}: {note}", file=sys.stderr)
    rows = sum(s["rows"] for s in manifest.get("profiles", {}).get("splits", {}).values())
    windows = sum(s["rows"] for s in manifest.get("nilm", {}).get("splits", {}).values())
    if rows == 0:
        print(f"unimeter {COMMAND}: warning: no day had an observed half-hour", file=sys.stderr)
    print(json.dumps({"out": str(args.out), "meters": len(series), "profiles": rows, "nilm_windows": windows,
                      "resolution_s": manifest.get("profiles", {}).get("resolution_s"),
                      "L": manifest.get("profiles", {}).get("L")}))
    return 0
