"""py-spy profiles of the stack during a scenario, and their text summaries."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.log import log, seconds
from bench.settings import PEERS_VENV, RESULTS, ROOT
from bench.stack import BenchStack

# Low enough that py-spy itself takes little of the two cores from the stack it samples.
PROFILE_RATE = 25
# The wide file's upload takes minutes, too long to run twice: it is sampled during the
# measured run itself, at a rate that costs the stack next to nothing.
WIDE_PROFILE_RATE = 5

Spies = list[tuple[str, subprocess.Popen, Path]]


def start_profilers(stack: BenchStack, out_dir: Path, rate: int = PROFILE_RATE) -> Spies:
    spy = PEERS_VENV / "bin" / "py-spy"
    if not spy.exists():
        log("py-spy is not installed in bench/.venv; no profile")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for role, proc in stack.procs.items():
        raw = out_dir / f"{role}.folded"
        # --nonblocking: the processes are never paused, so the profile barely slows them.
        # --idle: a thread waiting on DuckDB's native threads or on PostgreSQL is still where
        # the request's time goes; the summary keeps only stacks inside the project's code.
        cmd = [
            str(spy),
            "record",
            "--pid",
            str(proc.pid),
            "--subprocesses",
            "--nonblocking",
            "--idle",
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(raw),
        ]
        spies.append((role, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), raw))
    time.sleep(1.0)  # py-spy attaches before the upload starts
    return spies


def stop_profilers(spies: Spies) -> dict[str, str]:
    """Stop every py-spy; per role, the path of its folded output or why there is none."""
    out = {}
    for role, proc, raw in spies:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        out[role] = str(raw) if raw.exists() else f"(no profile: {err.strip()[-300:]})"
    return out


def _project_frame(frame: str) -> bool:
    return "(service/" in frame or "(tasks/" in frame


@dataclass
class FoldedCounts:
    """Samples of a folded profile whose stacks reach the project's code, cut to start there."""

    total: int = 0
    all_samples: int = 0
    per_process: dict[str, int] = field(default_factory=dict)
    leaf: dict[str, int] = field(default_factory=dict)
    inclusive: dict[str, int] = field(default_factory=dict)

    def add(self, line: str) -> None:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            return
        n = int(count)
        self.all_samples += n
        frames = stack.split(";")
        # With --subprocesses each stack starts with its process chain (parent first).
        process = ""
        while frames and frames[0].startswith("process "):
            process = frames.pop(0)
        first = next((i for i, f in enumerate(frames) if _project_frame(f)), None)
        if first is None:
            return  # idle loops, the server's own machinery
        frames = frames[first:]
        key = process[:140]
        self.per_process[key] = self.per_process.get(key, 0) + n
        self.total += n
        self.leaf[frames[-1]] = self.leaf.get(frames[-1], 0) + n
        for frame in set(frames):
            self.inclusive[frame] = self.inclusive.get(frame, 0) + n

    def share_lines(self, counts: dict[str, int], top: int | None = None) -> list[str]:
        """The largest counts first, each with its share of the project's samples."""
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        return [f"  {n:7d} {100 * n / max(self.total, 1):5.1f}%  {name}" for name, n in ranked[:top]]


def summarize_folded(path: Path, rate: int, top: int = 30) -> str:
    """Where the threads that were inside the project's code (service/, tasks/) spent their
    time, from py-spy's raw (folded) output recorded with --idle: wall-clock attribution,
    so time a thread waits on DuckDB's native threads, PostgreSQL or a socket counts too."""
    counts = FoldedCounts()
    for line in path.read_text(errors="replace").splitlines():
        counts.add(line)
    lines = [
        f"samples inside service/ or tasks/: {counts.total} of {counts.all_samples} ({rate} Hz per thread, "
        "idle threads included); percentages are of the former",
        "",
        "by process:",
    ]
    lines += counts.share_lines(counts.per_process)
    blocks = [
        (
            f"top {top} functions of service/ and tasks/, inclusive:",
            {f: n for f, n in counts.inclusive.items() if _project_frame(f)},
        ),
        (f"top {top} innermost frames (where those threads were: Python code, a native call, a wait):", counts.leaf),
        (
            f"top {top} functions of any module, inclusive:",
            {f: n for f, n in counts.inclusive.items() if not _project_frame(f)},
        ),
    ]
    for title, block in blocks:
        lines += ["", title, *counts.share_lines(block, top)]
    return "\n".join(lines) + "\n"


