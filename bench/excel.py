"""Time and peak memory of converting a large Excel workbook, by each reader.

    python -m bench.excel [--rows N] [--readers auto,openpyxl,calamine]

The workbook (``--rows`` rows × 10 columns: integers, text, prices, booleans, dates,
datetimes; strings in a shared strings table, as Excel saves them; 1,450,000 rows make
about 100 MB) is generated once and cached in bench/data/. Each reader converts it in a
fresh process, so its peak RSS is its own: ``auto`` is what an upload gets, ``openpyxl`` and
``calamine`` force one reader. The interpreter with the ingest modules loaded is measured
alone first, as the baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.corpus import measure

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
READERS = ("auto", "openpyxl", "calamine")

_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
    "romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
_CITIES = ("Zürich", "Malmö", "Lisboa", "Kraków", "Québec", "Osaka", "Nairobi", "Lima", "Reykjavík", "Tbilisi")


def _rows(n: int, seed: int = 7):
    rng = random.Random(seed)
    yield ["id", "sku", "product", "price", "qty", "in stock", "ordered", "shipped at", "city", "note"]
    day, moment = dt.date(2020, 1, 1), dt.datetime(2024, 1, 1)
    for i in range(n):
        yield [
            i + 1,
            f"SKU-{rng.randrange(10**6):06d}",
            f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS)}",
            round(rng.uniform(1, 500), 2),
            rng.randrange(1, 50),
            rng.random() < 0.5,
            day + dt.timedelta(days=rng.randrange(1500)),
            moment + dt.timedelta(seconds=rng.randrange(10**7)),
            rng.choice(_CITIES),
            " ".join(rng.choices(_WORDS, k=rng.randrange(0, 6))) or None,
        ]


def write_workbook(path: Path, rows: int) -> None:
    from tests.corpus.xlsx import write_xlsx

    partial = path.with_suffix(".partial")
    write_xlsx(partial, {"Orders": _rows(rows)}, shared_strings=True)
    partial.replace(path)


def workbook(rows: int) -> Path:
    """The cached workbook of ``rows`` data rows, written first if missing, by another process:
    a child's peak RSS starts from its parent's size when it is started."""
    path = DATA / f"orders-{rows}.xlsx"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        code = "import sys; from pathlib import Path; from bench.excel import write_workbook; "
        code += "write_workbook(Path(sys.argv[1]), int(sys.argv[2]))"
        subprocess.run([sys.executable, "-c", code, str(path), str(rows)], cwd=ROOT, check=True)
    return path


def _convert(src: Path, out: Path, reader: str) -> dict:
    setup = "from service.ingest.excel import convert_workbook\nfrom service.ingest.model import IngestSettings"
    call = (
        "convert_workbook(Path(args[1]), Path(args[2]), settings=IngestSettings(), "
        "reader=None if args[0] == 'auto' else args[0]).row_count"
    )
    return measure(setup, call, reader, str(src), str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_450_000, help="data rows of the workbook")
    parser.add_argument("--readers", default=",".join(READERS), help="comma-separated: " + ", ".join(READERS))
    args = parser.parse_args(argv)
    src = workbook(args.rows)
    print(f"{src.name}: {src.stat().st_size / 2**20:.0f} MiB, {args.rows:,} rows\n")
    failures = 0
    with tempfile.TemporaryDirectory(prefix="bench-excel-") as tmp:
        out = Path(tmp) / "out.parquet"
        baseline = _convert(src, out, "-")
        print(f"baseline (interpreter and ingest modules): {baseline['peak_mib']:.0f} MiB peak RSS\n")
        print("| reader | rows | time (s) | peak RSS (MiB) |")
        print("| --- | ---: | ---: | ---: |")
        for reader in args.readers.split(","):
            m = _convert(src, out, reader)
            failures += m["rows"] != args.rows
            rows = f"{m['rows']:,}" if m["error"] is None else m["error"][:80]
            print(f"| {reader} | {rows} | {m['seconds']:.1f} | {m['peak_mib']:.0f} |", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
