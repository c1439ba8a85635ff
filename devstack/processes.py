"""Child processes of the launcher: waiting for them, signalling them, running them in the foreground."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from devstack.log import log
from service.processes import pid_alive


def process_name(pid: int) -> str | None:
    try:
        import psutil  # installed with pgserver

        return psutil.Process(pid).name()
    except Exception:
        return None


def wait_pid_exit(pid: int, timeout: float) -> bool:
    """True once ``pid`` is gone; reaps it when it is our own child."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return True
        except ChildProcessError:  # not our child: whoever owns it reaps it
            if not pid_alive(pid):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Keep a second Ctrl-C from cutting a server shutdown in half."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run_foreground(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` like a shell would: Ctrl-C reaches it directly, SIGTERM is passed on."""
    proc: subprocess.Popen | None = None

    def _forward(signum, _frame):
        if proc is not None and proc.poll() is None:
            proc.send_signal(signum)

    # Handlers, not SIG_IGN: an ignored disposition would be inherited by the child.
    old_int = signal.signal(signal.SIGINT, lambda *_: None)  # the terminal signals the child
    old_term = signal.signal(signal.SIGTERM, _forward)
    try:
        try:
            proc = subprocess.Popen(cmd, env=env)
        except FileNotFoundError:
            log(f"command not found: {cmd[0]}")
            return 127
        rc = proc.wait()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    return 128 - rc if rc < 0 else rc


def run_procfile(procfile: Path, env: dict[str, str], cwd: Path) -> int:
    """Run every process of ``procfile`` with honcho until one exits or we are signalled."""
    from honcho.environ import expand_processes, parse_procfile
    from honcho.manager import Manager
    from honcho.printer import Printer

    processes = parse_procfile(procfile.read_text()).processes
    if not processes:
        log(f"no processes in {procfile}")
        return 1
    manager = Manager(Printer(sys.stdout, colour=sys.stdout.isatty()))
    for p in expand_processes(processes, env=env):
        manager.add_process(p.name, p.cmd, quiet=p.quiet, env={**env, **p.env}, cwd=str(cwd))
    # Installs its own SIGINT/SIGTERM handlers: on either, SIGTERM to every process
    # group, SIGKILL to stragglers after a few seconds.
    manager.loop()
    return manager.returncode if manager.returncode is not None else 1
