"""A stack whose datasets' files and Delta tables live on the session's S3 server."""

from __future__ import annotations

import uuid

import pytest

from tests.targets.conftest import start_stack, stop_worker

# Redis databases of the stacks below; 0-3 belong to the default worker and the target stacks.
S3_STACK_DB = 4
SCALE_OUT_DB = 5


def s3_settings(s3_server, run: str) -> dict:
    """The server's settings, with this session's own prefixes in the bucket."""
    env = s3_server.env()
    return {**env, "STORAGE_URL": f"{env['STORAGE_URL']}-{run}", "LAKEHOUSE_URL": f"{env['LAKEHOUSE_URL']}-{run}"}


@pytest.fixture(scope="session")
def s3_run() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def s3_stack(app_env, stack_dir, s3_server, s3_run):
    stack = start_stack(
        "s3",
        app_env,
        {**s3_settings(s3_server, s3_run), "DATA_DIR": str(stack_dir / "data-s3")},
        stack_dir,
        target=app_env["SYNC_TARGET"],
        db=S3_STACK_DB,
    )
    yield stack
    stop_worker(stack.worker)


@pytest.fixture
def s3(s3_stack):
    return s3_stack
