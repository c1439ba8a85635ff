"""Operations commands: ``flask --app wsgi tenant ...`` (wrapped by make targets)."""

from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import select

from service.auth import issue_key, revoke_key
from service.db import session_scope
from service.models import Tenant
from service.naming import tenant_slug

tenant_cli = click.Group("tenant", help="Tenants and their API keys.")


@tenant_cli.command("create")
@click.argument("name")
def create_tenant(name: str) -> None:
    """Create the tenant NAME (or reuse it) and print a new API key on the last line."""
    with session_scope() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == name))
        created = tenant is None
        if tenant is None:
            slug, n = tenant_slug(name), 1
            while session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
                n += 1
                slug = f"{tenant_slug(name)}_{n}"
            tenant = Tenant(name=name, slug=slug)
            session.add(tenant)
            session.flush()
        issued = issue_key(session, tenant)
        catalog = tenant.catalog
    click.echo(f"tenant {name} {'created' if created else 'exists'}; catalog {catalog}; key prefix {issued.prefix}")
    click.echo(issued.key)


@tenant_cli.command("revoke-key")
@click.argument("prefix")
def revoke(prefix: str) -> None:
    """Revoke the API key whose prefix (the part after 'lks_') is PREFIX."""
    prefix = prefix.removeprefix("lks_").split("_", 1)[0]
    with session_scope() as session:
        found = revoke_key(session, prefix)
    if not found:
        raise click.ClickException(f"no API key with prefix {prefix}")
    click.echo(f"revoked key {prefix}")


sync_cli = click.Group("sync", help="Sync runs.")


@sync_cli.command("resync")
@click.argument("dataset_id", type=click.UUID)
def resync(dataset_id) -> None:
    """Start a new sync run of DATASET_ID."""
    from service.datasets import request_resync
    from service.errors import APIError
    from service.models import Dataset

    with session_scope() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise click.ClickException(f"no dataset {dataset_id}")
        try:
            run = request_resync(session, dataset, trigger="cli")
        except APIError as exc:
            raise click.ClickException(exc.message) from exc
        run_id = run.id
    click.echo(f"sync run {run_id} of dataset {dataset_id} requested")


@sync_cli.command("resync-failed")
def resync_failed() -> None:
    """Start new sync runs of every failed dataset, all tenants."""
    from service.datasets import resync_where
    from service.errors import APIError

    try:
        with session_scope() as session:
            ids = resync_where(session, tenant_id=None, status="failed", trigger="cli")
    except APIError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"{len(ids)} failed dataset(s) requested for resync")


def register_cli(app: Flask) -> None:
    app.cli.add_command(tenant_cli)
    app.cli.add_command(sync_cli)
