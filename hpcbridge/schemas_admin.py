"""The API's models of the operations API: health, stuck jobs, usage (issue #25): shared by server and SDK."""
from __future__ import annotations

# OpenAPI entries, in hpcbridge.server.openapi's ROUTES form:
# (method, path, summary, request model, {status: response model or [model]}, admin)
ROUTES: list[tuple] = []
QUERY: dict[str, list] = {}  # path -> [(name, schema)], like openapi.QUERY
