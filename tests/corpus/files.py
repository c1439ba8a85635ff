"""A corpus of public-style files, generated: the quoting conventions, encodings, line
endings and shapes that real exports have. Each entry writes its file and counts its rows
with a reference parser (Python's csv or json module, or the workbook's XML), never with
the code under test.

``build(directory, scale)`` writes every file; ``scale`` multiplies the row counts (1 for
tests, larger for the benchmark in bench/corpus.py).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import gzip
import io
import json
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import zstandard

from tests.corpus.xlsx import write_xlsx

WORDS = ("alpha", "beta", "gamma", "delta", "Zürich", "naïve", "São Paulo", "Ærø", "El Niño", "Kraków")


@dataclass(frozen=True)
class CorpusFile:
    name: str
    rows: int  # data rows by the reference parser


def _rng(name: str) -> random.Random:
    return random.Random(name)


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))


def _csv_count(data: bytes, encoding: str, **reader) -> int:
    """Data rows by Python's csv module (blank records skipped, header excluded)."""
    text = data.decode(encoding)
    return sum(1 for row in csv.reader(io.StringIO(text, newline=""), **reader) if row) - 1


def _write_csv(
    rows: list[list[str]],
    *,
    delimiter=",",
    quoting=csv.QUOTE_MINIMAL,
    lineterminator="\r\n",
    quotechar='"',
    escapechar=None,
    doublequote=True,
) -> str:
    out = io.StringIO()
    writer = csv.writer(
        out,
        delimiter=delimiter,
        quoting=quoting,
        lineterminator=lineterminator,
        quotechar=quotechar,
        escapechar=escapechar,
        doublequote=doublequote,
    )
    writer.writerows(rows)
    return out.getvalue()


def _table(name: str, n: int, *, notes: Callable[[random.Random, int], str] | None = None) -> list[list[str]]:
    rng = _rng(name)
    rows = [["id", "name", "amount", "day", "note"]]
    for i in range(n):
        note = notes(rng, i) if notes else _text(rng)
        day = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 1500))
        rows.append([str(i), _text(rng), f"{rng.uniform(0, 1000):.2f}", day.isoformat(), note])
    return rows


# --------------------------------------------------------------------------- delimited files


def _delimited(
    name: str, n: int, *, encoding="utf-8", bom=False, reader=None, notes=None, **style
) -> tuple[bytes, int]:
    text = _write_csv(_table(name, n, notes=notes), **style)
    data = text.encode(encoding)
    if bom:
        data = codecs.BOM_UTF8 + data
    reader = reader or {
        k: v for k, v in style.items() if k in ("delimiter", "quoting", "quotechar", "escapechar", "doublequote")
    }
    return data, _csv_count(data, "utf-8-sig" if encoding == "utf-8" else encoding, **reader)


def _multiline(rng: random.Random, i: int) -> str:
    return f'line one, {_text(rng)}\nline "two"' if i % 7 == 0 else _text(rng)


def _bare_quotes(rng: random.Random, i: int) -> str:
    return f'"{_text(rng)}" is quoted at the start' if i % 50 == 49 else _text(rng)


def _inch(rng: random.Random, i: int) -> str:
    return f'{rng.randint(5, 80)}" screen' if i % 9 == 0 else _text(rng)


def _crlf_header(n: int) -> tuple[bytes, int]:
    rows = _table("crlf_header", n, notes=_multiline)
    rows[0][4] = "note\n(free text)"
    data = _write_csv(rows, lineterminator="\r\n").encode()
    return data, _csv_count(data, "utf-8")


def _mixed_endings(n: int) -> tuple[bytes, int]:
    rows = _table("mixed_endings", n)
    ends = ("\n", "\r\n", "\r")
    text = "".join(",".join(r) + ends[i % 3] for i, r in enumerate(rows))
    data = text.encode()
    return data, _csv_count(data, "utf-8")


def _blank_lines(n: int) -> tuple[bytes, int]:
    rows = _table("blank_lines", n)
    text = "\n\n" + "".join(",".join(r) + ("\n\n" if i % 10 == 0 else "\n") for i, r in enumerate(rows))
    data = text.encode()
    return data, _csv_count(data, "utf-8")


def _utf16(n: int) -> tuple[bytes, int]:
    text = _write_csv(_table("utf16", n), delimiter="\t", lineterminator="\r\n")
    data = text.encode("utf-16")  # BOM first, as Excel's "Unicode text" export
    return data, _csv_count(data, "utf-16", delimiter="\t")


# --------------------------------------------------------------------------- JSON


def _records(name: str, n: int) -> list[dict]:
    rng = _rng(name)
    return [
        {
            "id": i,
            "name": _text(rng),
            "score": round(rng.uniform(0, 1), 4),
            "ok": rng.random() < 0.5,
            "tags": [rng.choice(WORDS)],
            "missing": None if i % 3 else "x",
        }
        for i in range(n)
    ]


def _json_array(n: int) -> tuple[bytes, int]:
    data = json.dumps(_records("json_array", n), ensure_ascii=False).encode()
    return data, len(json.loads(data))


def _json_pretty(n: int) -> tuple[bytes, int]:
    data = json.dumps(_records("json_pretty", n), indent=4).encode()
    return data, len(json.loads(data))


def _json_wrapped(n: int) -> tuple[bytes, int]:
    rng = _rng("json_wrapped")
    document = {
        "3166-1": [
            {"alpha_2": f"{chr(65 + i % 26)}{chr(65 + i // 26 % 26)}", "name": _text(rng), "numeric": f"{i:03d}"}
            for i in range(n)
        ]
    }
    data = json.dumps(document, indent=2, ensure_ascii=False).encode()
    return data, len(json.loads(data)["3166-1"])


