"""Screenshots of the console's pages for the README, at desktop and phone width.

    make screenshots        # = python -m pytest -q tests/browser/screenshots.py

Not part of `make test` (pytest collects only test_*.py by itself); it runs on the test
stack (embedded PostgreSQL and Redis, a real worker) with a few generated datasets.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, PHONE, SYNC_TIMEOUT_MS, new_page, sign_in
from tests.helpers import upload, wait_for_sync

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
REGIONS = ("North", "South", "East", "West")
PRODUCTS = ("Espresso beans", "Filter papers", "Grinder", "Kettle", "Milk jug", "Scale")


def revenue_csv(rows: int, seed: int) -> bytes:
    rng = random.Random(seed)
    lines = ["date,region,product,units,unit_price,revenue"]
    start = dt.date(2026, 1, 1)
    for i in range(rows):
        units, price = rng.randint(1, 40), rng.choice((4.5, 12.0, 89.0, 35.5, 18.25, 24.0))
        day = start + dt.timedelta(days=i % 90)
        lines.append(f"{day},{rng.choice(REGIONS)},{rng.choice(PRODUCTS)},{units},{price},{units * price:.2f}")
    lines.append(lines[1])  # one duplicate row: silver removes it
    return ("\n".join(lines) + "\n").encode()


def customers_ndjson(rows: int) -> bytes:
    rng = random.Random(7)
    names = ("Ana", "Bo", "Chen", "Dara", "Emil", "Fatou", "Goran", "Hana", "Ivo", "Jun")
    records = [
        {
            "customer_id": f"C{i:05d}",
            "name": f"{rng.choice(names)} {chr(65 + i % 26)}.",
            "region": rng.choice(REGIONS),
            "signed_up": str(dt.date(2025, 1, 1) + dt.timedelta(days=rng.randint(0, 600))),
            "vip": rng.random() < 0.1,
        }
        for i in range(rows)
    ]
    return "\n".join(json.dumps(r) for r in records).encode()


@pytest.fixture
def acme(app):
    """A tenant with a readable name for the pictures."""
    from service.auth import issue_key
    from service.db import session_scope
    from service.models import Tenant

    with app.app_context(), session_scope() as session:
        row = Tenant(name="acme", slug="acme")
        session.add(row)
        session.flush()
        return issue_key(session, row).key


# The top of a long page: enough to show it, small enough for the README (< 200 KB).
TALL = 1500


def shoot(page, name: str, *, full_page: bool = False) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    clip = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": TALL} if full_page else None
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=full_page, clip=clip, animations="disabled")


def both_widths(browser, base_url: str, key: str, path: str, name: str, *, full_page: bool = False) -> None:
    for suffix, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = new_page(browser, base_url, viewport)
        if key:
            sign_in(page, key)
        page.goto(path)
        page.wait_for_load_state("networkidle")
        shoot(page, f"{name}-{suffix}", full_page=full_page and suffix == "desktop")
        page.context.close()


@pytest.mark.usefixtures("worker")
def test_screenshots(browser, live_server, client, acme):
    auth = {"Authorization": f"Bearer {acme}"}
    both_widths(browser, live_server, "", "/signin", "signin")

    uploads = [
        (revenue_csv(1200, 1), "revenue_q1.csv", "Sales by day, region and product, first quarter"),
        (customers_ndjson(480), "customers.ndjson", "CRM export"),
        (revenue_csv(300, 2), "store_returns.csv", ""),
    ]
    ids = {}
    for content, file_name, description in uploads:
        response = upload(client, auth, content, file_name=file_name, description=description)
        assert response.status_code == 201, response.get_json()
        ids[file_name] = response.get_json()["id"]
    for dataset_id in ids.values():
        assert wait_for_sync(client, auth, dataset_id, timeout=SYNC_TIMEOUT_MS / 1000)["status"] == "synced"
    local = upload(
        client,
        auth,
        revenue_csv(400, 3),
        file_name="revenue_q2_draft.csv",
        sync="false",
        description="Draft: check before it goes to the lakehouse",
    )
    assert local.status_code == 201

    # The upload page mid-upload: the network slowed down so that the bar stops half-way.
    page = new_page(browser, live_server)
    sign_in(page, acme)
    page.goto("/upload")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 200 * 1024},
    )
    page.get_by_label("Dataset file").set_input_files(
        {"name": "web_orders.csv", "mimeType": "text/csv", "buffer": revenue_csv(40_000, 4)}
    )
    page.get_by_label("Name", exact=True).fill("web_orders")
    page.get_by_label("Description").fill("Orders from the web shop, all of 2026")
    page.get_by_role("button", name="Upload").click()
    page.wait_for_function("() => document.querySelector('progress').value >= 40")
    shoot(page, "upload-desktop")
    # The datasets page as the upload leaves it: the new dataset on top, its badge live.
    page.wait_for_url("**/datasets?uploaded=*", timeout=120_000)
    expect(page.get_by_role("row").filter(has_text="web_orders").locator("[data-status]")).to_have_text(
        "Synced", timeout=SYNC_TIMEOUT_MS
    )
    page.context.close()

    phone = new_page(browser, live_server, PHONE)
    sign_in(phone, acme)
    phone.goto("/upload")
    phone.get_by_label("Dataset file").set_input_files(
        {"name": "web_orders.csv", "mimeType": "text/csv", "buffer": b"id\n1\n"}
    )
    shoot(phone, "upload-phone")
    phone.context.close()

    both_widths(browser, live_server, acme, "/datasets", "datasets")
    both_widths(browser, live_server, acme, f"/datasets/{ids['revenue_q1.csv']}", "dataset", full_page=True)
    both_widths(browser, live_server, acme, "/integration", "integration")
