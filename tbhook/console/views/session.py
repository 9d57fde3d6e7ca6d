"""Signing in with the console's token, signing out, and the one-time notice a form leaves
for the page it leads to (what happened, from the server's own state: never text from the
URL)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tbhook.console.site import Site


def login(site: Site, request: Request, form: Any) -> Response:
    from tbhook.console.guard import same_secret, too_many

    guard = site.guard
    state = request.scope["state"]
    if guard is None or guard.token is None or (request.method == "GET" and state["signed_in"]):
        return RedirectResponse("/", status_code=303)
    if request.method == "GET":
        return site.page(request, "login.html", wrong=False)
    # Spaces around it are no part of it (a token has none), as in a Bearer header.
    if same_secret((form or {}).get("token", "").strip(), guard.token):
        guard.sessions.end(state["session"])
        sid = guard.sessions.start(state["secure"])  # a new id: a planted one stays unsigned
        cookie = guard.cookie(sid, state["secure"], int(guard.sessions.lifetime))
        response = RedirectResponse("/", status_code=303)
        response.raw_headers.append((b"set-cookie", cookie))
        return response
    wait = guard.signins.failed(state["address"])
    if wait:
        guard.locked_out(state["address"], wait)
        page = site.error(request, 429, too_many(wait))
        page.headers["retry-after"] = str(wait)
        return page
    return site.page(request, "login.html", status=401, wrong=True)


def logout(site: Site, request: Request, _form: Any) -> Response:
    """Sign out: the session is forgotten here, and the browser gets a new, unsigned id."""
    from tbhook.console.sessions import new_id

    guard = site.guard
    state = request.scope["state"]
    guard.sessions.end(state["session"])
    response = RedirectResponse("/login" if guard.token else "/", status_code=303)
    response.raw_headers.append((b"set-cookie", guard.cookie(new_id(), state["secure"])))
    return response


def remember(site: Site, request: Request, text: str) -> str:
    """Keep ``text`` for this session's next page: the query string that names it."""
    state = request.scope["state"]
    return f"notice={site.guard.sessions.notice(state['session'], text)}"


def recall(site: Site, request: Request) -> str | None:
    """The notice the URL names, if this session left it and has not seen it yet."""
    key = request.query_params.get("notice")
    if not key or site.guard is None:
        return None
    return site.guard.sessions.take_notice(request.scope["state"]["session"], key)
