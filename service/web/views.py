"""The console's pages: sign-in, datasets, upload, a dataset, the integration."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import sqlalchemy.exc
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException

from service import datasets as domain
from service.api.datasets import upload_from_form
from service.api.errors import error_response, http_error
from service.auth import api_key_for, tenant_for_key_id
from service.db import session_scope
from service.errors import APIError, Conflict
from service.integration import integration_status
from service.lakehouse import PermanentTargetError, TransientTargetError
from service.models import LOCAL_ONLY, SYNC_STATUSES, Tenant
from service.runtime import runtime
from service.storage import StoredFileMissing

log = logging.getLogger(__name__)

# Under /assets: the app's own /static route (Flask's default, unused) would shadow a /static here.
bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/assets")
csrf = CSRFProtect()

PAGE_SIZE = 20
PREVIEW_ROWS = 20
# Seconds between two polls of a page whose datasets are still syncing.
POLL_SECONDS = 2
SESSION_KEY = "key_id"
PUBLIC_ENDPOINTS = ("web.signin",)
# The upload form's fields the console handles itself, not the API's parser.
CSRF_FIELD = "csrf_token"


def _wants_json() -> bool:
    """The upload script asks for JSON; browsers navigating ask for HTML."""
    return request.accept_mimetypes.best_match(("text/html", "application/json")) == "application/json"


def _signed_in_tenant() -> Tenant | None:
    raw = session.get(SESSION_KEY)
    if not raw:
        return None
    try:
        key_id = uuid.UUID(str(raw))
    except ValueError:
        return None
    with session_scope() as db:
        tenant = tenant_for_key_id(db, key_id)
        if tenant is not None:
            db.expunge(tenant)
    return tenant


def _to_sign_in() -> ResponseReturnValue:
    if request.headers.get("HX-Request"):
        # A poll from a page whose session ended: htmx loads the sign-in page instead.
        response = Response(status=204)
        response.headers["HX-Redirect"] = url_for("web.signin")
        return response
    if _wants_json():
        return error_response(401, "unauthorized", "signed out: sign in again")
    target = request.full_path if request.method == "GET" else None
    return redirect(url_for("web.signin", next=target), 303)


@bp.before_request
def _guard():
    if request.endpoint == "web.static":
        return None
    if not current_app.secret_key:
        return render_template("unconfigured.html"), 503
    g.tenant = _signed_in_tenant()
    if g.tenant is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if session.get(SESSION_KEY):
            session.clear()
            flash("You were signed out: your API key is no longer valid.", "error")
        return _to_sign_in()
    # After the session check, so a stranger's upload body is not even read.
    csrf.protect()
    return None


def _page_url(name: str, value: int, endpoint: str | None = None) -> str:
    """This page's URL (or ``endpoint``'s) with one query argument changed."""
    args: dict[str, Any] = {**(request.view_args or {}), **request.args.to_dict(), name: value}
    return url_for(endpoint or request.endpoint or "web.datasets", **args)


@bp.after_request
def _page_headers(response: Response) -> Response:
    if request.endpoint != "web.static":
        # No other site may frame the console's forms (clickjacking), or read its pages from a cache.
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.context_processor
def _globals() -> dict:
    return {"status_choices": SYNC_STATUSES, "poll_seconds": POLL_SECONDS, "page_url": _page_url}


def _error_page(exc: Exception):
    """Errors of console requests: JSON for the upload script, a page for a browser."""
    if isinstance(exc, APIError):
        status, message = exc.status, exc.message
        if _wants_json():
            return error_response(exc.status, exc.code, exc.message, exc.details)
    elif isinstance(exc, HTTPException):
        if _wants_json():
            return http_error(exc)
        status, message = exc.code or 500, exc.description or exc.name
    elif isinstance(exc, TransientTargetError | sqlalchemy.exc.OperationalError):
        log.warning("console request failed, a dependency is unavailable: %s", exc)
        status, message = 503, "A service the console depends on is unavailable; try again shortly."
    elif isinstance(exc, PermanentTargetError):
        log.warning("the lakehouse target refused a console request: %s", exc)
        status, message = 502, f"The lakehouse target refused the request: {exc}"
    else:
        log.exception("unhandled error in the console")
        status, message = 500, "Something went wrong on our side."
    if _wants_json():
        return error_response(status, "error", message)
    return render_template("error.html", status=status, message=message), status


for _exc in (
    APIError,
    HTTPException,
    TransientTargetError,
    PermanentTargetError,
    sqlalchemy.exc.OperationalError,
    Exception,
):
    bp.register_error_handler(_exc, _error_page)


def _safe_next(target: str | None) -> str:
    # Only a path of this site: never an open redirect to another host.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("web.datasets")


@bp.route("/signin", methods=["GET", "POST"])
def signin():
    if request.method == "GET":
        if g.tenant is not None:
            return redirect(url_for("web.datasets"))
        return render_template("signin.html", next=request.args.get("next", ""))
    key = request.form.get("api_key", "").strip()
    next_url = request.form.get("next", "")
    with session_scope() as db:
        row = api_key_for(db, key) if key else None
        key_id, tenant_name = (row.id, row.tenant.name) if row is not None else (None, None)
    if key_id is None:
        error = "Enter your API key." if not key else "That API key is not valid or has been revoked."
        return render_template("signin.html", error=error, next=next_url), 401
    # A fresh session (and CSRF token) on every sign-in: nothing carried over from before.
    session.clear()
    session[SESSION_KEY] = str(key_id)
    flash(f"Signed in as {tenant_name}.", "success")
    return redirect(_safe_next(next_url), 303)


@bp.route("/signout", methods=["POST"])
def signout():
    session.clear()
    flash("Signed out.", "success")
    return redirect(url_for("web.signin"), 303)


@bp.route("/")
def index():
    return redirect(url_for("web.datasets"))


def _page(name: str = "page") -> int:
    try:
        return max(1, int(request.args.get(name, 1)))
    except ValueError:
        return 1


def _list_context() -> dict:
    status = request.args.get("status") or None
    if status not in SYNC_STATUSES:
        status = None
    page = _page()
    with session_scope() as db:
        items, total = domain.list_for_tenant(
            db, g.tenant.id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, status=status
        )
    return {
        "items": items,
        "total": total,
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "first": (page - 1) * PAGE_SIZE + 1,
        "status": status,
        "polling": any(d.sync_status in domain.ACTIVE_STATUSES for d in items),
        "highlight": request.args.get("uploaded"),
    }


@bp.route("/datasets")
def datasets():
    return render_template("datasets.html", **_list_context())


@bp.route("/datasets/rows")
def dataset_rows():
    """The datasets table's body alone: polled while a dataset on it is still syncing."""
    return render_template("_dataset_rows.html", **_list_context())


