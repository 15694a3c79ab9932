"""Benchmark of firmware_bridge: DSMR parse throughput on one core beside dsmr_parser's on the
same real telegrams, the share of the corpus each accepts, and pty-to-Reading latency.

    python bench/bridge.py            # full run (~1 min)
    python bench/bridge.py --quick    # smoke run

Writes bench/results/bridge.json, bench/results/bridge.md and bench/results/bridge.latency.png.
Throughput is framer + CRC + OBIS parser + Reading for each telegram (the whole per-telegram CPU
cost of the reader), pinned to one core; both wall-clock and CPU-time rates are reported because
the machine may be shared. Latency: a telegram is written into the master side of a pty, read by
``DsmrSource`` through pyserial-asyncio on the slave side, and timed until the ``Reading`` is
yielded by ``readings()``. The same is measured for a Modbus poll (request + response + decode).

Corpus comparison: every telegram of the test corpus (tests/firmware_bridge/dsmr/corpus plus the
DSMR meter cases) goes through the product (``DsmrSource.feed``: framer, CRC, parser, Reading)
and through dsmr_parser as Home Assistant runs it (its TelegramBuffer, then
``TelegramParser.parse`` with the specification for that meter). Acceptance = a telegram gives a
reading / a parsed Telegram. Throughput is measured on the telegrams both accept, the two
parsers interleaved pass by pass in one process on one core (CPU time), so the ratio is from one
run on the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from tqdm import tqdm

from firmware_bridge.dsmr.source import DsmrConfig, DsmrSource
from firmware_bridge.dsmr.writer import encode_telegram
from firmware_bridge.modbus.source import ModbusConfig, ModbusSource
from firmware_bridge.modbus.virtual_meter import VirtualModbusMeter
from firmware_bridge.pty_link import PtyDevice
from firmware_bridge.source import BackoffConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
VERSIONS = ("5", "4", "2.2", "fluvius")


def _telegrams(version: str, n: int) -> list[bytes]:
    return [encode_telegram({"power_w": 500.0 + i, "import_wh": 1e6 + i, "voltage_v": 230.0},
                            ts_s=1.7e9 + i, version=version, gas_m3=100.0 + i,
                            phases=1 if version == "2.2" else 3) for i in range(n)]


def parse_throughput(version: str, n: int) -> dict:
    stream = b"".join(_telegrams(version, n))
    source = DsmrSource(DsmrConfig(port="/dev/null", version=version), meter_id="bench")
    chunk = 4096
    wall0, cpu0 = time.perf_counter(), time.process_time()
    delivered = 0
    for i in range(0, len(stream), chunk):
        delivered += len(source.feed(stream[i : i + chunk], received_s=1.7e9))
    wall_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
    assert delivered == n and source.stats.frames_corrupt == 0
    return {"version": version, "telegrams": n, "bytes_per_telegram": len(stream) // n,
            "telegrams_per_s_wall": n / wall_s, "telegrams_per_s_cpu": n / cpu_s,
            "us_per_telegram_cpu": 1e6 * cpu_s / n}


def _corpus() -> list:
    """The P1 test corpus (real telegrams with their sources), from the source checkout."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.firmware_bridge.dsmr.corpus import load_corpus

    return load_corpus()


def _product_accepts(item) -> bool:
    return bool(DsmrSource(DsmrConfig(port="-", version=item.version)).feed(item.data, 1.7e9))


def corpus_acceptance(corpus: list) -> dict:
    """Which corpus telegrams each parser accepts; the oracle's reasons for its rejections."""
    from tests.firmware_bridge.dsmr.corpus import oracle_parse

    rows = []
    for item in corpus:
        oracle_tg, why = oracle_parse(item)
        rows.append({"telegram": item.name, "product": _product_accepts(item),
                     "dsmr_parser": oracle_tg is not None, "dsmr_parser_error": why or ""})
    n = len(rows)
    return {"telegrams": n,
            "product_accepted": sum(r["product"] for r in rows),
            "dsmr_parser_accepted": sum(r["dsmr_parser"] for r in rows),
            "product_share": sum(r["product"] for r in rows) / n,
            "dsmr_parser_share": sum(r["dsmr_parser"] for r in rows) / n,
            "rows": rows}


