"""The console as a user drives it, in headless Chromium: sign in, upload and watch the sync,
look at a dataset, resync, delete, keep a dataset local then sync it, and tenants apart."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SYNC_TIMEOUT_MS, new_page, sign_in, upload_file
from tests.helpers import upload

pytestmark = pytest.mark.usefixtures("worker")

CITIES = b"id,city,amount\n1,Oslo,10.5\n2,Lima,3\n2,Lima,3\n3,Pune,\n"


def dataset_row(page, name: str):
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


def status_badge(page, name: str):
    return dataset_row(page, name).locator("[data-status]")


def test_sign_in_upload_sync_open_resync_delete(page, tenant):
    page.goto("/datasets")
    expect(page).to_have_url(re.compile(r"/signin"))
    page.get_by_label("API key", exact=True).fill("lks_000000000000_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid or has been revoked")
    sign_in(page, tenant["key"])
    expect(page.get_by_text(f"Signed in as {tenant['name']}")).to_be_visible()

    upload_file(page, content=CITIES, file_name="cities.csv", name="cities")
    expect(page).to_have_url(re.compile(r"/datasets\?uploaded="))
    expect(page.get_by_role("columnheader", name="Status")).to_be_visible()
    # The badge changes without a reload: the table's body is polled while a sync runs.
    expect(status_badge(page, "cities")).to_have_text("Synced", timeout=SYNC_TIMEOUT_MS)
    expect(dataset_row(page, "cities")).to_contain_text("4")  # rows

    page.get_by_role("link", name="cities", exact=True).click()
    expect(page.get_by_role("heading", name="cities", exact=True)).to_be_visible()
    schema = page.locator("table.schema")
    # Silver types, inferred from every value: amount has decimals, city is text.
    expect(schema.get_by_role("row").filter(has_text="amount")).to_have_text(re.compile(r"amount\s*amount\s*double"))
    expect(schema.get_by_role("row").filter(has_text="city")).to_have_text(re.compile(r"city\s*city\s*string"))
    steps = page.locator(".run").first.locator(".step")
    expect(steps).to_have_count(3)
    for index, step in enumerate(("Bronze", "Silver", "Metadata")):
        expect(steps.nth(index)).to_contain_text(step)
        expect(steps.nth(index)).to_contain_text("Done")
        expect(steps.nth(index)).to_contain_text("1 attempt")
    expect(page.locator(".sync-panel")).to_contain_text(re.compile(r"Duplicates removed\s*1"))
    expect(page.locator(".sync-panel")).to_contain_text(f"{tenant['catalog']}.silver.cities_")
    preview = page.locator("table.preview")
    expect(preview.get_by_role("row")).to_have_count(5)  # header and 4 rows
    expect(preview).to_contain_text("Oslo")

    page.get_by_role("button", name="Resync").click()
    expect(page.get_by_text("Resync started.")).to_be_visible()
    expect(page.locator(".run")).to_have_count(2)
    expect(page.locator(".sync-panel [data-status]").first).to_have_text("Synced", timeout=SYNC_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Resync")).to_be_enabled()

    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("cannot be undone")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete dataset").click()
    expect(page.get_by_text("Deleted cities.")).to_be_visible()
    expect(page.get_by_role("link", name="cities", exact=True)).to_have_count(0)


def test_rejected_upload_shows_the_line(page, tenant):
    sign_in(page, tenant["key"])
    upload_file(page, content=b"a,b\n1,2\n3,4,5\n", file_name="extra.csv")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("line 3")
    expect(page).to_have_url(re.compile(r"/upload$"))
    page.goto("/datasets")
    expect(page.get_by_text("No datasets yet")).to_be_visible()


def test_upload_progress_is_reported(page, tenant):
    """The bar follows the browser's upload progress events (the network slowed down so
    that there are several)."""
    sign_in(page, tenant["key"])
    page.goto("/upload")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 256 * 1024},
    )
    body = b"id,value\n" + b"".join(b"%d,%d\n" % (i, i * 7) for i in range(90_000))
    page.get_by_label("Dataset file").set_input_files({"name": "numbers.csv", "mimeType": "text/csv", "buffer": body})
    page.get_by_role("button", name="Upload").click()
    bar = page.get_by_role("progressbar", name="Upload progress")
    page.wait_for_function("() => { const v = document.querySelector('progress').value; return v > 0 && v < 100; }")
    expect(bar).to_be_visible()
    expect(page).to_have_url(re.compile(r"/datasets\?uploaded="), timeout=60_000)
    expect(page.get_by_role("link", name="numbers", exact=True)).to_be_visible()


def test_local_only_until_sync(page, tenant):
    sign_in(page, tenant["key"])
    upload_file(page, content=CITIES, file_name="later.csv", sync_now=False)
    expect(status_badge(page, "later")).to_have_text("Local only")
    page.get_by_role("link", name="later", exact=True).click()
    expect(page.get_by_role("button", name="Resync")).to_have_count(0)
    expect(page.locator("table.preview")).to_contain_text("Pune")
    page.get_by_role("button", name="Sync", exact=True).click()
    expect(page.get_by_text("Sync started.")).to_be_visible()
    expect(page.locator(".sync-panel [data-status]").first).to_have_text("Synced", timeout=SYNC_TIMEOUT_MS)
    page.get_by_role("link", name="Datasets").first.click()
    expect(status_badge(page, "later")).to_have_text("Synced")


def test_second_tenant_sees_none_of_the_first(browser, live_server, client, tenant, auth, other_auth):
    mine = upload(client, auth, CITIES, file_name="private.csv", sync="false").get_json()["id"]
    first = new_page(browser, live_server)
    sign_in(first, tenant["key"])
    expect(first.get_by_role("link", name="private", exact=True)).to_be_visible()
    first.context.close()

    other = new_page(browser, live_server)
    sign_in(other, other_auth["Authorization"].removeprefix("Bearer "))
    expect(other.get_by_text("No datasets yet")).to_be_visible()
    expect(other.get_by_role("link", name="private", exact=True)).to_have_count(0)
    response = other.goto(f"/datasets/{mine}")
    assert response is not None and response.status == 404
    expect(other.get_by_role("heading", name="Not found")).to_be_visible()
    other.context.close()
