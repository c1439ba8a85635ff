"""Small, focused measurements that count CPU time as well as wall time, for a machine shared
with other work: process CPU seconds do not grow when another process takes the cores.

    python -m bench.micro upload [--rows N]     # upload -> 201 of one generated CSV, raw body vs multipart
    python -m bench.micro steps [--count N]     # CPU per small dataset of the three sync steps, in-process

Figures go to stdout as JSON lines and a short table; bench/README.md keeps the ones quoted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
PNG = b"\x89PNG\r\n\x1a\n"


def _emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


# --------------------------------------------------------------------------- data


def rows_sql(start: int, rows: int) -> str:
    """SELECT of rows [start, start + rows) of the generated table."""
    return f"""
        SELECT CASE WHEN i % 1000 = 7 THEN i - 1 ELSE i END AS id,
               'customer_' || (hash(i) % 50000)::VARCHAR AS customer,
               round((hash(i * 3) % 1000000) / 100.0, 2) AS amount,
               DATE '2020-01-01' + (hash(i * 5) % 1500)::INTEGER AS day,
               CASE WHEN hash(i * 7) % 2 = 0 THEN 'true' ELSE 'false' END AS flag,
               CASE WHEN hash(i * 11) % 20 = 0 THEN 'NULL' ELSE (hash(i * 11) % 500)::VARCHAR END AS qty,
               ['Oslo', 'Lima', 'Pune', 'Kyiv', 'Graz', ''][1 + (hash(i * 13) % 6)::INTEGER] AS city,
               CASE WHEN hash(i * 17) % 10 = 0 THEN 'N/A' ELSE md5(i::VARCHAR)[:12] END AS note
        FROM range({start}, {start + rows}) t(i)"""


def small_csvs(count: int, rows: int) -> list[bytes]:
    """``count`` CSV files of ``rows`` rows each, as bytes."""
    import duckdb

    con = duckdb.connect()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(count):
            path = Path(tmp) / f"{k}.csv"
            con.execute(f"COPY ({rows_sql(k * rows, rows)}) TO '{path}' (HEADER, DELIMITER ',')")
            out.append(path.read_bytes())
    con.close()
    return out


def generated_csv(rows: int) -> Path:
    """A CSV of ``rows`` rows x 8 columns like the benchmark's big file (ints, strings, doubles,
    dates, booleans, empty values and null tokens, 0.1% repeated rows), written by DuckDB and
    cached in bench/data/."""
    import duckdb

    path = DATA / f"micro-{rows}.csv"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    con = duckdb.connect()
    con.execute(f"COPY ({rows_sql(0, rows)}) TO '{tmp}' (HEADER, DELIMITER ',')")
    con.close()
    tmp.rename(path)
    return path


# --------------------------------------------------------------------------- upload


def _tree_cpu(pid: int) -> float:
    from bench.stack import _cpu_s, process_tree

    return sum(_cpu_s(p) for p in process_tree(pid))


def upload(args: argparse.Namespace) -> None:
    """One CSV uploaded as multipart and as a raw body to the Procfile's gunicorn, each run
    settled first (page cache written out, input read once); the API's CPU seconds are read
    from /proc before and after each upload."""
    from bench.client import Api
    from bench.machine import settle_disk
    from bench.stack import BenchStack
    from devstack.net import free_port

    csv = generated_csv(args.rows)
    size_mb = csv.stat().st_size / 1e6
    with tempfile.TemporaryDirectory(prefix="lakesync-micro-") as tmp:
        stack = BenchStack(Path(tmp), {"AUTO_SYNC": "false", "WORKER_METRICS_PORT": str(free_port())})
        try:
            stack.start_servers()
            stack.start_app("upload")
            api = Api(stack.base, stack.key)
            # Warm both kinds of upload: a process's first large body pays for memory it never had.
            for raw in ("text/csv", None):
                api.upload_file(csv, raw=raw, params={"name": "warm"}, prefix=PNG)
            # A body that starts like a PNG image is refused (415) once it has arrived: what
            # receiving it costs, apart from the conversion.
            phases = (("receive", PNG, 415), ("to_201", b"", 201))
            for phase, prefix, expect in [p for p in phases if p[0] in args.phases.split(",")]:
                for i, how in enumerate(["raw", "multipart"] * args.repeat):
                    settle_disk(csv)
                    cpu0 = _tree_cpu(stack.procs["api"].pid)
                    response, started, answered = api.upload_file(
                        csv, raw="text/csv" if how == "raw" else None, params={"name": "micro"}, prefix=prefix
                    )
                    time.sleep(1.0)  # the spooled body is removed after the response: count that too
                    cpu = _tree_cpu(stack.procs["api"].pid) - cpu0
                    body = response.json()
                    if response.status_code != expect:
                        raise RuntimeError(f"{how} upload answered {response.status_code}: {body}")
                    _emit(
                        {
                            "bench": "upload",
                            "phase": phase,
                            "how": how,
                            "run": i // 2 + 1,
                            "mb": round(size_mb, 1),
                            "wall_s": round(answered - started, 3),
                            "api_cpu_s": round(cpu, 3),
                            "load1": os.getloadavg()[0],
                        }
                    )
                    if expect == 201:
                        api.session.delete(f"{stack.base}/api/v1/datasets/{body['id']}", timeout=120)
        finally:
            stack.shutdown()


# --------------------------------------------------------------------------- steps


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def steps(args: argparse.Namespace) -> None:
    """The three steps of ``--count`` small datasets run one after another in this process (the
    worker's code without Celery), on embedded PostgreSQL and Redis and the default Delta
    target; CPU seconds of this process (all its threads) per step, after ``--warmup``
    datasets. ``--profile FILE`` writes a cProfile of the measured steps."""
    import cProfile
    import pstats

    from bench.stack import BenchStack
    from service import create_app
    from service.config import from_env
    from service.models import Dataset
    from service.sync import STEPS

    files = small_csvs(args.count + args.warmup, args.rows)
    with tempfile.TemporaryDirectory(prefix="lakesync-micro-") as tmp:
        stack = BenchStack(Path(tmp))
        try:
            stack.start_servers()
            app = create_app({**from_env(stack.env), "TESTING": True})
            client = app.test_client()
            auth = {"Authorization": f"Bearer {stack.key}"}
            ids = []
            for k, content in enumerate(files):
                response = client.post(
                    f"/api/v1/datasets?name=small{k}", data=content, headers={**auth, "Content-Type": "text/csv"}
                )
                assert response.status_code == 201, response.get_data(as_text=True)
                ids.append(response.get_json()["id"])
            # CPU time of the whole process (DuckDB's threads too) charged to the calling function.
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            per_step: dict[str, list[float]] = {"bronze": [], "silver": [], "metadata": []}
            with app.app_context():
                from service.db import session_scope

                with session_scope() as session:
                    runs = {str(d.id): d.current_run_id for d in session.query(Dataset).all()}
                for k, dataset_id in enumerate(ids):
                    measured = k >= args.warmup
                    for step, fn in STEPS.items():
                        if measured and profiler:
                            profiler.enable()
                        cpu0 = time.process_time()
                        result = fn(uuid.UUID(dataset_id), runs[dataset_id])
                        cpu = time.process_time() - cpu0
                        if measured and profiler:
                            profiler.disable()
                        assert not result.get("skipped"), result
                        if measured:
                            per_step[step].append(cpu * 1000)
            total = [sum(v) for v in zip(*per_step.values(), strict=True)]
            record = {
                "bench": "steps",
                "datasets": args.count,
                "rows": args.rows,
                **{f"{step}_cpu_ms": round(_median(v), 1) for step, v in per_step.items()},
                "dataset_cpu_ms": round(_median(total), 1),
                "dataset_cpu_ms_p10_p90": [
                    round(sorted(total)[len(total) // 10], 1),
                    round(sorted(total)[len(total) * 9 // 10], 1),
                ],
                "load1": os.getloadavg()[0],
            }
            _emit(record)
            if profiler:
                with open(args.profile, "w") as fh:
                    pstats.Stats(profiler, stream=fh).sort_stats("cumulative").print_stats(60)
                    pstats.Stats(profiler, stream=fh).sort_stats("tottime").print_stats(40)
        finally:
            stack.shutdown()


# --------------------------------------------------------------------------- entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", help="upload -> 201: raw body vs multipart")
    up.add_argument("--rows", type=int, default=4_700_000)
    up.add_argument("--repeat", type=int, default=1)
    up.add_argument("--phases", default="receive,to_201", help="receive (refused once arrived), to_201, or both")
    st = sub.add_parser("steps", help="CPU per small dataset of the three sync steps")
    st.add_argument("--count", type=int, default=60)
    st.add_argument("--warmup", type=int, default=5)
    st.add_argument("--rows", type=int, default=1000)
    st.add_argument("--profile", default=None, help="write a cProfile summary of the measured steps here")
    args = parser.parse_args(argv)
    {"upload": upload, "steps": steps}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
