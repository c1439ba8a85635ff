"""The web console through the Flask test client: its session cookie, CSRF checks on every
form, sign-out of revoked keys, and the JSON API left as it was."""

from __future__ import annotations

import io
import re

import pytest

from tests.conftest import make_app
from tests.helpers import upload

CSV = "id,city\n1,Oslo\n2,Lima\n"


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client, key: str) -> str:
    """Sign in through the form; returns a CSRF token of the new session."""
    token = csrf_token(client.get("/signin").get_data(as_text=True))
    response = client.post("/signin", data={"api_key": key, "csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)
    return csrf_token(client.get("/datasets").get_data(as_text=True))


def dataset_count(client, auth) -> int:
    return client.get("/api/v1/datasets", headers=auth).get_json()["total"]


def test_pages_need_a_session(client):
    response = client.get("/datasets")
    assert response.status_code == 303 and response.headers["Location"].startswith("/signin")
    page = client.get("/signin").get_data(as_text=True)
    assert '<label for="api_key">API key</label>' in page and ">Sign in</button>" in page


def test_session_cookie_is_signed_httponly_and_lax(client, tenant):
    token = csrf_token(client.get("/signin").get_data(as_text=True))
    response = client.post("/signin", data={"api_key": tenant["key"], "csrf_token": token})
    cookie = next(v for k, v in response.headers.items() if k == "Set-Cookie" and v.startswith("lakesync_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/datasets")
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    # The cookie holds the key's id, never the key itself.
    # (the secret part is everything after the second "_": it may hold "_" itself)
    assert tenant["key"] not in cookie and tenant["key"].split("_", 2)[2] not in cookie


def test_wrong_key_signs_no_one_in(client):
    token = csrf_token(client.get("/signin").get_data(as_text=True))
    response = client.post("/signin", data={"api_key": "lks_000000000000_nope", "csrf_token": token})
    assert response.status_code == 401
    assert "not valid or has been revoked" in response.get_data(as_text=True)
    assert client.get("/datasets").status_code == 303


@pytest.mark.parametrize("path", ["/signin", "/signout", "/upload"])
def test_form_posts_without_csrf_token_are_refused(client, tenant, auth, path):
    sign_in(client, tenant["key"])
    before = dataset_count(client, auth)
    data = {"api_key": tenant["key"], "file": (io.BytesIO(CSV.encode()), "a.csv")}
    response = client.post(path, data=data, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert dataset_count(client, auth) == before
    assert client.get("/datasets").status_code == 200  # still signed in


def test_dataset_actions_without_csrf_token_are_refused(client, tenant, auth):
    sign_in(client, tenant["key"])
    dataset_id = upload(client, auth, CSV, sync="false").get_json()["id"]
    assert client.post(f"/datasets/{dataset_id}/sync").status_code == 400
    assert client.post(f"/datasets/{dataset_id}/delete", data={"csrf_token": "forged"}).status_code == 400
    state = client.get(f"/api/v1/datasets/{dataset_id}/sync", headers=auth).get_json()
    assert state["status"] == "local_only" and state["runs"] == []


def test_json_api_takes_no_csrf_token(client, auth):
    """Bearer-key requests carry no cookie and no token, and are not asked for one."""
    response = upload(client, auth, CSV, sync="false")
    assert response.status_code == 201, response.get_json()
    dataset_id = response.get_json()["id"]
    assert client.delete(f"/api/v1/datasets/{dataset_id}", headers=auth).status_code == 204


def test_console_upload_with_token_stores_the_dataset(client, tenant, auth):
    token = sign_in(client, tenant["key"])
    data = {
        "csrf_token": token,
        "file": (io.BytesIO(CSV.encode()), "cities.csv"),
        "name": "",
        "description": "two cities",
        "sync": ["false"],
    }
    response = client.post(
        "/upload", data=data, content_type="multipart/form-data", headers={"Accept": "application/json"}
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["name"] == "cities" and body["sync_status"] == "local_only"
    page = client.get(body["location"]).get_data(as_text=True)
    assert "cities" in page and "Local only" in page


def test_console_upload_error_names_the_line(client, tenant):
    token = sign_in(client, tenant["key"])
    data = {"csrf_token": token, "file": (io.BytesIO(b"a,b\n1,2\n3,4,5\n"), "extra.csv")}
    response = client.post(
        "/upload", data=data, content_type="multipart/form-data", headers={"Accept": "application/json"}
    )
    assert response.status_code == 400
    assert "line 3" in response.get_json()["error"]["message"]
    # A browser without the script gets the form again, with the message.
    data = {"csrf_token": token, "file": (io.BytesIO(b"a,b\n1,2\n3,4,5\n"), "extra.csv")}
    page = client.post("/upload", data=data, content_type="multipart/form-data")
    assert page.status_code == 400 and "line 3" in page.get_data(as_text=True)


def test_revoked_key_signs_the_session_out(app, client, tenant):
    from service.auth import revoke_key
    from service.db import session_scope

    sign_in(client, tenant["key"])
    assert client.get("/datasets").status_code == 200
    with app.app_context(), session_scope() as session:
        assert revoke_key(session, tenant["key"].split("_")[1])
    response = client.get("/datasets")
    assert response.status_code == 303 and response.headers["Location"].startswith("/signin")
    assert "no longer valid" in client.get("/signin").get_data(as_text=True)
    assert client.get("/datasets").status_code == 303


def test_another_tenants_dataset_is_not_found(client, tenant, other_auth):
    foreign = upload(client, other_auth, CSV, sync="false").get_json()["id"]
    token = sign_in(client, tenant["key"])
    assert client.get(f"/datasets/{foreign}").status_code == 404
    assert client.get(f"/datasets/{foreign}/sync-panel").status_code == 404
    assert client.post(f"/datasets/{foreign}/delete", data={"csrf_token": token}).status_code == 404
    assert client.get(f"/api/v1/datasets/{foreign}", headers=other_auth).status_code == 200


def test_sign_in_goes_back_only_to_this_site(client, tenant):
    token = csrf_token(client.get("/signin").get_data(as_text=True))
    response = client.post("/signin", data={"api_key": tenant["key"], "csrf_token": token, "next": "//evil.example/x"})
    assert response.headers["Location"] == "/datasets"


def test_console_is_off_without_secret_key(app_env, auth):
    bare = make_app({k: v for k, v in app_env.items() if k != "SECRET_KEY"})
    client = bare.test_client()
    response = client.get("/signin")
    assert response.status_code == 503 and "SECRET_KEY" in response.get_data(as_text=True)
    assert client.get("/api/v1/datasets", headers=auth).status_code == 200


def test_preview_and_list_pages(client, tenant, auth):
    rows = "n,square\n" + "".join(f"{i},{i * i}\n" for i in range(45))
    dataset_id = upload(client, auth, rows, file_name="squares.csv", sync="false").get_json()["id"]
    sign_in(client, tenant["key"])
    first = client.get(f"/datasets/{dataset_id}").get_data(as_text=True)
    assert "1–20 of 45 rows" in first and f'href="/datasets/{dataset_id}?rows=2#preview"' in first
    last = client.get(f"/datasets/{dataset_id}?rows=3").get_data(as_text=True)
    assert "41–45 of 45 rows" in last and '<td title="1936">1936</td>' in last
    for i in range(21):
        upload(client, auth, "a\n1\n", file_name=f"tiny{i}.csv", sync="false")
    listing = client.get("/datasets?status=local_only").get_data(as_text=True)
    assert "1–20 of 22 datasets" in listing and 'href="/datasets?status=local_only&amp;page=2"' in listing
    second = client.get("/datasets?status=local_only&page=2").get_data(as_text=True)
    assert "21–22 of 22 datasets" in second and ">squares</a>" in second
    assert "No datasets are synced." in client.get("/datasets?status=synced").get_data(as_text=True)
