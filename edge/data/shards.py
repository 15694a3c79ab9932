"""Parquet dataset shards: daily profiles (L points per local day) and high-rate NILM windows, read as streams.

Seed 000 pretrains on ~3 million daily profiles; they never have to fit in memory: writers flush
every ``rows_per_shard`` rows and readers stream record batches.

Layout of a dataset directory::

    DIR/manifest.json
    DIR/profiles/<split>/part-00000.parquet ...
    DIR/nilm/<split>/part-00000.parquet ...

Splits are by household: a household's rows all go to one split (train/val/test by default),
assigned deterministically from the seed with exact fractions (:func:`split_households`) and
recorded in ``manifest.json``.

Profiles schema (one row per household-day; ``[L]`` = fixed-size list of L = 86400 / resolution_s
points (96, 48 or 24; ``manifest["profiles"]["L"]`` and ``["resolution_s"]``), slot k covers local
time [k*resolution_s, (k+1)*resolution_s)):

============== ======================== ==========================================================
column         type                     meaning
============== ======================== ==========================================================
household_id   string
date           date32                   local date
load_w         float32[L]               measured mean power (W), as a model sees it: may contain
                                        injected attacks, and NaN where missing
load_clean_w   float32[L]               anomaly-free ground truth (W)
observed       uint8[L]                 1 = observed, 0 = missing
anomaly_point  uint8[L]                 1 = manipulated by an injected attack/fault
anomaly_kind   int8                     ``edge.sim.inject.KINDS`` code of the day's attack, 0 none
temperature_c  float32[L]               outdoor temperature (C)
weekday        int8                     Monday = 0
is_holiday     bool                     public holiday
============== ======================== ==========================================================

NILM schema (one row per window of ``L_nilm`` samples at ``resolution_s``; appliance order is
``manifest["nilm"]["appliances"]``, A of them; ``[A*L]`` is row-major [A, L]):

============== ======================== ==========================================================
household_id   string
start_ts_s     int64                    UTC epoch s of the first sample
load_w         float32[L]               measured aggregate active power (W)
reactive_var   float32[L]               measured aggregate reactive power (var)
appliance_w    float32[A*L]             ground-truth active power per appliance (0 if not owned)
appliance_on   uint8[A*L]               ground-truth on state
owned          uint8[A]                 1 if the household has the appliance
============== ======================== ==========================================================

Readers return dicts of numpy arrays (``household_id`` as an object array of str, ``date`` as
datetime64[D], lists reshaped to [B, L] or [B, A, L]).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from edge.data.split import DEFAULT_FRACTIONS, split_households
from edge.errors import DataError
from edge.sim.household import fleet_member, simulate_household
from edge.sim.inject import attack_batch
from edge.sim.specs import ALL_APPLIANCES
from edge.sim.trace import DailyProfiles, HouseholdTrace

FORMAT_VERSION = 1
PROFILE_L = 48


class ShardError(DataError):
    """A dataset directory that is missing, inconsistent or asked for something it lacks."""


def _fixed(values: np.ndarray, width: int, pa_type: pa.DataType) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=pa_type)
    return pa.FixedSizeListArray.from_arrays(flat, width)


def profile_schema(length: int = PROFILE_L) -> pa.Schema:
    """The profiles schema for days of ``length`` points."""
    return pa.schema([
        ("household_id", pa.string()), ("date", pa.date32()),
        ("load_w", pa.list_(pa.float32(), length)), ("load_clean_w", pa.list_(pa.float32(), length)),
        ("observed", pa.list_(pa.uint8(), length)), ("anomaly_point", pa.list_(pa.uint8(), length)),
        ("anomaly_kind", pa.int8()), ("temperature_c", pa.list_(pa.float32(), length)),
        ("weekday", pa.int8()), ("is_holiday", pa.bool_()),
    ])


PROFILE_SCHEMA = profile_schema(PROFILE_L)


def _nilm_schema(n_app: int, length: int) -> pa.Schema:
    return pa.schema([
        ("household_id", pa.string()), ("start_ts_s", pa.int64()),
        ("load_w", pa.list_(pa.float32(), length)), ("reactive_var", pa.list_(pa.float32(), length)),
        ("appliance_w", pa.list_(pa.float32(), n_app * length)),
        ("appliance_on", pa.list_(pa.uint8(), n_app * length)), ("owned", pa.list_(pa.uint8(), n_app)),
    ])


@dataclass
class _Part:
    """Buffered rows of one (kind, split) and the files written so far."""

    tables: list[pa.Table] = field(default_factory=list)
    rows_buffered: int = 0
    bytes_buffered: int = 0
    files: list[str] = field(default_factory=list)
    rows_written: int = 0
    households: set[str] = field(default_factory=set)


class DatasetWriter:
    """Writes profile and NILM rows to per-split Parquet shards and the manifest on close."""

    def __init__(self, out_dir: str | Path, split_of: dict[str, str], rows_per_shard: int = 200_000,
                 nilm_window: int | None = None, nilm_resolution_s: int | None = None,
                 nilm_appliances: Sequence[str] = ALL_APPLIANCES, meta: dict | None = None,
                 max_shard_bytes: int = 128 << 20) -> None:
        self.out = Path(out_dir)
        self.max_shard_bytes = int(max_shard_bytes)
        self.split_of = dict(split_of)
        self.rows_per_shard = int(rows_per_shard)
        self.nilm_window = nilm_window
        self.nilm_resolution_s = nilm_resolution_s
        self.nilm_appliances = tuple(nilm_appliances)
        self.meta = dict(meta or {})
        self.profile_L: int | None = None  # points per day, from the first profiles written
        self.profile_resolution_s: int | None = None
        self._parts: dict[tuple[str, str], _Part] = {}
        self.out.mkdir(parents=True, exist_ok=True)

    def _split(self, household_id: str) -> str:
        try:
            return self.split_of[household_id]
        except KeyError as e:
            raise ShardError(f"household {household_id!r} has no split assigned") from e

    def _append(self, kind: str, household_id: str, table: pa.Table) -> None:
        split = self._split(household_id)
        part = self._parts.setdefault((kind, split), _Part())
        part.tables.append(table)
        part.rows_buffered += table.num_rows
        part.bytes_buffered += table.nbytes
        part.households.add(household_id)
        if part.rows_buffered >= self.rows_per_shard or part.bytes_buffered >= self.max_shard_bytes:
            self._flush(kind, split)

    def _flush(self, kind: str, split: str) -> None:
        part = self._parts[(kind, split)]
        if not part.tables:
            return
        table = pa.concat_tables(part.tables)
        rel = f"{kind}/{split}/part-{len(part.files):05d}.parquet"
        (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, self.out / rel, compression="zstd")
        part.files.append(rel)
        part.rows_written += table.num_rows
        part.tables, part.rows_buffered, part.bytes_buffered = [], 0, 0

    def add_profiles(self, prof: DailyProfiles, load_w: np.ndarray | None = None,
                     anomaly_point: np.ndarray | None = None, anomaly_kind: np.ndarray | None = None) -> None:
        """Rows for one household's days; ``load_w`` defaults to the clean profiles.

        ``prof`` is a ``DailyProfiles`` (30 min) or an ``edge.data.profiles.MeterProfiles`` (its
        ``resolution_s``); every household of one dataset has the same resolution.
        """
        n = len(prof.dates)
        if n == 0:
            return
        clean = np.asarray(prof.load_w, np.float32)
        length, res = clean.shape[1], int(getattr(prof, "resolution_s", 1800))
        if self.profile_L is None:
            self.profile_L, self.profile_resolution_s = length, res
        if (length, res) != (self.profile_L, self.profile_resolution_s):
            raise ShardError(f"{prof.household_id}: days of {length} points at {res} s, but this dataset holds "
                             f"{self.profile_L} points at {self.profile_resolution_s} s")
        seen = clean if load_w is None else np.asarray(load_w, np.float32)
        if seen.shape != (n, length):
            raise ShardError(f"load_w must be [{n}, {length}], got {seen.shape}")
        points = np.zeros((n, length), np.uint8) if anomaly_point is None else np.asarray(anomaly_point, np.uint8)
        kinds = np.zeros(n, np.int8) if anomaly_kind is None else np.asarray(anomaly_kind, np.int8)
        table = pa.table({
            "household_id": pa.array([prof.household_id] * n, pa.string()),
            "date": pa.array(np.asarray(prof.dates, "datetime64[D]"), pa.date32()),
            "load_w": _fixed(seen, length, pa.float32()),
            "load_clean_w": _fixed(clean, length, pa.float32()),
            "observed": _fixed(np.isfinite(seen).astype(np.uint8), length, pa.uint8()),
            "anomaly_point": _fixed(points, length, pa.uint8()),
            "anomaly_kind": pa.array(kinds, pa.int8()),
            "temperature_c": _fixed(np.asarray(prof.temperature_c, np.float32), length, pa.float32()),
            "weekday": pa.array(np.asarray(prof.weekday, np.int8), pa.int8()),
            "is_holiday": pa.array(np.asarray(prof.is_holiday, bool), pa.bool_()),
        }, schema=profile_schema(length))
        self._append("profiles", prof.household_id, table)

    def add_nilm(self, household_id: str, windows: dict[str, np.ndarray]) -> None:
        """Rows from :func:`nilm_windows` output for one household."""
        if self.nilm_window is None:
            raise ShardError("this writer was created without nilm_window")
        n, length = windows["load_w"].shape
        n_app = len(self.nilm_appliances)
        if length != self.nilm_window or windows["appliance_w"].shape != (n, n_app, length):
            raise ShardError(f"NILM windows must be [{n}, {n_app}, {self.nilm_window}], got "
                             f"{windows['appliance_w'].shape}")
        if n == 0:
            return
        table = pa.table({
            "household_id": pa.array([household_id] * n, pa.string()),
            "start_ts_s": pa.array(windows["start_ts_s"].astype(np.int64)),
            "load_w": _fixed(windows["load_w"].astype(np.float32), length, pa.float32()),
            "reactive_var": _fixed(windows["reactive_var"].astype(np.float32), length, pa.float32()),
            "appliance_w": _fixed(windows["appliance_w"].astype(np.float32), n_app * length, pa.float32()),
            "appliance_on": _fixed(windows["appliance_on"].astype(np.uint8), n_app * length, pa.uint8()),
            "owned": _fixed(np.tile(windows["owned"].astype(np.uint8), (n, 1)), n_app, pa.uint8()),
        }, schema=_nilm_schema(n_app, length))
        self._append("nilm", household_id, table)

    def close(self) -> dict:
        """Flush everything and write ``manifest.json``; returns the manifest."""
        for kind, split in list(self._parts):
            self._flush(kind, split)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "splits": sorted(set(self.split_of.values())),
            "household_split": dict(sorted(self.split_of.items())),
            **self.meta,
        }
        for kind in ("profiles", "nilm"):
            parts = {s: p for (k, s), p in self._parts.items() if k == kind}
            if not parts:
                continue
            section = {"splits": {s: {"files": p.files, "rows": p.rows_written,
                                      "households": sorted(p.households)} for s, p in sorted(parts.items())}}
            if kind == "profiles":
                section.update(L=self.profile_L or PROFILE_L, resolution_s=self.profile_resolution_s or 1800)
            else:
                section.update(L=self.nilm_window, resolution_s=self.nilm_resolution_s,
                               appliances=list(self.nilm_appliances))
            manifest[kind] = section
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest


def nilm_windows(trace: HouseholdTrace, window: int, n_windows: int, rng: np.random.Generator,
                 appliances: Sequence[str] = ALL_APPLIANCES) -> dict[str, np.ndarray]:
    """``n_windows`` random, non-overlapping windows of ``window`` samples from a trace."""
    n_slots = len(trace) // window
    if n_slots == 0:
        raise ShardError(f"trace of {len(trace)} samples is shorter than a NILM window of {window}")
    slots = np.sort(rng.choice(n_slots, size=min(n_windows, n_slots), replace=False))
    idx = slots[:, None] * window + np.arange(window)[None, :]
    n_app = len(appliances)
    app_w = np.zeros((len(slots), n_app, window), np.float32)
    app_on = np.zeros((len(slots), n_app, window), bool)
    owned = np.zeros(n_app, bool)
    for a, name in enumerate(appliances):
        if name in trace.appliances:
            owned[a] = True
            app_w[:, a] = trace.appliances[name].power_w[idx]
            app_on[:, a] = trace.appliances[name].on[idx]
    return {"start_ts_s": trace.ts_s[slots * window], "load_w": trace.power_w[idx],
            "reactive_var": trace.reactive_var[idx], "appliance_w": app_w, "appliance_on": app_on,
            "owned": owned}


# --- reading --------------------------------------------------------------------------------


def read_manifest(data_dir: str | Path) -> dict:
    path = Path(data_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ShardError(f"{path}: no manifest (not a dataset directory)") from e
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: corrupt manifest: {e}") from e
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ShardError(f"{path}: format_version {manifest.get('format_version')} != {FORMAT_VERSION}")
    return manifest


def _column_to_numpy(col: pa.Array, shape: tuple[int, ...] | None) -> np.ndarray:
    if pa.types.is_fixed_size_list(col.type):
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape((len(col), *shape)) if shape else flat.reshape(len(col), -1)
    if pa.types.is_date32(col.type):
        return col.to_numpy(zero_copy_only=False).astype("datetime64[D]")
    if pa.types.is_string(col.type):
        return np.asarray(col.to_pylist(), dtype=object)
    return col.to_numpy(zero_copy_only=False)


def _files_of(data: str | Path | Sequence[str | Path], kind: str, split: str | None) -> list[Path]:
    """Shard files from a dataset directory (one split, or all when ``split`` is None), a Parquet
    file, or a list of either."""
    if isinstance(data, (str, Path)):
        data = [data]
    files: list[Path] = []
    for item in data:
        path = Path(item)
        if path.suffix == ".parquet":
            if not path.exists():
                raise ShardError(f"{path}: no such shard file")
            files.append(path)
            continue
        manifest = read_manifest(path)
        if kind not in manifest:
            raise ShardError(f"{path}: dataset has no {kind} shards")
        splits = manifest[kind]["splits"]
        if split is not None and split not in splits:
            raise ShardError(f"{path}: no {kind} split {split!r}; have {sorted(splits)}")
        for name in [split] if split is not None else sorted(splits):
            files += [path / rel for rel in splits[name]["files"]]
    return files


def _iter_batches(data: str | Path | Sequence[str | Path], kind: str, split: str | None, batch_size: int,
                  shapes: dict[str, tuple[int, ...]], columns: Sequence[str] | None,
                  shuffle: bool, seed: int, drop_last: bool) -> Iterator[dict[str, np.ndarray]]:
    if batch_size < 1:
        raise ShardError(f"batch_size must be >= 1, got {batch_size}")
    files = _files_of(data, kind, split)
    rng = np.random.default_rng(seed)
    if shuffle:
        rng.shuffle(files)
    pending: list[dict[str, np.ndarray]] = []
    n_pending = 0
    for path in files:
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise ShardError(f"{path}: not a readable Parquet shard: {e}") from e
        for rb in pf.iter_batches(batch_size=max(batch_size, 4096), columns=list(columns) if columns else None):
            chunk = {name: _column_to_numpy(rb.column(i), shapes.get(name))
                     for i, name in enumerate(rb.schema.names)}
            if shuffle:
                perm = rng.permutation(rb.num_rows)
                chunk = {k: v[perm] for k, v in chunk.items()}
            pending.append(chunk)
            n_pending += rb.num_rows
            while n_pending >= batch_size:
                merged = {k: np.concatenate([c[k] for c in pending]) for k in pending[0]}
                yield {k: v[:batch_size] for k, v in merged.items()}
                rest = {k: v[batch_size:] for k, v in merged.items()}
                n_pending -= batch_size
                pending = [rest] if n_pending else []
    if n_pending and not drop_last:
        yield {k: np.concatenate([c[k] for c in pending]) for k in pending[0]}


def iter_profile_batches(data_dir: str | Path | Sequence[str | Path], split: str | None = None,
                         batch_size: int = 4096, columns: Sequence[str] | None = None,
                         shuffle: bool = False, seed: int = 0,
                         drop_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Stream profile rows of ``split`` as dicts of numpy arrays ([B, L] for the list columns).

    ``data_dir`` is a dataset directory, a shard file, or a list of either; with ``split=None`` a
    directory yields all its splits (pass ``split="train"`` for training so that val/test
    households stay unseen). ``shuffle`` permutes file order and rows within each read chunk (a
    streaming shuffle).
    """
    yield from _iter_batches(data_dir, "profiles", split, batch_size, {}, columns, shuffle, seed, drop_last)


