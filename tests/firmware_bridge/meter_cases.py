"""Real-meter cases: find them, tell their kind, read their files.

A case is a folder with ``README`` (how to feed it), ``expected.json`` (the right values, with
``source`` and ``why``/``rule``) and one input file whose name gives the kind:

==============  ======  ==========================================================
input file      kind    fed through
==============  ======  ==========================================================
telegram.bin    dsmr    the P1 parser / reader (one telegram, or a series of them)
polls.json      modbus  ``registers_to_values`` per poll, the Modbus source's decode
reports.json    zigbee  a replay device on zigpy's virtual radio, ``ZigbeeSource``
==============  ======  ==========================================================

Where cases are found, in this order (a name seen twice keeps its first folder):

1. ``tests/firmware_bridge/cases/<name>/``: vendored, unchanged copies (CI has nothing else);
2. every directory in ``$UNIMETER_METER_CASES`` (``:``-separated): a case folder itself, or a
   folder of case folders;
3. ``../shared/cases/meters`` beside the repository, when it exists.

Test modules name the cases they know (``known=``) so that a vendored case that goes missing
fails loudly, and run every case of their kind, so more cases of the same kinds dropped into
2. or 3. are run against the product without a code change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

ENV_VAR = "UNIMETER_METER_CASES"
VENDORED_DIR = Path(__file__).resolve().parent / "cases"
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared" / "cases" / "meters"
INPUT_FILES = {"telegram.bin": "dsmr", "polls.json": "modbus", "reports.json": "zigbee"}


@dataclass(frozen=True)
class MeterCase:
    """One case folder."""

    name: str
    path: Path
    kind: str  # "dsmr" | "modbus" | "zigbee"

    @cached_property
    def expected(self) -> dict:
        return self.json("expected.json")

    @property
    def readme(self) -> str:
        return (self.path / "README").read_text(encoding="utf-8")

    def json(self, name: str) -> dict:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def bytes(self, name: str) -> bytes:
        return (self.path / name).read_bytes()


def case_kind(path: Path) -> str | None:
    """The kind of a case folder from its input file; None if it is not a case."""
    if not (path / "expected.json").is_file():
        return None
    kinds = {kind for name, kind in INPUT_FILES.items() if (path / name).is_file()}
    return kinds.pop() if len(kinds) == 1 else None


def _case_folders(root: Path) -> Iterable[Path]:
    if case_kind(root) is not None:
        yield root
        return
    if root.is_dir():
        yield from sorted(p for p in root.iterdir() if p.is_dir() and case_kind(p) is not None)


def search_roots() -> list[Path]:
    """Vendored cases, then $UNIMETER_METER_CASES, then the shared collection beside the repo."""
    roots = [VENDORED_DIR]
    roots += [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    if SHARED_DIR.is_dir():
        roots.append(SHARED_DIR)
    return roots


def find_cases(kind: str | None = None) -> list[MeterCase]:
    """Every case (of ``kind``), first folder wins on a repeated name."""
    found: dict[str, MeterCase] = {}
    for root in search_roots():
        for folder in _case_folders(root):
            found.setdefault(folder.name, MeterCase(folder.name, folder, case_kind(folder)))
    return [c for c in found.values() if kind is None or c.kind == kind]


def case_params(kind: str) -> list:
    """pytest params (id = case name) of every case of ``kind``."""
    return [pytest.param(c, id=c.name) for c in find_cases(kind)]


def check_vendored(kind: str, known: Sequence[str]) -> None:
    """Each known case is vendored, of ``kind``, and byte-identical to the shared copy if present."""
    for name in known:
        folder = VENDORED_DIR / name
        assert case_kind(folder) == kind, f"case {name} is not vendored in {VENDORED_DIR} as {kind}"
        shared = SHARED_DIR / name
        if shared.is_dir():
            for f in sorted(p for p in shared.iterdir() if p.is_file()):
                assert (folder / f.name).read_bytes() == f.read_bytes(), (
                    f"vendored {name}/{f.name} differs from {shared}")


def split_telegrams(data: bytes) -> list[bytes]:
    """A ``telegram.bin`` holding a series of P1 telegrams -> one chunk per telegram (each starts
    at a ``/`` that begins a line; bytes before the first ``/`` stay with the first chunk)."""
    starts = [i for i in range(len(data)) if data[i:i + 1] == b"/" and (i == 0 or data[i - 1:i] == b"\n")]
    if not starts:
        return [data]
    bounds = [0, *starts[1:], len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def published_payloads(readings: Sequence, store_path: Path, limits=None) -> list[dict]:
    """What the agent publishes for ``readings`` of one meter, oldest first: each reading through
    the meter's ``ReadingGuard`` (whose gateway clock reads the reading's receive time, as on a
    gateway that checks a reading as it arrives), then one ``ReadingStore.commit_readings`` per
    reading with ``Topics.reading_messages`` as the message builder (the agent's path from source
    to outbox). Returns the JSON payloads of the reading messages, read back from the outbox."""
    from edge.agent.messages import Topics
    from edge.agent.store import ReadingStore
    from firmware_bridge.guard import ReadingGuard

    now_s = [0.0]
    guard = ReadingGuard(readings[0].meter_id if readings else "case", limits,
                         now_fn=lambda: now_s[0])
    store = ReadingStore(store_path, synchronous="normal")
    topics = Topics("unimeter", "case-gw")
    try:
        for reading in readings:
            now_s[0] = reading.received_s
            store.commit_readings([guard.check(reading)], topics.reading_messages)
        return [json.loads(m.payload) for m in store.pending(0, 100_000)
                if m.topic.endswith("/reading")]
    finally:
        store.close()


PUBLISHED_PREFIX = "published_"


def assert_published(expected: dict, payloads: Sequence[dict]) -> None:
    """Each ``expected["published_<key>"]`` list equals ``payload.get(<key>)`` of the reading
    messages in order (``null``: the key is absent or null in that message); numbers to 1e-4."""
    for name, want in expected.items():
        if not name.startswith(PUBLISHED_PREFIX) or not isinstance(want, list):
            continue
        key = name.removeprefix(PUBLISHED_PREFIX)
        got = [p.get(key) for p in payloads]
        assert len(got) == len(want), f"{name}: {len(got)} messages, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            if w is None:
                assert g is None, f"{name}[{i}]: expected no value, got {g!r} ({got})"
            else:
                assert g is not None and g == pytest.approx(w, abs=1e-4), f"{name}[{i}]: {got}"
