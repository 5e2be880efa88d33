"""Reading a status page's server-sent events as a browser's EventSource does."""

from __future__ import annotations

import http.client


def next_event(response: http.client.HTTPResponse, kind: str) -> dict[str, str]:
    """The next event of `kind` on an open /events response (its fields: id, event, data),
    skipping the others (overview events come too)."""
    event: dict[str, str] = {}
    while event.get("event") != kind:
        event = {}
        for line in iter(response.readline, b"\n"):
            name, _, value = line.decode().rstrip("\n").partition(": ")
            event[name] = value
    return event
