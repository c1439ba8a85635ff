"""``make bench``: lakesync's real stack against single-pass peers on the same files.

Environment:
  BENCH_ROWS=5000000        rows of the big CSV (the huge one has 4x); smaller values scale
                            the small-dataset and wide runs down too, for a quick run
  BENCH_SKIP_HUGE=1         skip the 4x file
  BENCH_ONLY=big,small,...  run some parts only: big, small, wide, peers
  BENCH_SMALL_RATE=20       small uploads offered per second (open loop: on schedule,
  BENCH_SMALL_SECONDS=60    whatever the answers) for this long, over BENCH_SMALL_CLIENTS=16
  BENCH_SMALL_ROWS=1000     connections; rows per small CSV
  BENCH_WIDE_ROWS, BENCH_WIDE_COLS, BENCH_SEED
                            override the sizes
  BENCH_REPEAT=3            measured runs of each file, lakesync and peers interleaved; the median
                            run is reported (a shared machine drifts by tens of percent)
  BENCH_PROFILE=auto|1|0    py-spy profile of the big file and/or the small uploads when their
                            goals are missed (auto), always (1) or never (0)
  BENCH_OUT=NAME            base name of the results (default: the date, plus a tag for
                            runs that are not the full default one)
  BENCH_KEEP=1              keep the temporary stack directory (logs, lakehouse)
  BENCH_UPLOAD_TIMEOUT=1200, BENCH_SYNC_TIMEOUT=1200
                            seconds one upload may take to answer, and then to sync

Results go to bench/results/<NAME>.json, .md and .png; the table is printed at the end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import data, report
from bench.log import elapsed, log
from bench.machine import machine_info, record_new_memory
from bench.peer_runs import peer_medians, peers_python, run_peers
from bench.profiling import WIDE_PROFILE_RATE, profile_scenario, write_profile
from bench.scenarios import ours_file, synced_of
from bench.settings import RESULTS, ROOT, Settings
from bench.small import ours_small
from bench.stack import BenchStack
from bench.stats import median_run

FILE_LABELS = ("big", "huge", "wide")
# Small uploads run again under py-spy when a small goal is missed (15 s at 20 uploads/s).
PROFILED_SMALL_FILES = 300


class BenchRun:
    """One benchmark run: its settings, the files it measures, and the results it collects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.out_name()
        self.phases: dict[str, float] = {}
        self.results: dict = {
            "schema": 1,
            "name": self.name,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": settings.as_dict(),
            "ours": {},
            "peers": {},
            "profiles": {},
            "phases": self.phases,
        }
        self.peers_py = ""
        self.files: dict[str, Path] = {}
        self.metas: dict[str, dict] = {}
        self.stack: BenchStack | None = None
        self.ours_parts: list[str] = []

    def phase(self, title: str, fn, *args, fatal: bool = False, **kwargs):
        """``fn(*args, **kwargs)``, timed under ``title``; a failure is recorded and gives None,
        unless ``fatal``."""
        log(f"== {title}")
        t = time.monotonic()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if fatal:
                raise
            # One broken scenario must not cost the figures of the others.
            log(f"== {title} FAILED: {exc!r}")
            self.results.setdefault("errors", []).append(
                {"phase": title, "error": repr(exc), "traceback": traceback.format_exc()}
            )
            traceback.print_exc()
            return None
        finally:
            self.phases[title] = round(time.monotonic() - t, 2)
            log(f"== {title} done in {self.phases[title]:.1f}s")

    # -- before measuring: the peers venv, the machine, the data sets

    def prepare(self) -> None:
        self.peers_py = self.phase("peers venv", peers_python, fatal=True)
        self.results["machine"] = machine = machine_info(self.peers_py)
        log(f"machine: {machine['cpu_model']}, {machine['cores']} cores, {machine['memory_bytes'] / 2**30:.1f} GiB")
        self.phase("data", self.make_data, fatal=True)
        self.metas = {label: data.meta(path) for label, path in self.files.items()}
        self.results["data"] = {label: {"file": path.name, **self.metas[label]} for label, path in self.files.items()}
        RESULTS.mkdir(parents=True, exist_ok=True)

    def make_data(self) -> None:
        s, files = self.settings, self.files
        if "big" in s.parts or "peers" in s.parts:
            files["big"] = data.ensure("big", self.peers_py, rows=s.rows, seed=s.seed)
            if not s.skip_huge:
                files["huge"] = data.ensure("big", self.peers_py, rows=4 * s.rows, seed=s.seed)
        if "wide" in s.parts or "peers" in s.parts:
            files["wide"] = data.ensure("wide", self.peers_py, rows=s.wide_rows, cols=s.wide_cols, seed=s.seed)
        if "small" in s.parts:
            files["small"] = data.ensure("small", self.peers_py, rows=s.small_rows, count=s.small_count, seed=s.seed)

    # -- measuring, in a temporary directory that goes away at the end

    def measure(self) -> None:
        machine = self.results["machine"]
        tmp = Path(tempfile.mkdtemp(prefix="lakesync-bench-"))
        try:
            record_new_memory(machine, "start", tmp)
            self.ours_parts = [p for p in ("big", "wide", "small") if p in self.settings.parts]
            if self.ours_parts:
                self.measure_ours(tmp)
            self.measure_peers_alone(tmp)
            self.profile_missed_goals(tmp)
        except KeyboardInterrupt:
            log("interrupted; writing what was measured")
            self.results.setdefault("errors", []).append({"phase": "all", "error": "interrupted"})
        finally:
            if self.stack is not None:
                log("stopping the stack")
                self.stack.shutdown()
            record_new_memory(machine, "end", tmp)
            if self.settings.keep:
                log(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    def stack_env(self) -> dict[str, str]:
        """What the stack's environment changes from the defaults."""
        biggest = max((self.metas[k]["bytes"] for k in FILE_LABELS if k in self.metas), default=0)
        extra_env = {}
        # The 4x file is larger than the default MAX_UPLOAD_MB (1024): raise the cap for it.
        if biggest > 1000 * 2**20:
            extra_env["MAX_UPLOAD_MB"] = str(math.ceil(biggest / 2**20) + 64)
        return extra_env

    def measure_ours(self, tmp: Path) -> None:
        """lakesync on each file, interleaved with the peers, then the many small files."""
        extra_env = self.stack_env()
        self.results["stack_env"] = extra_env
        self.stack = BenchStack(tmp / "stack", extra_env, storage=self.settings.storage)
        self.phase("stack servers", self.stack.start_servers, fatal=True)
        file_parts = [label for label in ("big", "huge") if label in self.files and "big" in self.ours_parts]
        if "wide" in self.ours_parts:
            file_parts.append("wide")
        ours_runs, peer_runs = self.file_rounds(tmp, file_parts)
        ours = self.results["ours"]
        for label, runs in ours_runs.items():
            ours[label] = median_run(runs, synced_of)
        for label, tools in peer_runs.items():
            self.results["peers"][label] = peer_medians(tools)
        self.keep_wide_profile(ours_runs)
        if "small" in self.ours_parts:
            small_files = sorted(self.files["small"].glob("*.csv"))
            ours["small"] = self.phase(
                "ours small",
                ours_small,
                self.stack,
                small_files,
                self.settings.small_rate,
                self.settings.small_clients,
            )
        self.results["ours"] = {k: v for k, v in ours.items() if v is not None}

    def file_rounds(self, tmp: Path, file_parts: list[str]) -> tuple[dict[str, list], dict[str, dict[str, list]]]:
        """``settings.repeat`` rounds of each file, lakesync's run then the peers'; every run's figures."""
        wide_dir = tmp / "profile-wide" if self.settings.profile != "0" else None
        ours_runs: dict[str, list] = {label: [] for label in file_parts}
        peer_runs: dict[str, dict[str, list]] = {}
        for rep in range(self.settings.repeat):
            for label in file_parts:
                # The wide file's upload is sampled by py-spy in its first run only.
                profile = (
                    {"profile_dir": wide_dir, "profile_rate": WIDE_PROFILE_RATE}
                    if label == "wide" and rep == 0 and wide_dir
                    else {}
                )
                ours_runs[label].append(
                    self.phase(
                        f"ours {label} #{rep + 1}",
                        ours_file,
                        self.stack,
                        label,
                        self.files[label],
                        self.metas[label],
                        **profile,
                    )
                )
                if "peers" in self.settings.parts:
                    self.peers_round(tmp, label, rep, peer_runs.setdefault(label, {}))
        return ours_runs, peer_runs

    def peers_round(self, tmp: Path, label: str, rep: int, into: dict) -> None:
        """One run of every peer on the file ``label``, its figures added to ``into``."""
        self.phase(f"peers {label} #{rep + 1}", run_peers, self.peers_py, tmp, label, self.files[label], into)

    def keep_wide_profile(self, ours_runs: dict[str, list]) -> None:
        """Summarize the profile taken during the first wide run; the median run keeps no raw paths."""
        wide = self.results["ours"].get("wide")
        first_wide = (ours_runs.get("wide") or [None])[0]
        if first_wide and first_wide.get("profile_raw"):
            write_profile(
                self.results, self.name, "wide", first_wide, "the wide file's upload and sync", [], separate=False
            )
        if wide is not None:
            wide.pop("profile_raw", None)

    def measure_peers_alone(self, tmp: Path) -> None:
        """Peers of files lakesync did not run (BENCH_ONLY=peers) are measured on their own."""
        peers = self.results["peers"]
        peer_only = [label for label in FILE_LABELS if label in self.files and label not in peers]
        if "peers" not in self.settings.parts or not peer_only:
            return
        for rep in range(self.settings.repeat):
            for label in peer_only:
                self.peers_round(tmp, label, rep, peers.setdefault(label, {}))
        for label in peer_only:
            peers[label] = peer_medians(peers[label])

    def profile_missed_goals(self, tmp: Path) -> None:
        """Run the big file and/or some small uploads again under py-spy when their goals were
        missed (or always, with BENCH_PROFILE=1)."""
        self.results["goals"] = report.goals(self.results)
        missed = [g for g in self.results["goals"] if g["passed"] is False]
        # The wide file is sampled during its measured run already.
        missed_big = [g for g in missed if g["kind"] == "time" and g["part"] in ("big", "huge")]
        missed_small = [g for g in missed if g["part"] == "small"]
        forced, auto = self.settings.profile == "1", self.settings.profile == "auto"
        stack, files, metas = self.stack, self.files, self.metas
        rate, clients = self.settings.small_rate, self.settings.small_clients
        if stack is not None and "big" in files and "big" in self.ours_parts and (forced or (auto and missed_big)):
            self.phase(
                "profile big",
                profile_scenario,
                stack,
                self.results,
                self.name,
                "big",
                missed_big,
                lambda out_dir: ours_file(stack, "profile-big", files["big"], metas["big"], profile_dir=out_dir),
                tmp / "profile-big",
                f"the {metas['big']['rows']:,}-row file's upload and sync",
            )
        if stack is not None and "small" in files and (forced or (auto and missed_small)):
            subset = sorted(files["small"].glob("*.csv"))[:PROFILED_SMALL_FILES]
            self.phase(
                "profile small",
                profile_scenario,
                stack,
                self.results,
                self.name,
                "small",
                missed_small,
                lambda out_dir: ours_small(stack, subset, rate, clients, label="profile-small", profile_dir=out_dir),
                tmp / "profile-small",
                f"{len(subset)} small uploads offered at {rate:g}/s over {clients} connections",
            )

    # -- after measuring: the goals, the JSON, the Markdown table and the chart

    def write(self) -> int:
        """Write the results; 0 when every phase ran, 1 when one failed."""
        results, name = self.results, self.name
        results["goals"] = report.goals(results)
        results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        results["duration_s"] = round(elapsed(), 1)
        if self.settings.storage == "s3":
            results["local_reference"] = report.reference_summary(report.local_reference(results, RESULTS))
        json_path = RESULTS / f"{name}.json"
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        markdown = report.markdown(results)
        (RESULTS / f"{name}.md").write_text(markdown)
        chart = subprocess.run(
            [self.peers_py, "-m", "bench.report", "chart", str(json_path), str(RESULTS / f"{name}.png")],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"},
        )
        if chart.returncode != 0:
            log("chart failed (see above)")
        print()
        print(markdown)
        log(f"results: {os.path.relpath(json_path, ROOT)} (.md, .png); total {results['duration_s']:.0f}s")
        if results.get("errors"):
            log(f"{len(results['errors'])} phase(s) failed: {', '.join(e['phase'] for e in results['errors'])}")
            return 1
        return 0


def main() -> int:
    run = BenchRun(Settings())
    run.prepare()
    run.measure()
    return run.write()


if __name__ == "__main__":
    sys.exit(main())
