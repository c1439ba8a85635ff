"""Goals, the Markdown table and the PNG chart of a benchmark's results.

``goals`` and ``markdown`` run in the harness (no third-party imports); the chart runs in
the peers venv, where matplotlib is: ``python -m bench.report chart RESULTS.json OUT.png``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.stats import lower_median

MiB = 2**20
PEER_TITLES = {
    "duckdb": "DuckDB CSV→Parquet",
    "floor": "DuckDB as text, then typed DISTINCT",
    "pandas": "pandas read_csv→to_parquet",
    "dlt": "dlt arrow→Delta",
}
FILE_TITLES = {"big": "big", "huge": "4× big", "wide": "wide"}


def _ratio(a, b):
    return a / b if a is not None and b else None


def _synced_s(ours: dict | None) -> float | None:
    if not ours or ours.get("status") != "synced":
        return None
    return ours.get("upload_to_synced_s") or ours.get("synced_seen_s")


# lakesync's time ÷ a peer's on the same file, in the same run: (file, lakesync's figure, peer, limit).
RATIO_GOALS = (
    ("big", "synced", "dlt", 0.75),
    ("big", "synced", "duckdb", 2.0),
    ("big", "201", "duckdb", 1.2),
    ("huge", "synced", "dlt", 1.0),
    ("wide", "synced", "dlt", 1.0),
)
FIGURE_TITLES = {"synced": "upload start → synced", "201": "upload → 201"}
PEER_GOAL_TITLES = {"dlt": "dlt's load", "duckdb": "the DuckDB single pass"}
# Small uploads, open loop.
SMALL_P50_MS, SMALL_P99_MS, SMALL_DRAIN_S, SMALL_WORKER_CPU_MS = 50, 250, 10, 40
MEMORY_LIMITS_MIB = {"worker": 1024, "api": 600}
ROLE_TITLES = {"worker": "worker", "api": "API"}
HUGE_MEMORY_GROWTH = 1.2


def _run_figure(run: dict, figure: str) -> float | None:
    """One run's figure: lakesync's time to synced or to 201, or a peer's seconds."""
    if figure == "synced":
        return _synced_s(run)
    if figure == "201":
        return run.get("upload_s") if run.get("upload_status") == 201 else None
    return None if "error" in run else run.get("seconds")


def per_round(run: dict | None, figure: str) -> dict[int, float | None]:
    """The figure of each repeated run, by round (a run without repeats is its own round 1)."""
    if not run:
        return {}
    repeats = run.get("repeats") or [run]
    return {rep.get("round", i + 1): _run_figure(rep, figure) for i, rep in enumerate(repeats)}


def ratio_goal(figure: str, peer: str, ours: dict | None, peers: dict) -> dict:
    """lakesync's median ÷ the peer's median over the repeated runs, and the ratio of each
    round (lakesync's run and the peer's run of the same round)."""
    mine, theirs = per_round(ours, figure), per_round((peers or {}).get(peer), "seconds")
    a, b = lower_median(list(mine.values())), lower_median(list(theirs.values()))
    rounds = [_ratio(mine[k], theirs[k]) for k in sorted(mine) if k in theirs]
    detail = _pair(a, b)
    if len(rounds) > 1:
        detail += "; per run " + " / ".join("–" if x is None else f"{x:.2f}" for x in rounds) + "×"
    return {"value": _ratio(a, b), "detail": detail, "per_run": rounds}


def goal(
    part: str, title: str, kind: str, value, limit: float, unit: str, detail: str = "", *, missed: bool = False, **extra
) -> dict:
    """One goal, passed when ``value <= limit`` (None: not measured), or missed whatever the value."""
    passed = False if missed else None if value is None else value <= limit
    return {
        "part": part,
        "goal": title,
        "kind": kind,
        "value": value,
        "limit": limit,
        "op": "<=",
        "unit": unit,
        "detail": detail,
        "passed": passed,
        **extra,
    }


