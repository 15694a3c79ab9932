"""The P1 test corpus: real telegrams from public test fixtures and the DSMR meter cases.

``corpus/index.json`` names each telegram file, where it comes from (repository@commit:path) and
whether its CRC is as published, recomputed (the source anonymised the telegram and left the old
CRC) or absent (DSMR 2.2/3, EasyMeter). The DSMR cases in tests/firmware_bridge/cases (and any
found beside them, see meter_cases.py) are part of the corpus too.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tests.firmware_bridge.meter_cases import find_cases, split_telegrams

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"

# dsmr_parser telegram specification a user of that library picks for a meter, by header tag.
_SPEC_BY_HEADER = (("/FLU", "BELGIUM_FLUVIUS"), ("/Lux", "LUXEMBOURG_SMARTY"), ("/KAM", "SWEDEN"),
                   ("/EST5", "SAGEMCOM_T210_D_R"), ("/ESY", "Q3D"), ("MIE5T", "ISKRA_IE"),
                   ("/SAG5", "EON_HUNGARY"))


@dataclass(frozen=True)
class CorpusTelegram:
    name: str
    data: bytes  # as on the wire: "/" .. "!CRC" CRLF
    source: str
    version: str  # DsmrConfig version for the product: "5" with a CRC, "2.2" without
    oracle_spec: str  # name in dsmr_parser.telegram_specifications


def oracle_spec(data: bytes) -> str:
    text = data.decode("latin-1")
    header = text[text.find("/"):].split("\n", 1)[0]
    for tag, spec in _SPEC_BY_HEADER:
        if tag in header:
            return spec
    if "1-3:0.2.8(5" in text:
        return "V5"
    if "1-3:0.2.8(4" in text:
        return "V4"
    return "V2_2"


def load_corpus() -> list[CorpusTelegram]:
    """Every corpus telegram, then every DSMR case telegram (``case:<name>``; ``case:<name>#k``
    for telegram k of a case that holds a series)."""
    out = []
    for entry in json.loads((CORPUS_DIR / "index.json").read_text(encoding="utf-8")):
        data = (CORPUS_DIR / entry["file"]).read_bytes()
        out.append(CorpusTelegram(entry["file"], data, entry["source"], entry["version"],
                                  oracle_spec(data)))
    for case in find_cases("dsmr"):
        chunks = split_telegrams(case.bytes("telegram.bin"))
        for k, data in enumerate(chunks):
            name = f"case:{case.name}" + (f"#{k}" if len(chunks) > 1 else "")
            out.append(CorpusTelegram(name, data, case.expected.get("source", ""),
                                      str(case.expected["dsmr_version"]), oracle_spec(data)))
    return out


@functools.cache
def oracle_telegram_buffer() -> type:
    """dsmr_parser's own TelegramBuffer (its framing), loaded from its file: importing
    ``dsmr_parser.clients`` pulls in serialx, which needs typing_extensions >= 4.13, while
    litert-converter (the TFLite export) pins < 4.13, so that package import fails here."""
    import dsmr_parser

    path = Path(dsmr_parser.__file__).parent / "clients" / "telegram_buffer.py"
    spec = importlib.util.spec_from_file_location("dsmr_parser_telegram_buffer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TelegramBuffer


@functools.cache
def oracle_parser(spec_name: str):
    from dsmr_parser import telegram_specifications
    from dsmr_parser.parsers import TelegramParser

    return TelegramParser(getattr(telegram_specifications, spec_name))


def oracle_parse(item: CorpusTelegram):
    """dsmr_parser as Home Assistant runs it: its TelegramBuffer, then TelegramParser.parse.

    Returns (its Telegram, None), or (None, why it rejected the telegram).
    """
    buffer = oracle_telegram_buffer()()
    buffer.append(item.data.decode("latin-1"))
    frames = list(buffer.get_all())
    if not frames:
        return None, "no telegram found by its TelegramBuffer"
    logging.disable(logging.ERROR)  # the oracle logs every line it skips
    try:
        return oracle_parser(item.oracle_spec).parse(frames[-1]), None
    except Exception as e:  # it raises many types (binascii, its own, ValueError)
        return None, f"{type(e).__name__}: {e}"
    finally:
        logging.disable(logging.NOTSET)