def _json_wrapped_meta(n: int) -> tuple[bytes, int]:
    document = {"meta": {"source": "registry", "version": 3}, "count": n, "results": _records("wrapped_meta", n)}
    data = json.dumps(document).encode()
    return data, len(json.loads(data)["results"])


def _ndjson(n: int) -> tuple[bytes, int]:
    data = "".join(json.dumps(r) + "\n" for r in _records("ndjson", n)).encode()
    return data, sum(1 for line in data.splitlines() if line.strip())


def _ndjson_crlf(n: int) -> tuple[bytes, int]:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in _records("ndjson_crlf", n)).encode()
    return data, sum(1 for line in data.splitlines() if line.strip())


# --------------------------------------------------------------------------- workbooks


def _sheet_rows(name: str, n: int) -> list[list]:
    rng = _rng(name)
    rows: list[list] = [["id", "product", "price", "in stock", "since", "checked"]]
    for i in range(n):
        rows.append(
            [
                i,
                _text(rng),
                round(rng.uniform(1, 500), 2),
                rng.random() < 0.5,
                dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 1500)),
                dt.datetime(2024, 1, 1, rng.randint(0, 23), rng.randint(0, 59)),
            ]
        )
    return rows


def xlsx_rows(data: bytes, sheet: int = 1) -> int:
    """Data rows of a workbook's sheet by its XML: rows with at least one cell, less the header."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive, archive.open(f"xl/worksheets/sheet{sheet}.xml") as part:
        rows = 0
        for _, element in ElementTree.iterparse(part):
            if element.tag.endswith("}row"):
                rows += 1 if len(element) else 0
                element.clear()
    return rows - 1


def _xlsx(n: int) -> tuple[bytes, int]:
    buffer = io.BytesIO()
    write_xlsx(buffer, {"Export": _sheet_rows("xlsx", n)})
    data = buffer.getvalue()
    return data, xlsx_rows(data)


def _xlsx_gaps(n: int) -> tuple[bytes, int]:
    rows = _sheet_rows("xlsx_gaps", n)
    with_gaps = [row if i % 25 else [] for i, row in enumerate(rows, 1)]  # empty rows in the middle
    buffer = io.BytesIO()
    write_xlsx(buffer, {"Data": [rows[0]] + with_gaps[1:]})
    data = buffer.getvalue()
    return data, xlsx_rows(data)


# --------------------------------------------------------------------------- the corpus


def _compressed(make: Callable[[int], tuple[bytes, int]], compress: Callable[[bytes], bytes]):
    def build(n: int) -> tuple[bytes, int]:
        data, rows = make(n)
        return compress(data), rows

    return build


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _style(name: str, **options):
    return lambda n: _delimited(name, n, **options)


# name -> (builder of (bytes, reference rows) for a base row count)
CORPUS: dict[str, Callable[[int], tuple[bytes, int]]] = {
    "rfc4180_crlf.csv": _style("rfc4180_crlf"),
    "quote_all_lf.csv": _style("quote_all_lf", quoting=csv.QUOTE_ALL, lineterminator="\n"),
    "multiline_fields.csv": _style("multiline_fields", notes=_multiline),
    "semicolon_decimal_comma.csv": _style("semicolon", delimiter=";"),
    "pipe_separated.psv": _style("pipe", delimiter="|", lineterminator="\n"),
    "utf8_bom_excel.csv": _style("utf8_bom", bom=True),
    "latin1_windows.csv": _style("latin1", encoding="latin-1", delimiter=";"),
    "cp1252_windows.csv": _style("cp1252", encoding="cp1252", notes=lambda rng, i: f"price {i} € – ok"),
    "utf16_unicode_text.txt": _utf16,
    "tsv_bare_quotes.tsv": _style(
        "tsv_bare_quotes",
        delimiter="\t",
        quoting=csv.QUOTE_NONE,
        quotechar=None,
        lineterminator="\n",
        notes=_bare_quotes,
        reader={"delimiter": "\t", "quoting": csv.QUOTE_NONE},
    ),
    "csv_inch_marks.csv": _style("inch", notes=_inch),
    "single_quoted.csv": _style("single_quoted", quotechar="'", quoting=csv.QUOTE_ALL),
    "backslash_escaped.csv": _style("backslash", escapechar="\\", doublequote=False, notes=_multiline),
    "crlf_quoted_newline_header.csv": _crlf_header,
    "mixed_line_endings.csv": _mixed_endings,
    "blank_lines.csv": _blank_lines,
    "export.csv.gz": _compressed(_style("gz", notes=_multiline), _gzip),
    "export.tsv.zst": _compressed(_style("zst", delimiter="\t", lineterminator="\n"), _zstd),
    "records.json": _json_array,
    "records_pretty.json": _json_pretty,
    "iso_3166-1.json": _json_wrapped,
    "api_page.json": _json_wrapped_meta,
    "events.ndjson": _ndjson,
    "events_crlf.jsonl": _ndjson_crlf,
    "events.ndjson.gz": _compressed(_ndjson, _gzip),
    "workbook.xlsx": _xlsx,
    "workbook_gaps.xlsx": _xlsx_gaps,
}


def build(directory: Path, scale: int = 1, base_rows: int = 500) -> list[CorpusFile]:
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for name, make in CORPUS.items():
        data, rows = make(base_rows * scale)
        (directory / name).write_bytes(data)
        made.append(CorpusFile(name, rows))
    return made
