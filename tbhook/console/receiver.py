"""What the receiver says about itself, for the health page: its ``/healthz`` and, when it
runs with ``--metrics``, how many deliveries it refused since it started. Tracebuzz disables a
webhook after 10 failed deliveries in a row, so these are the numbers to watch."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urljoin

TIMEOUT_SECONDS = 1.0  # the page waits no longer than this for a receiver that hangs


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.status, response.read(4 << 20)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(1 << 16)


def status(receiver: str) -> dict[str, Any]:
    """``reachable``, ``ok`` and ``reason`` from /healthz; ``refused`` (by status) and
    ``unavailable`` (503s by reason) from /metrics, or None without ``--metrics``."""
    found: dict[str, Any] = {"url": receiver, "reachable": False, "ok": False, "reason": None}
    found.update(refused=None, unavailable=None)
    try:
        code, body = _get(urljoin(receiver, "/healthz"))
    except (OSError, ValueError) as exc:
        why = getattr(exc, "reason", exc)  # urllib's URLError wraps the OSError
        found["reason"] = f"not reachable ({getattr(why, 'strerror', None) or why})"
        return found
    try:
        document = json.loads(body)
    except ValueError:
        document = {}
    found.update(reachable=True, ok=code == 200, reason=document.get("reason"))
    if not isinstance(document, dict) or "status" not in document:
        found.update(ok=False, reason=f"answered {code}, and not as a tbhook receiver does")
        return found
    try:
        code, body = _get(urljoin(receiver, "/metrics"))
    except (OSError, ValueError):
        return found
    if code == 200 and b"tbhook_deliveries" in body:
        found["refused"], found["unavailable"] = _counts(body.decode("utf-8", "replace"))
    return found


OUTCOME_STATUS = {"unauthorized": 401, "too_large": 413, "unavailable": 503}


def _counts(text: str) -> tuple[dict[int, int], dict[str, int]]:
    from prometheus_client.parser import text_string_to_metric_families

    refused = dict.fromkeys(OUTCOME_STATUS.values(), 0)
    unavailable: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tbhook_deliveries_total":
                code = OUTCOME_STATUS.get(sample.labels.get("outcome", ""))
                if code:
                    refused[code] += int(sample.value)
            elif sample.name == "tbhook_unavailable_total" and sample.value:
                unavailable[sample.labels.get("reason", "")] = int(sample.value)
    return refused, unavailable
