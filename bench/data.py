"""Deterministic benchmark data sets, cached in ``bench/data/``.

Generation runs in the peers venv (numpy + pyarrow, vectorised, chunk by chunk) as
``python -m bench.data KIND --out PATH ...``; the harness only asks for paths through
:func:`ensure` and never imports numpy itself. Each chunk gets its own seed derived from
``(seed, chunk index)``, so a file is the same whatever the chunk size or the machine.

Every file has a sidecar ``<name>.json`` with what the harness checks afterwards (rows,
exact duplicate rows, bytes). The cache key holds every parameter and ``GEN_VERSION``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR") or ROOT / "bench" / "data")
# Bump when the generated content changes, so cached files are not reused.
GEN_VERSION = 1

CHUNK_ROWS = 500_000
# One row in a thousand is an exact copy of an earlier row of its chunk: silver removes them.
DUP_EVERY = 1000

CATEGORIES = ["electronics", "books", "garden", "toys", "grocery", "fashion", "sports", "home", "beauty", "auto"]
NOTES = ["", "", "", "", "NULL", "N/A", "gift", "express", "returned, refunded", 'said "ok"', "  padded  ", "none"]
BASE_DAY = 18_262  # 2020-01-01 as days since the epoch


def big_name(rows: int, seed: int) -> str:
    return f"big_{rows}r_s{seed}_v{GEN_VERSION}.csv"


def wide_name(rows: int, cols: int, seed: int) -> str:
    return f"wide_{rows}r_{cols}c_s{seed}_v{GEN_VERSION}.csv"


def small_name(count: int, rows: int, seed: int) -> str:
    return f"small_{count}x{rows}r_s{seed}_v{GEN_VERSION}"


def meta(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


# --------------------------------------------------------------------------- generation
# (peers venv only: numpy and pyarrow are imported inside the functions)


def _rng(seed: int, chunk: int):
    import numpy as np

    return np.random.Generator(np.random.PCG64([seed, chunk]))


def _with_nulls(arr, rng, fraction: float):
    """``arr`` with about ``fraction`` of its values null (written as empty fields)."""
    import pyarrow as pa

    mask = rng.random(len(arr)) < fraction
    return pa.array(arr, mask=mask)


def _big_chunk(seed: int, chunk: int, start: int, n: int):
    """``n`` rows of the 8-column order table; ids start at ``start``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = _rng(seed, chunk)
    ids = np.arange(start, start + n, dtype=np.int64)
    customer = pc.binary_join_element_wise(
        "CUST", pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 1_000_000, n)), pa.string()), 6, "0"), ""
    )
    category = pa.array(np.array(CATEGORIES, dtype=object)[rng.integers(0, len(CATEGORIES), n)], pa.string())
    amount = _with_nulls(np.round(rng.gamma(2.0, 60.0, n), 2), rng, 0.02)
    quantity = _with_nulls(rng.integers(1, 50, n), rng, 0.05)
    order_date = pa.array((BASE_DAY + rng.integers(0, 1500, n)).astype(np.int32), pa.date32())
    is_member = _with_nulls(rng.random(n) < 0.4, rng, 0.03)
    note = pa.array(np.array(NOTES, dtype=object)[rng.integers(0, len(NOTES), n)], pa.string())
    table = pa.table(
        {
            "order_id": ids,
            "customer": customer,
            "category": category,
            "amount": amount,
            "quantity": quantity,
            "order_date": order_date,
            "is_member": is_member,
            "note": note,
        }
    )
    # Exact duplicates: the last rows of every block of DUP_EVERY copy a row before them.
    dup_rows = np.arange(DUP_EVERY - 1, n, DUP_EVERY)
    if len(dup_rows):
        take = np.arange(n)
        take[dup_rows] = dup_rows - 1 - rng.integers(0, DUP_EVERY - 1, len(dup_rows))
        table = table.take(pa.array(take))
    return table, len(dup_rows)


def _wide_chunk(seed: int, chunk: int, n: int, cols: int):
    """Five kinds of columns in turn: int, double, code string, ISO date, boolean."""
    import numpy as np
    import pyarrow as pa

    rng = _rng(seed, chunk)
    codes = np.array([f"k{i:02d}" for i in range(40)], dtype=object)
    arrays, names = [], []
    for c in range(cols):
        kind = c % 5
        if kind == 0:
            arr = _with_nulls(rng.integers(0, 10_000, n), rng, 0.01)
        elif kind == 1:
            arr = _with_nulls(np.round(rng.random(n) * 100, 2), rng, 0.01)
        elif kind == 2:
            arr = pa.array(codes[rng.integers(0, len(codes), n)], pa.string())
        elif kind == 3:
            arr = pa.array((BASE_DAY + rng.integers(0, 1500, n)).astype(np.int32), pa.date32())
        else:
            arr = pa.array(rng.random(n) < 0.5)
        arrays.append(arr)
        names.append(f"col_{c:03d}_{['int', 'num', 'code', 'day', 'flag'][kind]}")
    return pa.Table.from_arrays(arrays, names=names)