def goals(r: dict) -> list[dict]:
    """Each goal: measured value, limit, passed (None when not measured)."""
    out: list[dict] = []
    ours, peers, data = r.get("ours", {}), r.get("peers", {}), r.get("data", {})
    for label, figure, peer, limit in RATIO_GOALS:
        o, p = ours.get(label), peers.get(label)
        if not o and not p:
            continue
        d = data.get(label) or {}
        name = f"{FILE_TITLES[label]} ({d.get('rows', 0):,} rows × {d.get('columns', '?')} cols)"
        measured = ratio_goal(figure, peer, o, p or {})
        out.append(
            goal(
                label,
                f"{name}: {FIGURE_TITLES[figure]} ≤ {limit:g}× {PEER_GOAL_TITLES[peer]}",
                "time",
                measured["value"],
                limit,
                "×",
                measured["detail"],
                per_run=measured["per_run"],
            )
        )
    big, huge = ours.get("big"), ours.get("huge")
    if big:
        mem = big.get("memory", {})
        for role, limit in MEMORY_LIMITS_MIB.items():
            peak = mem.get(f"{role}_peak_bytes", 0) / MiB or None
            out.append(
                goal("memory", f"big: {ROLE_TITLES[role]} peak RSS ≤ {_mib_limit(limit)}", "memory", peak, limit, "MiB")
            )
    if big and huge:
        for role in MEMORY_LIMITS_MIB:
            a, b = big.get("memory", {}).get(f"{role}_peak_bytes"), huge.get("memory", {}).get(f"{role}_peak_bytes")
            out.append(
                goal(
                    "memory",
                    f"4× file raises the {ROLE_TITLES[role]} peak by ≤ {round((HUGE_MEMORY_GROWTH - 1) * 100)}%",
                    "memory",
                    _ratio(b, a),
                    HUGE_MEMORY_GROWTH,
                    "×",
                    f"{b / MiB:.0f} vs {a / MiB:.0f} MiB" if a and b else "",
                )
            )
    small = ours.get("small")
    if small:
        out += small_goals(small)
    return out


def small_goals(small: dict) -> list[dict]:
    """Latency of uploads offered at a fixed rate, how soon after the last one every dataset
    was synced, and the worker's CPU per dataset."""
    lat = small.get("upload_latency_s", {})
    name = f"small ({small.get('rate', 0):g}/s open loop)"
    offered = f"offered {small.get('rate_achieved') or 0:.1f}/s, {small.get('failed_uploads', 0)} uploads failed"
    synced = f"{small.get('synced', 0)} of {small.get('offered', 0)} synced"
    drain = small.get("last_upload_to_synced_s")
    cpu = small.get("worker_cpu_per_dataset_s")
    return [
        goal(
            "small",
            f"{name}: upload p50 ≤ {SMALL_P50_MS} ms",
            "latency",
            _ms_of(lat.get("p50")),
            SMALL_P50_MS,
            "ms",
            offered,
        ),
        goal(
            "small",
            f"{name}: upload p99 ≤ {SMALL_P99_MS} ms",
            "latency",
            _ms_of(lat.get("p99")),
            SMALL_P99_MS,
            "ms",
            offered,
        ),
        goal(
            "small",
            f"{name}: every dataset synced ≤ {SMALL_DRAIN_S} s after the last upload",
            "latency",
            drain,
            SMALL_DRAIN_S,
            "s",
            synced,
            # A dataset that was refused or never synced misses this goal whatever the time.
            missed=bool(small.get("not_synced")),
        ),
        goal(
            "small",
            f"{name}: worker CPU per dataset ≤ {SMALL_WORKER_CPU_MS} ms",
            "cpu",
            _ms_of(cpu),
            SMALL_WORKER_CPU_MS,
            "ms",
        ),
    ]


def _ms_of(v):
    return None if v is None else v * 1000


