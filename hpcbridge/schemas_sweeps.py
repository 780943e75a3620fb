"""The API's models of parameter sweeps (issue #24): shared by server and SDK."""
from __future__ import annotations

# OpenAPI entries, in hpcbridge.server.openapi's ROUTES form:
# (method, path, summary, request model, {status: response model or [model]}, admin)
ROUTES: list[tuple] = []
QUERY: dict[str, list] = {}  # path -> [(name, schema)], like openapi.QUERY