def corpus_throughput(corpus: list, accepted: dict, passes: int) -> dict:
    """Telegrams/s (CPU) of both parsers on the telegrams both accept, interleaved per pass."""
    from tests.firmware_bridge.dsmr.corpus import oracle_parser, oracle_telegram_buffer

    both = [c for c in corpus if accepted[c.name]["product"] and accepted[c.name]["dsmr_parser"]]
    sources = {v: DsmrSource(DsmrConfig(port="-", version=v), meter_id="bench")
               for v in {c.version for c in both}}
    buffer_cls = oracle_telegram_buffer()
    jobs = [(sources[c.version], c.data, oracle_parser(c.oracle_spec)) for c in both]
    product_s = oracle_s = 0.0
    for _ in tqdm(range(passes), desc="corpus parse", leave=False):
        t0 = time.process_time()
        for source, data, _parser in jobs:
            source.feed(data, 1.7e9)
        t1 = time.process_time()
        for _source, data, parser in jobs:
            buffer = buffer_cls()
            buffer.append(data.decode("latin-1"))
            for telegram in buffer.get_all():
                parser.parse(telegram)
        t2 = time.process_time()
        product_s += t1 - t0
        oracle_s += t2 - t1
    n = len(jobs) * passes
    return {"telegrams": len(jobs), "passes": passes,
            "bytes_per_telegram": sum(len(c.data) for c in both) / len(both),
            "product_telegrams_per_s_cpu": n / product_s,
            "dsmr_parser_telegrams_per_s_cpu": n / oracle_s,
            "product_speedup": oracle_s / product_s}


def _percentiles(values_s: list[float]) -> dict:
    ms = sorted(v * 1000 for v in values_s)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"n": len(ms), "p50_ms": q[49], "p90_ms": q[89], "p99_ms": q[98], "max_ms": ms[-1],
            "mean_ms": statistics.fmean(ms)}


async def dsmr_latency(n: int, interval_s: float) -> tuple[dict, list[float]]:
    device = PtyDevice("ttyBench")
    device.plug()
    source = DsmrSource(DsmrConfig(port=device.path, version="5", read_timeout_s=5.0),
                        meter_id="bench", backoff=BackoffConfig(initial_s=0.05, jitter=0.0))
    telegrams = _telegrams("5", n)
    sent_s: dict[float, float] = {}
    latencies: list[float] = []

    async def writer() -> None:
        await asyncio.sleep(0.2)  # let the reader open the port
        for i, telegram in enumerate(telegrams):
            sent_s[1e6 + i] = time.time()
            device.write(telegram)
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(writer())
    try:
        async with contextlib.aclosing(source.readings()) as stream:
            with tqdm(total=n, desc="dsmr pty->Reading", leave=False) as bar:
                async for reading in stream:
                    latencies.append(time.time() - sent_s[reading.import_wh])
                    bar.update()
                    if len(latencies) == n:
                        break
    finally:
        task.cancel()
        device.remove()
    return _percentiles(latencies), latencies


async def modbus_latency(n: int) -> dict:
    async with VirtualModbusMeter(lambda ts: {"power_w": 100.0}, model="sdm630") as meter:
        source = ModbusSource(ModbusConfig(port=meter.port, model="sdm630", poll_interval_s=0.001,
                                           timeout_s=1.0), meter_id="bench")
        await source.connect()
        latencies = []
        try:
            for _ in tqdm(range(n), desc="modbus poll", leave=False):
                t0 = time.perf_counter()
                await source.poll()
                latencies.append(time.perf_counter() - t0)
        finally:
            await source.close()
    return _percentiles(latencies)


