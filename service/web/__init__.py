"""The web console: server-rendered pages over the same domain functions as the JSON API.

A user signs in with an API key; the session cookie (signed with SECRET_KEY, HttpOnly,
SameSite=Lax) then holds the key's id, checked on every request, so a revoked key signs the
session out. Every POST of the console carries a CSRF token; the JSON API's blueprints take
bearer keys, never cookies, and are left alone.
"""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from service.web.filters import register_filters
from service.web.views import bp, csrf


def register_web(app: Flask) -> None:
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="lakesync_session",
        # Checked only where the console asks (views.protect), so no API route is touched.
        WTF_CSRF_CHECK_DEFAULT=False,
        # A token lives as long as the session: a page left open for hours still submits.
        WTF_CSRF_TIME_LIMIT=None,
    )
    csrf_protect: CSRFProtect = csrf
    csrf_protect.init_app(app)
    register_filters(app)
    app.register_blueprint(bp)