def _mib_limit(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


def _pair(a, b) -> str:
    return f"{a:.1f} s vs {b:.1f} s" if a is not None and b is not None else ""


# --------------------------------------------------------------------------- Markdown


def _s(v, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f} s"


def _mib(v) -> str:
    return "–" if not v else f"{v / MiB:,.0f} MiB"


def _n(v) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _ms(v) -> str:
    return "–" if v is None else f"{v * 1000:,.0f} ms"


def markdown(r: dict) -> str:
    lines = _header(r) + _files_section(r) + _storage_section(r) + _small_section(r.get("ours", {}).get("small"))
    lines += _goals_section(r)
    for which, prof in (r.get("profiles") or {}).items():
        how = "a separate run" if prof.get("run") else "sampled during the measured run"
        lines += [f"py-spy profile ({which}, {how}): `{prof['file']}`.", ""]
    phases = r.get("phases") or {}
    if phases:
        lines += ["Phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()), ""]
    return "\n".join(lines)


def local_reference(r: dict, results_dir: Path) -> dict | None:
    """The newest run on local disk with the same rows, to compare an S3 run with."""
    rows = (r.get("settings") or {}).get("rows")
    best = None
    for path in results_dir.glob("*.json"):
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        settings = other.get("settings") if isinstance(other, dict) else None
        if not settings or settings.get("storage", "local") != "local" or settings.get("rows") != rows:
            continue
        if "big" in (other.get("ours") or {}) and (best is None or other["started_at"] > best["started_at"]):
            best = other
    return best


def reference_summary(ref: dict | None) -> dict | None:
    """What an S3 run keeps of the local run it is compared with."""
    if ref is None:
        return None
    keep = ("upload_s", "upload_to_synced_s", "synced_seen_s", "status", "memory")
    ours = {k: {f: v.get(f) for f in keep} for k, v in (ref.get("ours") or {}).items() if isinstance(v, dict)}
    return {"name": ref.get("name"), "started_at": ref.get("started_at"), "ours": ours}


def _storage_section(r: dict) -> list[str]:
    """On S3: each file's times beside the newest local run's of the same rows."""
    if (r.get("settings") or {}).get("storage") != "s3":
        return []
    ref = r.get("local_reference")
    if not ref:
        return ["## S3 ÷ local", "", "No run on local disk with the same rows to compare with.", ""]
    lines = [
        "## S3 ÷ local",
        "",
        f"Against the local run `{ref['name']}` ({ref['started_at']}), same rows.",
        "",
        "| file | → 201 S3 / local | ratio | → synced S3 / local | ratio | worker peak S3 / local |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for key, ours in (r.get("ours") or {}).items():
        local = (ref.get("ours") or {}).get(key)
        if key == "small" or not local:
            continue
        up, up_ref = ours.get("upload_s"), local.get("upload_s")
        done, done_ref = _synced_s(ours), _synced_s(local)
        peak = (ours.get("memory") or {}).get("worker_peak_bytes"), (local.get("memory") or {}).get("worker_peak_bytes")
        lines.append(
            f"| {key} | {_s(up)} / {_s(up_ref)} | {_x(_ratio(up, up_ref))} | {_s(done)} / {_s(done_ref)} "
            f"| {_x(_ratio(done, done_ref))} | {_mib(peak[0])} / {_mib(peak[1])} |"
        )
    return lines + [""]


def _x(v) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _header(r: dict) -> list[str]:
    """The machine, the run, how fast new memory came, and whether this is the full benchmark."""
    m = r.get("machine", {})
    s = r.get("settings", {})
    lines = [
        f"# lakesync benchmark {r.get('name', '')}",
        "",
        f"{m.get('cpu_model', '?')}, {m.get('cores')} cores, {m.get('memory_bytes', 0) / 2**30:.0f} GiB; "
        f"Python {m.get('python')}; commit {str(m.get('git_commit'))[:10]}; run {r.get('started_at')}, "
        f"{r.get('duration_s', 0) / 60:.1f} min; load average at start "
        f"{', '.join(f'{x:.1f}' for x in m.get('loadavg_at_start') or [])}.",
        "",
    ]
    probes = [p for p in (m.get("new_memory", {}).get(k) for k in ("start", "end")) if p]
    if probes:
        touch = " / ".join(f"{p['touch_ms_per_gib']:,.0f}" for p in probes)
        write = " / ".join(f"{p['new_file_mb_per_s']:,.0f}" for p in probes)
        when = "the start and the end" if len(probes) > 1 else "the start"
        lines += [
            f"New memory, at {when} of the run: first touch {touch} ms per GiB; a new file written "
            f"into the page cache at {write} MB/s (every upload and every step grows into new memory: "
            "see bench/README.md).",
            "",
        ]
    if not s.get("full"):
        lines += [
            "**Not the full benchmark** (scaled down or partial): "
            f"rows={s.get('rows'):,}, skip_huge={s.get('skip_huge')}, only={s.get('only') or 'all'}, "
            f"repeat={s.get('repeat')}"
            + (
                f", small uploads {s.get('small_rate')}/s for {s.get('small_seconds')} s."
                if "small" in (s.get("parts") or ["small"])
                else "."
            ),
            "",
        ]
    return lines


def _files_section(r: dict) -> list[str]:
    """The big, 4x and wide files: lakesync against the peers, and where lakesync's time went."""
    ours, peers = r.get("ours", {}), r.get("peers", {})
    file_labels = [k for k in ("big", "huge", "wide") if k in ours or k in peers]
    if not file_labels:
        return []
    lines = _files_table(file_labels, ours, peers, r.get("data", {}))
    lines += _repeats(file_labels, ours, peers, r.get("settings", {}).get("repeat"))
    for label in file_labels:
        o = ours.get(label)
        if o and o.get("status") != "synced":
            why = str(o.get("last_error") or o.get("error") or o.get("status")).strip().splitlines()[0]
            lines += [f"lakesync did not sync the {FILE_TITLES[label]} file: {why[:300]}", ""]
    lines += _time_table([k for k in file_labels if k in ours], ours)
    dlt_rows = [(k, (peers.get(k) or {}).get("dlt", {}).get("stages")) for k in file_labels]
    dlt_rows = [(k, st) for k, st in dlt_rows if st]
    if dlt_rows:
        lines += [
            "dlt's own stages: "
            + "; ".join(
                f"{FILE_TITLES[k]}: extract {st['extract']:.1f} s, normalize {st['normalize']:.1f} s, "
                f"load {st['load']:.1f} s"
                for k, st in dlt_rows
            ),
            "",
        ]
    return lines


def _files_table(file_labels: list[str], ours: dict, peers: dict, data: dict) -> list[str]:
    lines = [
        "## Files: lakesync vs single-pass peers",
        "",
        "lakesync: from the start of the HTTP upload to `201` and to `synced` (bronze + silver + metadata); "
        "peers: one process each, imports excluded. Peak RSS: max `VmHWM` of any one process of the role.",
        "",
        "| file | tool | upload → 201 | → synced / total | rows/s | peak RSS | lakesync ÷ tool |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for label in file_labels:
        d = data.get(label, {})
        title = (
            f"{FILE_TITLES[label]}: {d.get('rows', 0):,} rows × {d.get('columns', '?')} cols, "
            f"{d.get('bytes', 0) / 1e6:,.0f} MB"
        )
        o = ours.get(label)
        synced = _synced_s(o)
        if o:
            mem = o.get("memory", {})
            status = "" if o.get("status") == "synced" else f" ({o.get('status') or o.get('upload_status')})"
            lines.append(
                f"| {title} | **lakesync**{status} | {_s(o.get('upload_s'))} | {_s(synced)} | "
                f"{_n(o.get('rows_per_s_synced'))} | API {_mib(mem.get('api_peak_bytes'))}, worker "
                f"{_mib(mem.get('worker_peak_bytes'))} | |"
            )
            title = ""
        for tool in PEER_TITLES:
            p = (peers.get(label) or {}).get(tool)
            if not p:
                continue
            if "error" in p:
                lines.append(f"| {title} | {PEER_TITLES[tool]} | | failed | | | |")
            else:
                ratio = _ratio(synced, p["seconds"])
                lines.append(
                    f"| {title} | {PEER_TITLES[tool]} | | {_s(p['seconds'])} | "
                    f"{_n(p['rows'] / p['seconds'])} | {_mib(p['peak_rss_bytes'])} | "
                    f"{_x(ratio)} |"
                )
            title = ""
    lines.append("")
    return lines


def _repeats(file_labels: list[str], ours: dict, peers: dict, repeat) -> list[str]:
    """Every run of each file, in order, when there was more than one."""
    spread = []
    for label in file_labels:
        parts = []
        o = ours.get(label) or {}
        if len(o.get("repeats") or []) > 1:
            parts.append("lakesync → 201 " + " / ".join(_s(x.get("upload_s")) for x in o["repeats"]))
            parts.append("lakesync → synced " + " / ".join(_s(x.get("upload_to_synced_s")) for x in o["repeats"]))
        for tool in PEER_TITLES:
            p = (peers.get(label) or {}).get(tool) or {}
            if len(p.get("repeats") or []) > 1:
                parts.append(f"{PEER_TITLES[tool]} " + " / ".join(_s(x.get("seconds")) for x in p["repeats"]))
        if parts:
            spread.append(f"- {FILE_TITLES[label]}: " + "; ".join(parts))
    if not spread:
        return []
    return (
        [
            f"Each figure is the median of {repeat} runs, lakesync's and the peers' interleaved (every run, in order):",
            "",
        ]
        + spread
        + [""]
    )


def _time_table(ours_files: list[str], ours: dict) -> list[str]:
    """lakesync's steps per file, from the sync run's timestamps."""
    if not ours_files:
        return []
    lines = [
        "### Where lakesync's time goes",
        "",
        "queue: `201` → bronze starts; gaps: one step's end → the next one's start "
        "(server timestamps of the sync run). CPU: seconds used by each role's processes, start-up "
        "included. Load: the machine's 1-minute load average when the scenario ended.",
        "",
        "| file | upload → 201 | queue | bronze | gap | silver | gap | metadata | → synced | "
        "API CPU | worker CPU | rows ok | load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for label in ours_files:
        o = ours[label]
        mem = o.get("memory", {})
        ok = (o.get("checks") or {}).get("ok")
        lines.append(
            f"| {FILE_TITLES[label]} | {_s(o.get('upload_s'))} | {_s(o.get('queue_s'), 2)} | "
            f"{_s(o.get('bronze_s'))} | {_s(o.get('gap_bronze_silver_s'), 2)} | "
            f"{_s(o.get('silver_s'))} | {_s(o.get('gap_silver_metadata_s'), 2)} | "
            f"{_s(o.get('metadata_s'), 2)} | {_s(_synced_s(o))} | "
            f"{_s(mem.get('api_cpu_s'))} | {_s(mem.get('worker_cpu_s'))} | "
            f"{'yes' if ok else 'no' if ok is False else '–'} | {_load(o)} |"
        )
    lines.append("")
    return lines


def _small_section(small: dict | None) -> list[str]:
    if not small:
        return []
    lat, wait, mem = small.get("upload_latency_s", {}), small.get("connection_wait_s", {}), small.get("memory", {})
    return [
        f"## Many small datasets, open loop: {small.get('offered')} uploads of {small.get('rows_per_file')} rows "
        f"offered at {small.get('rate', 0):g}/s over {small.get('connections')} connections",
        "",
        "Upload k is sent at t0 + k / rate whatever became of the earlier ones; its latency runs from that "
        "time, so a wait for a free connection counts. Last synced: the last dataset's sync run finished, "
        "after the last upload's answer. CPU: seconds the role's processes used from the first upload to the "
        "last sync, ÷ datasets.",
        "",
        "| offered | upload p50 | p95 | p99 | max | failed uploads | last upload → last synced | not synced | "
        "worker CPU / dataset | API CPU / upload | API peak | worker peak | load |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {small.get('rate_achieved') or 0:.1f}/s | {_ms(lat.get('p50'))} | {_ms(lat.get('p95'))} | "
        f"{_ms(lat.get('p99'))} | {_ms(lat.get('max'))} | {small.get('failed_uploads')} | "
        f"{_s(small.get('last_upload_to_synced_s'))} | {small.get('not_synced')} | "
        f"{_ms(small.get('worker_cpu_per_dataset_s'))} | {_ms(small.get('api_cpu_per_dataset_s'))} | "
        f"{_mib(mem.get('api_peak_bytes'))} | {_mib(mem.get('worker_peak_bytes'))} | {_load(small)} |",
        "",
        f"Wait for a free connection: p50 {_ms(wait.get('p50'))}, p99 {_ms(wait.get('p99'))}, max "
        f"{_ms(wait.get('max'))}. All synced {_s(small.get('all_synced_s'))} after the first upload was due; "
        f"{small.get('synced_per_s_sustained') or 0:.1f} synced/s between the 10th and 90th percentile "
        f"completions; {small.get('failed')} failed.",
        "",
        "Per dataset (p50 / p95 / max):",
        "",
        "| queue (run created → bronze) | bronze → silver gap | silver → metadata gap | chain overhead | "
        "bronze | silver | metadata | upload due → synced |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| "
        + " | ".join(
            _trio(small.get(k, {}))
            for k in (
                "queue_from_run_created_s",
                "gap_bronze_silver_s",
                "gap_silver_metadata_s",
                "chain_overhead_s",
                "bronze_s",
                "silver_s",
                "metadata_s",
                "upload_to_synced_s",
            )
        )
        + " |",
        "",
    ]


def _goals_section(r: dict) -> list[str]:
    gl = r.get("goals") or []
    if not gl:
        return []
    lines = [
        "## Goals",
        "",
        "Ratios are of lakesync's median to the peer's median over the repeated runs of this benchmark "
        "(each round's own ratio follows, in order).",
        "",
        "| goal | measured | target | result |",
        "| --- | ---: | ---: | --- |",
    ]
    for g in gl:
        value = "not measured" if g["value"] is None else f"{g['value']:,.2f} {g['unit']}"
        if g.get("detail"):
            value += f" ({g['detail']})"
        result = {True: "pass", False: "**FAIL**", None: "–"}[g["passed"]]
        lines.append(f"| {g['goal']} | {value} | {g['op']} {g['limit']:g} {g['unit']} | {result} |")
    lines.append("")
    return lines + _floor_lines(r.get("peers", {}))


def _floor_lines(peers: dict) -> list[str]:
    """The work lakesync's rules ask for, done by DuckDB alone (the ``floor`` peer), in the
    units of the ratio goals: what any implementation of those rules starts from."""
    out = []
    for label, tools in peers.items():
        floor, single, dlt = (tools.get(t) or {} for t in ("floor", "duckdb", "dlt"))
        stages = floor.get("stages")
        if not stages or not single.get("seconds"):
            continue
        land, total = stages["land_as_text"], floor["seconds"]
        text = (
            f"- {FILE_TITLES[label]}: every value landed as text {_s(land)} = {_x(land / single['seconds'])} "
            f"the single pass; then typed with duplicates removed, {_s(total)} in all = "
            f"{_x(total / single['seconds'])} the single pass"
        )
        if dlt.get("seconds"):
            text += f", {_x(total / dlt['seconds'])} dlt's load"
        out.append(text)
    if not out:
        return []
    return [
        "The same work by DuckDB alone, in one process with no HTTP, queue, checks or table commits "
        f"({PEER_TITLES['floor']}; medians):",
        "",
        *out,
        "",
    ]


def _load(o: dict) -> str:
    load = o.get("loadavg_after")
    return f"{load[0]:.1f}" if load else "–"


def _trio(d: dict) -> str:
    if not d or not d.get("n"):
        return "–"
    return f"{d['p50'] * 1000:,.0f} / {d['p95'] * 1000:,.0f} / {d['max'] * 1000:,.0f} ms"


# --------------------------------------------------------------------------- chart


def chart(results_path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = json.loads(Path(results_path).read_text())
    ours, peers, data = r.get("ours", {}), r.get("peers", {}), r.get("data", {})
    labels = [k for k in ("big", "huge", "wide") if k in ours or k in peers]
    small = ours.get("small")
    nrows = len(labels) + (1 if small else 0)
    if not nrows:
        return
    fig, axes = plt.subplots(nrows, 2, figsize=(13, 3.2 * nrows + 0.6), squeeze=False)
    stage_colors = {
        "upload → 201": "#1f77b4",
        "queue + gaps": "#c7c7c7",
        "bronze": "#ff7f0e",
        "silver": "#2ca02c",
        "metadata": "#9467bd",
    }
    peer_colors = {"duckdb": "#8c564b", "floor": "#bcbd22", "pandas": "#e377c2", "dlt": "#17becf"}
    for row, label in enumerate(labels):
        d = data.get(label, {})
        title = (
            f"{FILE_TITLES[label]}: {d.get('rows', 0):,} rows × {d.get('columns')} cols, "
            f"{d.get('bytes', 0) / 1e6:,.0f} MB"
        )
        ax_t, ax_m = axes[row]
        names, o = [], ours.get(label)
        y = 0
        if o and o.get("status") == "synced":
            gaps = sum(v or 0 for v in (o.get("queue_s"), o.get("gap_bronze_silver_s"), o.get("gap_silver_metadata_s")))
            parts = {
                "upload → 201": o.get("upload_s"),
                "queue + gaps": gaps,
                "bronze": o.get("bronze_s"),
                "silver": o.get("silver_s"),
                "metadata": o.get("metadata_s"),
            }
            left = 0.0
            for part, value in parts.items():
                value = max(value or 0, 0)
                ax_t.barh(y, value, left=left, color=stage_colors[part], label=part if row == 0 else None)
                left += value
            ax_t.text(left, y, f" {left:.1f} s", va="center", fontsize=8)
            names.append("lakesync")
            y += 1
        elif o:
            # Not synced: show how far it got instead of leaving the row out.
            reached = o.get("upload_to_synced_s") or o.get("synced_seen_s") or o.get("upload_s") or 0
            ax_t.barh(y, reached, color="#d62728", hatch="//", alpha=0.6)
            what = o.get("last_error") or o.get("error") or o.get("status") or "failed"
            ax_t.text(
                0,
                y,
                f" {o.get('status') or 'failed'} after {reached:.1f} s: {str(what)[:45]}",
                va="center",
                ha="left",
                fontsize=7,
                color="black",
                clip_on=True,
                bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0},
            )
            names.append("lakesync")
            y += 1
        for tool in PEER_TITLES:
            p = (peers.get(label) or {}).get(tool)
            if p and "seconds" in p:
                ax_t.barh(y, p["seconds"], color=peer_colors[tool])
                ax_t.text(p["seconds"], y, f" {p['seconds']:.1f} s", va="center", fontsize=8)
                names.append(PEER_TITLES[tool])
                y += 1
        ax_t.set_yticks(range(len(names)), names, fontsize=8)
        ax_t.invert_yaxis()
        ax_t.set_xlabel("seconds")
        ax_t.set_title(f"{title}: time", fontsize=9)
        ax_t.margins(x=0.15)
        mem_names, mem_vals, mem_cols = [], [], []
        if o and o.get("memory"):
            for role, color in (("api", "#1f77b4"), ("worker", "#ff7f0e")):
                mem_names.append(f"lakesync {role}")
                mem_vals.append(o["memory"].get(f"{role}_peak_bytes", 0) / MiB)
                mem_cols.append(color)
        for tool in PEER_TITLES:
            p = (peers.get(label) or {}).get(tool)
            if p and "peak_rss_bytes" in p:
                mem_names.append(PEER_TITLES[tool])
                mem_vals.append(p["peak_rss_bytes"] / MiB)
                mem_cols.append(peer_colors[tool])
        ax_m.barh(range(len(mem_vals)), mem_vals, color=mem_cols)
        for i, v in enumerate(mem_vals):
            ax_m.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
        ax_m.set_yticks(range(len(mem_names)), mem_names, fontsize=8)
        ax_m.invert_yaxis()
        ax_m.set_xlabel("peak RSS, MiB (max over one role's processes)")
        ax_m.set_title(f"{title}: memory", fontsize=9)
        ax_m.margins(x=0.15)
    if small:
        ax_l, ax_s = axes[-1]
        lat = small.get("upload_latency_s", {})
        keys = ["p50", "p95", "p99", "max"]
        vals = [(lat.get(k) or 0) * 1000 for k in keys]
        ax_l.bar(keys, vals, color="#1f77b4")
        for x, v in enumerate(vals):
            ax_l.text(x, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
        ax_l.axhline(SMALL_P99_MS, color="red", ls="--", lw=1, label=f"p99 goal {SMALL_P99_MS} ms")
        ax_l.axhline(SMALL_P50_MS, color="orange", ls="--", lw=1, label=f"p50 goal {SMALL_P50_MS} ms")
        ax_l.set_ylabel("ms")
        ax_l.legend(fontsize=7)
        ax_l.set_title(
            f"{small.get('offered')} small uploads offered at {small.get('rate', 0):g}/s: latency from the due time",
            fontsize=9,
        )
        answered = sorted(u[3] for u in small.get("uploads") or [] if u[4] == 201)
        if answered:
            ax_s.plot(answered, range(1, len(answered) + 1), color="#1f77b4", label="uploads answered 201")
            ax_s.axvline(answered[-1] + SMALL_DRAIN_S, color="red", ls="--", lw=1, label="goal: all synced by")
        series = small.get("synced_series") or []
        if series:
            ax_s.plot([t for t, _, _ in series], [n for _, n, _ in series], color="#2ca02c", label="synced")
        ax_s.set_xlabel("seconds since the first upload was due")
        ax_s.set_ylabel("datasets")
        ax_s.legend(fontsize=7)
        ax_s.set_title(
            f"last synced {_s(small.get('last_upload_to_synced_s'))} after the last upload (goal ≤ {SMALL_DRAIN_S} s)",
            fontsize=9,
        )
    fig.suptitle(f"lakesync vs peers — {r.get('name', '')}", y=0.995, fontsize=11)
    top = 1 - (0.6 if labels else 0.3) / fig.get_figheight()
    # The stages' legend, when there are file rows (the small row has legends of its own).
    handles, names = axes[0][0].get_legend_handles_labels() if labels else ([], [])
    if handles:
        fig.legend(
            handles,
            names,
            loc="upper center",
            ncol=len(names),
            fontsize=8,
            bbox_to_anchor=(0.5, 1 - 0.3 / fig.get_figheight()),
            frameon=False,
        )
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(out, dpi=110)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "chart":
        chart(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) == 2 and argv[0] == "markdown":
        print(markdown(json.loads(Path(argv[1]).read_text())))
        return 0
    print("usage: python -m bench.report chart RESULTS.json OUT.png | markdown RESULTS.json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
