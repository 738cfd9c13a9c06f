"""What HTTP metrics and spans of every aiohttp app share."""

from __future__ import annotations

from aiohttp import web


def route_of(request: web.Request) -> str:
    """The route template (`/v1/conversations/{conversation_id}/messages`), never the raw path:
    a label with a bounded set of values."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
