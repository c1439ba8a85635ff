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
        if created:
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


def register_cli(app: Flask) -> None:
    app.cli.add_command(tenant_cli)