def profile_scenario(
    stack: BenchStack,
    results: dict,
    name: str,
    which: str,
    missed: list[dict],
    run: Callable[[Path], dict],
    out_dir: Path,
    what: str,
) -> None:
    """Run a scenario again under py-spy (never the measured run) and save a text summary."""
    res = run(out_dir)
    write_profile(results, name, which, res, what, missed, separate=True)


def _run_timings_line(which: str, res: dict) -> str:
    """The profiled run's own figures, for the summary's header."""
    if which != "small":
        return ", ".join(
            f"{k} {seconds(res.get(k))}"
            for k in ("upload_s", "queue_s", "bronze_s", "silver_s", "metadata_s", "upload_to_synced_s")
            if k in res
        )
    return (
        f"{small_summary(res)}; per dataset p50: bronze "
        f"{(res.get('bronze_s', {}).get('p50') or 0) * 1000:.0f} ms, silver "
        f"{(res.get('silver_s', {}).get('p50') or 0) * 1000:.0f} ms, metadata "
        f"{(res.get('metadata_s', {}).get('p50') or 0) * 1000:.0f} ms"
    )


def small_summary(res: dict) -> str:
    """A small run in one line: the rate offered, upload latency, how soon the last dataset
    synced, and the worker's CPU per dataset."""
    lat = res.get("upload_latency_s", {})
    cpu = res.get("worker_cpu_per_dataset_s")
    return (
        f"offered {res.get('rate_achieved') or 0:.1f}/s; upload p50 {(lat.get('p50') or 0) * 1000:.0f} ms, "
        f"p95 {(lat.get('p95') or 0) * 1000:.0f} ms, p99 {(lat.get('p99') or 0) * 1000:.0f} ms; last synced {seconds(res.get('last_upload_to_synced_s'))} "
        f"after the last upload; worker CPU {'–' if cpu is None else f'{cpu * 1000:.0f} ms'} per dataset"
    )


def write_profile(
    results: dict, name: str, which: str, res: dict, what: str, missed: list[dict], *, separate: bool
) -> None:
    """Save the summary of ``res``'s profile as results/<name>-profile-<which>.txt and list it
    under ``results["profiles"]``; ``res`` gives its raw profile paths up."""
    rate = res.get("profiled_at_hz", PROFILE_RATE)
    when = "a separate run after the measured ones" if separate else "the measured run itself"
    text = [
        f"py-spy profile of {what}: {when}, sampled at {rate} Hz",
        "(py-spy record --subprocesses --nonblocking --idle on the gunicorn master and the celery main process).",
        f"That run: {_run_timings_line(which, res)}.",
        ("Goals missed in the measured run: " + "; ".join(g["goal"] for g in missed)) if missed else "",
        "",
    ]
    for role, raw in (res.pop("profile_raw", None) or {}).items():
        raw_path = Path(raw)
        text += [
            f"=== {role} ({'gunicorn master + workers' if role == 'api' else 'celery main + pool children'})",
            summarize_folded(raw_path, rate) if raw_path.exists() else raw,
            "",
        ]
    out = RESULTS / f"{name}-profile-{which}.txt"
    out.write_text("\n".join(text))
    entry: dict = {"file": str(out.relative_to(ROOT))}
    if separate:
        entry["run"] = {k: v for k, v in res.items() if k not in ("synced_series", "uploads")}
    results["profiles"][which] = entry
    log(f"profile summary: {out.relative_to(ROOT)}")
