"""The peers: one load of a CSV file per process, run inside the peers venv (bench/.venv).

    python -m bench.peers duckdb|floor|pandas|dlt CSV WORKDIR   # prints one JSON line
    python -m bench.peers versions                        # package versions, one JSON line

Each run times its own work (imports excluded) and reports its peak RSS; the harness
also takes the peak from wait4() of the process, and keeps the larger of the two.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

# A pyarrow CSV block per yielded batch for dlt: about 200k rows of the big file. Small
# blocks only add dlt's per-item overhead; this keeps it out of the comparison.
DLT_BLOCK_BYTES = 16 << 20


def _duckdb(csv: Path, work: Path) -> dict:
    import duckdb

    out = work / "duckdb.parquet"
    con = duckdb.connect()
    started = time.perf_counter()
    query = f"COPY (SELECT * FROM read_csv(?)) TO {_literal(out)} (FORMAT parquet)"
    rows = con.execute(query, [str(csv)]).fetchone()[0]
    seconds = time.perf_counter() - started
    return {
        "rows": int(rows),
        "seconds": seconds,
        "output_bytes": out.stat().st_size,
        "settings": {
            "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
            "memory_limit": con.execute("SELECT current_setting('memory_limit')").fetchone()[0],
        },
    }


def _floor(csv: Path, work: Path) -> dict:
    """What lakesync's rules ask of a load, done by DuckDB alone in one process: every value
    landed as text (bronze keeps each source value exactly), then that file typed with exact
    duplicate rows removed (silver). No HTTP, queue, null tokens, checks or table commits."""
    import duckdb

    landed, out = work / "landed.parquet", work / "typed.parquet"
    con = duckdb.connect()
    started = time.perf_counter()
    rows = con.execute(
        f"COPY (SELECT * FROM read_csv(?, all_varchar=true)) TO {_literal(landed)} (FORMAT parquet)", [str(csv)]
    ).fetchone()[0]
    land_s = time.perf_counter() - started
    # DuckDB's own sniffer picks the types, from a sample as in the single pass.
    columns = con.execute("DESCRIBE SELECT * FROM read_csv(?)", [str(csv)]).fetchall()
    casts = ", ".join(f'TRY_CAST("{name}" AS {kind}) AS "{name}"' for name, kind, *_ in columns)
    distinct = con.execute(
        f"COPY (SELECT DISTINCT * FROM (SELECT {casts} FROM read_parquet({_literal(landed)}))) "
        f"TO {_literal(out)} (FORMAT parquet)"
    ).fetchone()[0]
    seconds = time.perf_counter() - started
    return {
        "rows": int(rows),
        "distinct_rows": int(distinct),
        "seconds": seconds,
        "output_bytes": landed.stat().st_size + out.stat().st_size,
        "stages": {"land_as_text": land_s, "typed_distinct": seconds - land_s},
    }


def _literal(path: Path) -> str:
    return "'{}'".format(str(path).replace("'", "''"))


def _pandas(csv: Path, work: Path) -> dict:
    import pandas as pd

    out = work / "pandas.parquet"
    started = time.perf_counter()
    df = pd.read_csv(csv)
    read_s = time.perf_counter() - started
    df.to_parquet(out)
    seconds = time.perf_counter() - started
    return {
        "rows": len(df),
        "seconds": seconds,
        "output_bytes": out.stat().st_size,
        "stages": {"read_csv": read_s, "to_parquet": seconds - read_s},
    }


def _dlt(csv: Path, work: Path) -> dict:
    # No telemetry and no config lookups outside the work dir.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.chdir(work)
    import dlt
    import pyarrow.csv as pacsv
    from dlt.destinations import filesystem

    @dlt.resource(name="bench", table_format="delta", write_disposition="replace")
    def batches():
        reader = pacsv.open_csv(csv, read_options=pacsv.ReadOptions(block_size=DLT_BLOCK_BYTES))
        yield from reader

    lake = work / "dlt_lake"
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        destination=filesystem(bucket_url=str(lake)),
        dataset_name="bench",
        pipelines_dir=str(work / "dlt_pipelines"),
    )
    stages = {}
    started = time.perf_counter()
    pipeline.extract(batches())
    stages["extract"] = time.perf_counter() - started
    pipeline.normalize()
    stages["normalize"] = time.perf_counter() - stages["extract"] - started
    pipeline.load()
    seconds = time.perf_counter() - started
    stages["load"] = seconds - stages["extract"] - stages["normalize"]

    from deltalake import DeltaTable

    table = DeltaTable(str(lake / "bench" / "bench"))
    rows = sum(a.num_rows for a in table.to_pyarrow_dataset().to_batches(columns=[]))
    size = sum(f.stat().st_size for f in (lake / "bench" / "bench").rglob("*.parquet"))
    return {
        "rows": rows,
        "seconds": seconds,
        "output_bytes": size,
        "stages": stages,
        "settings": {"block_size": DLT_BLOCK_BYTES, "table_format": "delta"},
    }


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("duckdb", "pandas", "pyarrow", "numpy", "dlt", "deltalake", "matplotlib", "psutil", "py-spy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["versions"]:
        print(json.dumps(versions()))
        return 0
    tool, csv, work = argv[0], Path(argv[1]).resolve(), Path(argv[2]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    result = {"duckdb": _duckdb, "floor": _floor, "pandas": _pandas, "dlt": _dlt}[tool](csv, work)
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result.update(tool=tool, peak_rss_bytes=max(self_kb, children_kb) * 1024)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
