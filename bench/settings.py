"""Where the benchmark's files live, and what the environment asks it to run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.client import env_float, env_int

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS_VENV = BENCH / ".venv"
PEERS_REQUIREMENTS = BENCH / "requirements-peers.txt"
RESULTS = BENCH / "results"

DEFAULT_ROWS = 5_000_000
PARTS = ("big", "small", "wide", "peers")


class Settings:
    def __init__(self) -> None:
        self.rows = env_int("BENCH_ROWS", DEFAULT_ROWS)
        self.skip_huge = os.environ.get("BENCH_SKIP_HUGE", "").strip() not in ("", "0")
        only = [p.strip() for p in os.environ.get("BENCH_ONLY", "").split(",") if p.strip()]
        unknown = [p for p in only if p not in PARTS]
        if unknown:
            raise SystemExit(f"BENCH_ONLY: unknown part(s) {unknown}; use {', '.join(PARTS)}")
        self.only = only
        self.parts = only or list(PARTS)
        scale = min(1.0, self.rows / DEFAULT_ROWS)
        # The small scenario offers uploads at a fixed rate for a while (open loop).
        self.small_rate = env_float("BENCH_SMALL_RATE", 20.0)
        self.small_seconds = env_float("BENCH_SMALL_SECONDS", max(10, round(60 * scale)))
        if self.small_rate <= 0 or self.small_seconds <= 0:
            raise SystemExit("BENCH_SMALL_RATE and BENCH_SMALL_SECONDS must be positive")
        self.small_count = max(1, round(self.small_rate * self.small_seconds))
        self.small_rows = env_int("BENCH_SMALL_ROWS", 1000)
        self.small_clients = env_int("BENCH_SMALL_CLIENTS", 16)
        self.wide_rows = env_int("BENCH_WIDE_ROWS", max(5000, round(100_000 * scale)))
        self.wide_cols = env_int("BENCH_WIDE_COLS", 500)
        self.seed = env_int("BENCH_SEED", 42)
        self.repeat = max(1, env_int("BENCH_REPEAT", 3))
        self.profile = os.environ.get("BENCH_PROFILE", "auto").strip() or "auto"
        self.keep = os.environ.get("BENCH_KEEP", "").strip() not in ("", "0")
        # s3: the stack's files and Delta tables on an embedded S3 server (devstack.s3).
        self.storage = os.environ.get("BENCH_STORAGE", "local").strip() or "local"
        if self.storage not in ("local", "s3"):
            raise SystemExit(f"BENCH_STORAGE: {self.storage!r}; use local or s3")
        self.full = (
            self.rows == DEFAULT_ROWS
            and not self.skip_huge
            and not only
            and self.small_rate == 20
            and self.small_seconds == 60
            and self.small_rows == 1000
            and self.wide_rows == 100_000
            and self.small_clients == 16
            and self.repeat >= 3
            and self.storage == "local"
        )

    def out_name(self) -> str:
        if os.environ.get("BENCH_OUT"):
            return os.environ["BENCH_OUT"]
        name = time.strftime("%Y-%m-%d")
        if not self.full:
            tags = []
            if self.rows != DEFAULT_ROWS:
                tags.append(f"rows{self.rows}")
            if self.skip_huge:
                tags.append("nohuge")
            if self.only:
                tags.append("only-" + "-".join(self.only))
            if (self.small_rate, self.small_seconds, self.small_rows) != (20, 60, 1000) and "small" in self.parts:
                tags.append(f"small{self.small_rate:g}x{self.small_seconds:g}s")
            if self.storage != "local":
                tags.append(self.storage)
            name += "-" + ("-".join(tags) or "custom")
        return name

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items()}
