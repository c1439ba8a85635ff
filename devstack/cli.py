"""``python -m devstack run|exec|env|stop``: the commands behind ``make``."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devstack.flower import FLOWER_URL, BadSetting, flower_basic_auth, flower_login
from devstack.log import log
from devstack.postgres import EmbeddedPostgres
from devstack.processes import run_foreground, run_procfile, signals_deferred
from devstack.redis import EmbeddedRedis
from devstack.s3 import EmbeddedS3
from devstack.stack import MIGRATE_COMMAND, ROOT, child_env, data_dir_from_env, resolve_stack, tenant_command

WEB_URL = "http://127.0.0.1:8000"


def _create_dev_tenant(env: dict[str, str], name: str) -> str | None:
    result = subprocess.run(tenant_command(name), cwd=ROOT, env=env, capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.stdout.flush()
    if result.returncode != 0:
        log(f"`flask tenant create {name}` failed (rc={result.returncode}); starting anyway")
        return None
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _without_password(url: str) -> str:
    # The banner ends up in terminals and log files; `python -m devstack env` prints the full URL.
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def _banner(env: dict[str, str], data_dir: Path, tenant: str, key: str | None) -> str:
    key_line = key if key else "(not created; see the output above)"
    return "\n".join(
        [
            "",
            "lakesync is starting",
            f"  API       {WEB_URL}",
            f"  console   {WEB_URL}/   (sign in with the API key below)",
            f"  API docs  {WEB_URL}/api/docs",
            f"  Flower    {FLOWER_URL} {flower_login(env['FLOWER_BASIC_AUTH'])}",
            f"  API key   {key_line}   (tenant {tenant!r})",
            f"  data      {data_dir}",
            f"  database  {_without_password(env['DATABASE_URL'])}",
            f"  broker    {_without_password(env['REDIS_URL'])}",
            *_storage_lines(env, data_dir),
            "Ctrl-C stops everything.",
            "",
        ]
    )


def _storage_lines(env: dict[str, str], data_dir: Path) -> list[str]:
    if env.get("STORAGE_URL", "").startswith("s3://"):
        return [
            f"  files     {env['STORAGE_URL']}",
            f"  lakehouse {env.get('LAKEHOUSE_URL', '')}",
            f"  S3        {env.get('AWS_ENDPOINT_URL', '')} (embedded SeaweedFS; key and secret in "
            f"{data_dir / 's3'}/s3.access-key, s3.secret-key)",
        ]
    return [f"  files     {env.get('STORAGE_URL') or data_dir / 'datasets'} (local; make run STORAGE=s3 for S3)"]


def _raise_interrupt(_signum, _frame):
    raise KeyboardInterrupt


def cmd_run(args: argparse.Namespace) -> int:
    data_dir = data_dir_from_env()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Until honcho takes over: SIGTERM unwinds like Ctrl-C so the servers get stopped.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    tenant = os.environ.get("DEV_TENANT", "dev")
    try:
        with resolve_stack(data_dir) as urls, contextlib.ExitStack() as servers:
            env = child_env(urls, data_dir)
            env.setdefault("PYTHONUNBUFFERED", "1")  # lines reach honcho as they are printed
            if args.storage == "s3":
                log("starting the embedded S3 server (SeaweedFS)")
                s3 = EmbeddedS3(data_dir / "s3")
                servers.callback(s3.stop)
                env.update(s3.start().env())
            log("alembic upgrade head")
            migrate = subprocess.run(MIGRATE_COMMAND, cwd=ROOT, env=env)
            if migrate.returncode != 0:
                log(f"migrations failed (rc={migrate.returncode})")
                return migrate.returncode
            key = _create_dev_tenant(env, tenant)
            print(_banner(env, data_dir, tenant, key), flush=True)
            rc = run_procfile(ROOT / "Procfile", env, ROOT)
            log("processes stopped; stopping embedded servers")
            return rc
    except KeyboardInterrupt:
        return 130


def cmd_exec(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        log("usage: python -m devstack exec -- CMD [ARGS...]")
        return 2
    data_dir = data_dir_from_env()
    # Nothing is printed after CMD finishes: `make tenant` output ends with the API key.
    with resolve_stack(data_dir) as urls:
        return run_foreground(cmd, child_env(urls, data_dir))


def cmd_env(args: argparse.Namespace) -> int:
    with resolve_stack(data_dir_from_env(), keep_running=True) as urls:
        prefix = "export " if args.export else ""
        for name in ("DATABASE_URL", "REDIS_URL"):
            print(f"{prefix}{name}={shlex.quote(urls[name])}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    data_dir = data_dir_from_env()
    with signals_deferred():
        if (data_dir / "redis").is_dir():
            EmbeddedRedis(data_dir / "redis").stop()
        if (data_dir / "pg" / "PG_VERSION").exists():
            EmbeddedPostgres(data_dir / "pg").stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Embedded PostgreSQL + Redis under DATA_DIR (default ./.data), "
        "unless DATABASE_URL / REDIS_URL are set.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="migrate, create the dev tenant, run every Procfile process")
    p_run.add_argument(
        "--storage",
        choices=("local", "s3"),
        default=os.environ.get("STORAGE") or "local",
        help="s3: files and Delta tables on an embedded S3 server under DATA_DIR/s3",
    )
    p_exec = sub.add_parser("exec", help="run a command with DATABASE_URL/REDIS_URL set")
    p_exec.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p_env = sub.add_parser("env", help="print DATABASE_URL/REDIS_URL (servers stay up)")
    p_env.add_argument("--export", action="store_true", help="prefix lines with 'export '")
    sub.add_parser("stop", help="stop the embedded servers under DATA_DIR")
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "exec": cmd_exec, "env": cmd_env, "stop": cmd_stop}
    try:
        if args.command in ("run", "exec"):
            flower_basic_auth(data_dir_from_env())  # a bad setting fails before any server starts
        return handlers[args.command](args)
    except BadSetting as exc:
        log(str(exc))
        return 2
