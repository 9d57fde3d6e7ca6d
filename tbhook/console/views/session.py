"""Signing in with the console's token."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tbhook.console.site import Site


def login(site: Site, request: Request, form: Any) -> Response:
    from tbhook.console.guard import same_secret, session_cookie

    guard = site.guard
    if guard is None or guard.token is None:
        return RedirectResponse("/", status_code=303)
    if request.method == "POST":
        given = (form or {}).get("token", "")
        if same_secret(given, guard.token):
            response = RedirectResponse("/", status_code=303)
            response.raw_headers.append((b"set-cookie", session_cookie(guard)))
            return response
        return site.page(request, "login.html", status=401, wrong=True)
    return site.page(request, "login.html", wrong=False)