@bp.route("/upload", methods=["GET", "POST"])
def upload():
    config = current_app.config
    options = {
        "sync_enabled": domain.sync_enabled(config),
        "sync_default": domain.upload_syncs(config, None),
        "max_upload_mb": config["MAX_UPLOAD_MB"],
    }
    if request.method == "GET":
        return render_template("upload.html", **options)
    # Fields left empty on the form are not given (the name then comes from the file's).
    empty = {k for k in ("name", "description") if not request.form.get(k, "").strip()}
    try:
        dataset = upload_from_form(g.tenant, handled_fields={CSRF_FIELD, *empty})
    except APIError as exc:
        if _wants_json():
            raise
        return render_template("upload.html", error=exc.message, form=request.form, **options), exc.status
    listing = url_for("web.datasets", uploaded=str(dataset.id))
    if _wants_json():
        return jsonify(
            {"id": str(dataset.id), "name": dataset.name, "sync_status": dataset.sync_status, "location": listing}
        ), 201
    flash(f"Uploaded {dataset.name}.", "success")
    return redirect(listing, 303)


def _preview(dataset) -> dict:
    try:
        source = runtime().store.open(dataset.file_name)
    except StoredFileMissing:
        return {"missing": True}
    page = _page("rows")
    with source:
        columns, rows, total = domain.preview_rows(source, limit=PREVIEW_ROWS, offset=(page - 1) * PREVIEW_ROWS)
    return {
        "missing": False,
        "columns": columns,
        "rows": rows,
        "total": total,
        "page": page,
        "pages": max(1, -(-total // PREVIEW_ROWS)),
        "first": (page - 1) * PREVIEW_ROWS + 1,
    }


def _sync_context(dataset_id: uuid.UUID) -> dict:
    with session_scope() as db:
        dataset = domain.get_for_tenant(db, g.tenant.id, dataset_id)
        state = domain.sync_status(db, dataset)
    return {
        "dataset": dataset,
        "sync": state,
        "polling": state["status"] in domain.ACTIVE_STATUSES,
        "sync_enabled": domain.sync_enabled(current_app.config),
    }


@bp.route("/datasets/<uuid:dataset_id>")
def dataset(dataset_id: uuid.UUID):
    context = _sync_context(dataset_id)
    return render_template("dataset.html", preview=_preview(context["dataset"]), **context)


@bp.route("/datasets/<uuid:dataset_id>/sync-panel")
def sync_panel(dataset_id: uuid.UUID):
    """The dataset page's sync section alone: polled while its run is under way."""
    return render_template("_sync_panel.html", **_sync_context(dataset_id))


@bp.route("/datasets/<uuid:dataset_id>/sync", methods=["POST"])
def sync(dataset_id: uuid.UUID):
    """Resync, or the first sync of a local-only dataset: the API's POST .../sync."""
    try:
        with session_scope() as db:
            dataset = domain.get_for_tenant(db, g.tenant.id, dataset_id, lock=True)
            first = dataset.sync_status == LOCAL_ONLY
            domain.request_resync(db, dataset)
        flash("Sync started." if first else "Resync started.", "success")
    except Conflict as exc:
        flash(exc.message, "error")
    return redirect(url_for("web.dataset", dataset_id=dataset_id), 303)


@bp.route("/datasets/<uuid:dataset_id>/delete", methods=["POST"])
def delete(dataset_id: uuid.UUID):
    with session_scope() as db:
        name = domain.get_for_tenant(db, g.tenant.id, dataset_id).name
    domain.delete_dataset(g.tenant.id, dataset_id)
    flash(f"Deleted {name}.", "success")
    return redirect(url_for("web.datasets"), 303)


@bp.route("/integration")
def integration():
    config = current_app.config
    return render_template(
        "integration.html", status=integration_status(config, g.tenant.id), flower_url=config["FLOWER_URL"]
    )