def _write_csv(path: Path, chunks) -> dict:
    """Write the tables from ``chunks`` (an iterator of (table, dups)) to ``path`` atomically."""
    import pyarrow.csv as pacsv

    tmp = path.with_name(path.name + ".part")
    rows = dups = 0
    writer = None
    try:
        with open(tmp, "wb") as fh:
            for table, chunk_dups in chunks:
                if writer is None:
                    writer = pacsv.CSVWriter(fh, table.schema)
                writer.write_table(table)
                rows += table.num_rows
                dups += chunk_dups
            if writer is not None:
                writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"rows": rows, "duplicates": dups, "bytes": path.stat().st_size}


def generate_big(path: Path, rows: int, seed: int) -> dict:
    def chunks():
        for i, start in enumerate(range(0, rows, CHUNK_ROWS)):
            yield _big_chunk(seed, i, start + 1, min(CHUNK_ROWS, rows - start))

    return {"kind": "big", "columns": 8, **_write_csv(path, chunks())}


def generate_wide(path: Path, rows: int, cols: int, seed: int) -> dict:
    step = max(1, 5_000_000 // cols)  # about 5M cells per chunk

    def chunks():
        for i, start in enumerate(range(0, rows, step)):
            yield _wide_chunk(seed, i, min(step, rows - start), cols), 0

    return {"kind": "wide", "columns": cols, **_write_csv(path, chunks())}


def generate_small(path: Path, count: int, rows: int, seed: int) -> dict:
    """``count`` CSV files of ``rows`` rows each (files 00000.csv ...) in directory ``path``."""
    import pyarrow.csv as pacsv

    tmp = path.with_name(path.name + ".part")
    if tmp.exists():
        for f in tmp.iterdir():
            f.unlink()
    tmp.mkdir(parents=True, exist_ok=True)
    per_chunk = max(1, CHUNK_ROWS // rows)
    for first in range(0, count, per_chunk):
        n_files = min(per_chunk, count - first)
        table, _ = _big_chunk(seed, first // per_chunk, first * rows + 1, n_files * rows)
        for k in range(n_files):
            part = table.slice(k * rows, rows)
            pacsv.write_csv(part, tmp / f"{first + k:05d}.csv")
    os.replace(tmp, path)
    size = sum(f.stat().st_size for f in path.iterdir())
    return {
        "kind": "small",
        "files": count,
        "rows": rows,
        "columns": 8,
        "duplicates_per_file": rows // DUP_EVERY,
        "bytes": size,
    }


# --------------------------------------------------------------------------- harness side


def ensure(kind: str, peers_python: str, *, rows: int, seed: int, cols: int = 500, count: int = 0) -> Path:
    """Path of the cached data set, generating it first (in the peers venv) when missing."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    name = {
        "big": lambda: big_name(rows, seed),
        "wide": lambda: wide_name(rows, cols, seed),
        "small": lambda: small_name(count, rows, seed),
    }[kind]()
    path = DATA_DIR / name
    sidecar = path.with_name(path.name + ".json")
    if path.exists() and sidecar.exists():
        return path
    print(f"bench: generating {name} ...", flush=True)
    started = time.monotonic()
    cmd = [
        peers_python,
        "-m",
        "bench.data",
        kind,
        "--out",
        str(path),
        "--rows",
        str(rows),
        "--seed",
        str(seed),
        "--cols",
        str(cols),
        "--count",
        str(count),
    ]
    subprocess.run(cmd, cwd=ROOT, check=True)
    print(f"bench: generated {name} in {time.monotonic() - started:.1f}s", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data")
    parser.add_argument("kind", choices=["big", "wide", "small"])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cols", type=int, default=500)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.kind == "big":
        info = generate_big(args.out, args.rows, args.seed)
    elif args.kind == "wide":
        info = generate_wide(args.out, args.rows, args.cols, args.seed)
    else:
        info = generate_small(args.out, args.count, args.rows, args.seed)
    info.update(seed=args.seed, generator_version=GEN_VERSION, generated_in_s=round(time.monotonic() - started, 2))
    args.out.with_name(args.out.name + ".json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