def iter_nilm_batches(data_dir: str | Path, split: str | None = None, batch_size: int = 256,
                      columns: Sequence[str] | None = None, shuffle: bool = False, seed: int = 0,
                      drop_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Stream NILM windows: load_w [B, L], appliance_w/appliance_on [B, A, L], owned [B, A].

    ``data_dir`` is a dataset directory (its manifest gives L and the appliance order).
    """
    section = read_manifest(data_dir).get("nilm")
    if section is None:
        raise ShardError(f"{data_dir}: dataset has no nilm shards")
    length, n_app = int(section["L"]), len(section["appliances"])
    shapes = {"load_w": (length,), "reactive_var": (length,), "appliance_w": (n_app, length),
              "appliance_on": (n_app, length), "owned": (n_app,)}
    yield from _iter_batches(data_dir, "nilm", split, batch_size, shapes, columns, shuffle, seed, drop_last)


def write_traces(traces: Iterable[HouseholdTrace], out_dir: str | Path, household_ids: Sequence[str],
                 fractions: dict[str, float] | None = None, seed: int = 0, nilm_window: int | None = None,
                 nilm_per_household: int = 0, attack_fraction: float = 0.0,
                 rows_per_shard: int = 200_000, meta: dict | None = None) -> dict:
    """Write profiles (and NILM windows) of simulated traces; returns the manifest.

    ``attack_fraction`` of the days get one random FDI attack (``edge.sim.inject``) in ``load_w``
    while ``load_clean_w`` keeps the truth.
    """

    split_of = split_households(household_ids, fractions, seed)
    writer = None
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xDA7A])
    for tr in traces:
        if writer is None:
            writer = DatasetWriter(out_dir, split_of, rows_per_shard, nilm_window if nilm_per_household else None,
                                   tr.resolution_s, meta={"seed": seed, "split_fractions": fractions or DEFAULT_FRACTIONS,
                                                          **(meta or {})})
        prof = tr.to_profiles()
        if attack_fraction > 0 and len(prof.dates):
            seen, points, _, kinds = attack_batch(prof.load_w, rng, attack_fraction)
            writer.add_profiles(prof, seen, points, kinds)
        else:
            writer.add_profiles(prof)
        if nilm_per_household and nilm_window:
            writer.add_nilm(tr.household_id, nilm_windows(tr, nilm_window, nilm_per_household, rng))
    if writer is None:
        raise ShardError("no traces to write")
    return writer.close()


@dataclass
class FleetJob:
    """One household of a simulated fleet, as sent to a worker process."""

    index: int
    seed: int
    days: int
    resolution_s: int
    start: str
    nilm_window: int = 0
    nilm_per_household: int = 0
    attack_fraction: float = 0.0
    keep_trace: bool = False
    tz: str | None = None


def _fleet_member_rows(job: FleetJob) -> dict:
    """Simulate one household in a worker and return only what the writer needs (small IPC)."""

    config, trace_seed = fleet_member(job.index, job.seed, tz=job.tz)
    tr = simulate_household(config, job.days, job.resolution_s, trace_seed, job.start)
    rng = np.random.default_rng([int(job.seed) & 0xFFFFFFFF, job.index, 0xDA7A])
    prof = tr.to_profiles()
    out: dict = {"household_id": tr.household_id, "profiles": prof, "attacks": None, "nilm": None,
                 "trace": tr if job.keep_trace else None}
    if job.attack_fraction > 0 and len(prof.dates):
        seen, points, _, kinds = attack_batch(prof.load_w, rng, job.attack_fraction)
        out["attacks"] = (seen, points, kinds)
    if job.nilm_per_household and job.nilm_window:
        out["nilm"] = nilm_windows(tr, job.nilm_window, job.nilm_per_household, rng)
    return out


def write_fleet(out_dir: str | Path, n_households: int, days: int, resolution_s: int, seed: int = 0,
                start: str = "2024-01-01", workers: int = 1, fractions: dict[str, float] | None = None,
                nilm_window: int = 240, nilm_per_household: int = 0, attack_fraction: float = 0.0,
                keep_trace_of: int | None = None, rows_per_shard: int = 200_000, progress: bool = True,
                meta: dict | None = None, tz: str | None = None) -> tuple[dict, object]:
    """Simulate a fleet in ``workers`` processes and write its shards; returns (manifest, trace).

    Workers return profiles (and NILM windows) rather than whole traces, so the parent stays
    light. ``trace`` is the full trace of household ``keep_trace_of`` (for plotting) or None.
    Deterministic given ``seed``, whatever the number of workers.
    """

    ids = [f"h{i:05d}" for i in range(n_households)]
    split_of = split_households(ids, fractions, seed)
    writer = DatasetWriter(out_dir, split_of, rows_per_shard, nilm_window if nilm_per_household else None,
                           resolution_s, meta={"seed": seed, "split_fractions": fractions or DEFAULT_FRACTIONS,
                                               **(meta or {})})
    jobs = [FleetJob(i, seed, days, resolution_s, start, nilm_window, nilm_per_household, attack_fraction,
                     keep_trace=(i == keep_trace_of), tz=tz) for i in range(n_households)]
    kept = None
    if workers > 1 and n_households > 1:

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        pool = ctx.Pool(processes=workers)
        results = pool.imap(_fleet_member_rows, jobs)
    else:
        pool, results = None, map(_fleet_member_rows, jobs)
    try:
        for res in tqdm(results, total=n_households, unit="household", desc="simulate", disable=not progress):
            if res["attacks"] is not None:
                writer.add_profiles(res["profiles"], *res["attacks"])
            else:
                writer.add_profiles(res["profiles"])
            if res["nilm"] is not None:
                writer.add_nilm(res["household_id"], res["nilm"])
            if res["trace"] is not None:
                kept = res["trace"]
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return writer.close(), kept