def _plot(latencies_s: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist([v * 1000 for v in latencies_s], bins=50, color="#3a7")
    ax.set_xlabel("pty write -> Reading yielded (ms)")
    ax.set_ylabel("telegrams")
    ax.set_title("DSMR 5 end-to-end latency (pyserial-asyncio on a pty)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(result: dict, command: str) -> str:
    acc, thr = result["corpus_acceptance"], result["corpus_throughput"]
    lines = [f"# firmware_bridge benchmark\n\nCommand: `{command}`  \n"
             f"Machine: {result['machine']}, pinned to CPU {result['cpu']} for parsing; load average "
             f"at start {result['load_average_at_start']} (absolute rates move with the load, "
             "ratios measured in one run much less).\n",
             "## Real telegrams: the product beside dsmr_parser (same run, same telegrams)\n",
             f"Corpus: {acc['telegrams']} real telegrams (tests/firmware_bridge/dsmr/corpus and the "
             "DSMR meter cases).\n",
             "| parser | accepted | share | telegrams/s (CPU, one core) |", "|---|---|---|---|",
             f"| product (`DsmrSource.feed`: framer, CRC, parser, Reading) | {acc['product_accepted']} "
             f"| {acc['product_share']:.1%} | {thr['product_telegrams_per_s_cpu']:,.0f} |",
             f"| dsmr_parser {result['dsmr_parser_version']} (TelegramBuffer + TelegramParser) "
             f"| {acc['dsmr_parser_accepted']} | {acc['dsmr_parser_share']:.1%} "
             f"| {thr['dsmr_parser_telegrams_per_s_cpu']:,.0f} |",
             "", f"Throughput on the {thr['telegrams']} telegrams both accept "
             f"({thr['bytes_per_telegram']:.0f} bytes on average), {thr['passes']} interleaved passes: "
             f"the product is {thr['product_speedup']:.1f}x dsmr_parser's rate.",
             "Rejected by dsmr_parser: " + "; ".join(
                 f"`{r['telegram']}` ({r['dsmr_parser_error'][:80]})" for r in acc["rows"]
                 if not r["dsmr_parser"]) + ".", "",
             "## DSMR parse throughput, simulated telegrams (framer + CRC + OBIS + Reading, one core)\n",
             "| version | bytes/telegram | telegrams/s (CPU time) | telegrams/s (wall) | us/telegram |",
             "|---|---|---|---|---|"]
    for r in result["parse"]:
        lines.append(f"| {r['version']} | {r['bytes_per_telegram']} | {r['telegrams_per_s_cpu']:,.0f} "
                     f"| {r['telegrams_per_s_wall']:,.0f} | {r['us_per_telegram_cpu']:.1f} |")
    lines += ["", "## Latency\n", "| path | n | p50 ms | p90 ms | p99 ms | max ms |",
              "|---|---|---|---|---|---|"]
    for name, r in (("DSMR 5 telegram: pty write -> Reading", result["dsmr_latency"]),
                    ("Modbus SDM630 poll (80 registers) on a pty bridge", result["modbus_poll"])):
        lines.append(f"| {name} | {r['n']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} "
                     f"| {r['p99_ms']:.2f} | {r['max_ms']:.2f} |")
    lines.append("\nThe pty ignores the baud rate: on a real P1 cable at 115200 baud a 1 kB telegram "
                 "also needs ~90 ms on the wire before the `!CRC` arrives.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    n_parse, n_latency, n_poll = (300, 50, 30) if args.quick else (5000, 400, 300)
    passes = 3 if args.quick else 40
    corpus = _corpus()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    cpu = sorted(os.sched_getaffinity(0))[-1]
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        acceptance = corpus_acceptance(corpus)
        by_name = {r["telegram"]: r for r in acceptance["rows"]}
        throughput = corpus_throughput(corpus, by_name, passes)
        parse = [parse_throughput(v, n_parse) for v in tqdm(VERSIONS, desc="parse", leave=False)]
        dsmr, latencies = asyncio.run(dsmr_latency(n_latency, interval_s=0.02))
        modbus = asyncio.run(modbus_latency(n_poll))
    finally:
        os.sched_setaffinity(0, affinity)
    command = "python bench/bridge.py" + (" --quick" if args.quick else "")
    result = {"command": command, "cpu": cpu, "python": sys.version.split()[0],
              "machine": f"{platform.machine()} {os.cpu_count()} CPUs (shared)",
              "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "load_average_at_start": load_at_start,
              "dsmr_parser_version": importlib.metadata.version("dsmr-parser"),
              "corpus_acceptance": acceptance, "corpus_throughput": throughput,
              "parse": parse, "dsmr_latency": dsmr, "modbus_poll": modbus}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bridge.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "bridge.md").write_text(_markdown(result, command))
    _plot(latencies, args.out / "bridge.latency.png")
    print(_markdown(result, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
