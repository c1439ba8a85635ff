"""The embedded servers behind `make run` and the test suite."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time

import pytest
import redis
import requests
import sqlalchemy as sa

from devstack.cli import _without_password
from devstack.flower import BadSetting, flower_basic_auth
from devstack.net import free_port
from devstack.passwords import stored_password
from devstack.postgres import EmbeddedPostgres
from devstack.redis import EmbeddedRedis
from devstack.stack import ROOT, child_env, resolve_stack


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def embedded_redis(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", port=0)
    yield server
    server.stop()


def test_redis_survives_restart_and_stops(embedded_redis):
    url = embedded_redis.start()
    assert embedded_redis.started
    port = embedded_redis.port
    assert port and url == f"redis://:{embedded_redis.password}@127.0.0.1:{port}/0"

    client = redis.Redis.from_url(url)
    assert client.ping()
    client.set("queued", "message")
    client.close()

    assert embedded_redis.restart() == url  # SIGTERM: the AOF is flushed on the way out
    client = redis.Redis.from_url(url)
    assert client.get("queued") == b"message"
    client.close()

    embedded_redis.stop()
    assert _port_closed(port)
    assert not embedded_redis.pid_path.exists()


def test_redis_second_start_reuses_running_server(embedded_redis):
    url = embedded_redis.start()
    other = EmbeddedRedis(embedded_redis.data_dir, port=0)
    assert other.start() == url
    assert not other.started  # reused, so a resolve_stack around it would leave it up


def test_redis_refuses_a_port_held_by_someone_else(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = EmbeddedRedis(tmp_path / "redis", port=squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="taken"):
            server.start()


def test_postgres_with_deep_data_dir_creates_database_and_is_reused(tmp_path):
    # Deeper than a Unix socket path may be (~107 bytes): the socket must go elsewhere.
    data_dir = tmp_path / ("d" * 60) / ("e" * 60) / "pg"
    server = EmbeddedPostgres(data_dir)
    try:
        url = server.start()
        assert url.startswith("postgresql+psycopg2://") and "/lakesync?" in url
        assert server.started

        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            assert conn.execute(sa.text("select current_database()")).scalar() == "lakesync"
        engine.dispose()

        again = EmbeddedPostgres(data_dir)
        assert again.start() == url
        assert not again.started

        server.stop()
        assert not server.is_running()
        assert server.start() == url  # a stop() does not leave a stale handle behind
        assert server.started
    finally:
        server.stop()


def test_resolve_stack_uses_urls_from_env(tmp_path):
    environ = {"DATABASE_URL": "postgresql+psycopg2://u@db.example/x", "REDIS_URL": "redis://broker.example:6379/0"}
    with resolve_stack(tmp_path / "data", environ=environ) as urls:
        assert urls == {
            "DATABASE_URL": "postgresql+psycopg2://u@db.example/x",
            "REDIS_URL": "redis://broker.example:6379/0",
        }
    assert not (tmp_path / "data").exists()  # nothing embedded was started


def test_redis_comes_back_on_the_same_port_after_a_crash(embedded_redis):
    url = embedded_redis.start()
    port = embedded_redis.port
    embedded_redis.kill()
    assert _port_closed(port)
    assert not embedded_redis.is_running()
    assert embedded_redis.start() == url
    assert embedded_redis.ping()


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_password_file_is_generated_once_private_and_reused(tmp_path):
    path = tmp_path / "sub" / "redis.password"
    first = stored_password(path)
    assert len(first) >= 32
    assert _mode(path) == 0o600
    assert stored_password(path) == first
    assert stored_password(tmp_path / "other.password") != first
    assert [p.name for p in path.parent.iterdir()] == ["redis.password"]  # no temporary left over


def test_password_file_loosened_by_hand_is_made_private_again(tmp_path):
    path = tmp_path / "flower.password"
    first = stored_password(path)
    path.chmod(0o644)
    assert stored_password(path) == first
    assert _mode(path) == 0o600


def test_empty_password_file_is_refused(tmp_path):
    path = tmp_path / "redis.password"
    path.write_text("\n")
    with pytest.raises(RuntimeError, match="empty"):
        stored_password(path)


def test_redis_refuses_clients_without_the_password(embedded_redis):
    url = embedded_redis.start()
    port = embedded_redis.port
    assert embedded_redis.password in url
    assert _mode(embedded_redis.password_path) == 0o600
    assert _mode(embedded_redis.conf_path) == 0o600  # it holds requirepass

    anonymous = redis.Redis(host="127.0.0.1", port=port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.set("k", "v")
    anonymous.close()
    wrong = redis.Redis(host="127.0.0.1", port=port, password="not-" + embedded_redis.password)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    wrong.close()

    client = redis.Redis.from_url(url)
    assert client.set("k", "v") and client.get("k") == b"v"
    client.close()


def test_redis_keeps_its_password_across_restarts(embedded_redis):
    url = embedded_redis.start()
    password = embedded_redis.password
    assert embedded_redis.restart(hard=True) == url
    assert EmbeddedRedis(embedded_redis.data_dir, port=0).password == password
    client = redis.Redis.from_url(url)
    assert client.ping()
    client.close()


def test_flower_credentials_generated_once_unless_configured(tmp_path):
    generated = flower_basic_auth(tmp_path, {})
    user, _, password = generated.partition(":")
    assert user == "admin" and password == (tmp_path / "flower.password").read_text().strip()
    assert _mode(tmp_path / "flower.password") == 0o600
    assert flower_basic_auth(tmp_path, {}) == generated

    assert flower_basic_auth(tmp_path, {"FLOWER_BASIC_AUTH": "ops:s3cret"}) == "ops:s3cret"
    for bad in ("ops", "ops:", ":s3cret", "ops:s3cret,nobody"):
        with pytest.raises(BadSetting, match="user:password"):
            flower_basic_auth(tmp_path, {"FLOWER_BASIC_AUTH": bad})


def test_banner_hides_url_passwords():
    assert _without_password("redis://:pw@127.0.0.1:6390/0") == "redis://:***@127.0.0.1:6390/0"
    assert _without_password("redis://u:pw@h:1/2") == "redis://u:***@h:1/2"
    assert _without_password("redis://127.0.0.1:6390/0") == "redis://127.0.0.1:6390/0"


def test_flower_started_with_the_launcher_env_requires_basic_auth(embedded_redis, tmp_path):
    environ = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    env = child_env(
        {"DATABASE_URL": "postgresql+psycopg2://unused@/x", "REDIS_URL": embedded_redis.start()}, tmp_path, environ
    )
    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks.celery_app", "flower", "--address=127.0.0.1", f"--port={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                anonymous = requests.get(url, timeout=5)
                break
            except requests.ConnectionError:
                assert flower.poll() is None, "flower exited"
                assert time.monotonic() < deadline, "flower did not listen"
                time.sleep(0.2)
        assert anonymous.status_code == 401
        user, _, password = env["FLOWER_BASIC_AUTH"].partition(":")
        assert requests.get(url, auth=(user, "wrong"), timeout=5).status_code == 401
        assert requests.get(url, auth=(user, password), timeout=5).status_code == 200
    finally:
        flower.terminate()
        flower.wait(timeout=30)


def test_launcher_gives_every_process_one_secret_key(tmp_path):
    """The console's sessions need one SECRET_KEY for all API workers and across restarts;
    a key set by the user is kept as it is."""
    urls = {"DATABASE_URL": "postgresql+psycopg2://unused@/x", "REDIS_URL": "redis://unused"}
    environ = {"PATH": "/usr/bin"}
    first = child_env(urls, tmp_path, environ)["SECRET_KEY"]
    assert len(first) >= 32 and child_env(urls, tmp_path, environ)["SECRET_KEY"] == first
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert child_env(urls, tmp_path, {**environ, "SECRET_KEY": "mine"})["SECRET_KEY"] == "mine"
