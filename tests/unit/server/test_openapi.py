"""The OpenAPI document (server/openapi.py): a valid OpenAPI 3.1 document that describes
exactly the routes the middleware serves, with the models it really answers."""
from __future__ import annotations

import datetime as dt
import json
import re

import jsonschema
import pytest
from openapi_spec_validator import validate
from tornado import web

from hpcbridge import schemas as S
from hpcbridge.lifecycle import STATUSES
from hpcbridge.server import handlers as H
from hpcbridge.server.app import make_routes
from hpcbridge.server.openapi import ROUTES, build_openapi

PREFIX = "/api/v1"
SAMPLE = {"job_id": "0123456789abcdef0123456789abcdef", "app_id": "hello", "path": "a/b.txt",
          "name": "alice", "hpc_id": "local", "sweep_id": "0123456789abcdef0123456789abcdef",
          "session_id": "0123456789abcdef0123456789abcdef"}
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def doc() -> dict:
    return build_openapi(PREFIX)


def test_the_document_is_valid_openapi_3_1(doc):
    validate(doc)  # raises on any violation
    assert doc["openapi"] == "3.1.0"
    assert json.loads(json.dumps(doc)) == doc  # plain JSON


def test_a_prefix_behind_the_hub_proxy_is_in_every_path():
    doc = build_openapi("/services/hpcbridge/api/v1")
    validate(doc)
    assert all(p.startswith("/services/hpcbridge/api/v1/") for p in doc["paths"])


def _route_for(path: str):
    """The handler class that serves a concrete path (first matching route, like tornado)."""
    for pattern, handler in make_routes(PREFIX):
        if re.fullmatch(pattern, path):
            return handler
    return None


def _implements(handler, method: str) -> bool:
    return getattr(handler, method, None) is not getattr(web.RequestHandler, method)


def test_every_documented_operation_is_served(doc):
    for path, ops in doc["paths"].items():
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)
        handler = _route_for(concrete)
        assert handler is not None and handler is not H.NotFoundHandler, path
        for method in ops:
            assert _implements(handler, method), f"{method.upper()} {path} not served"


def test_every_served_operation_is_documented(doc):
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    for pattern, handler in make_routes(PREFIX):
        if handler in (H.NotFoundHandler, H.SpecHandler):
            continue
        for method in METHODS:
            if not _implements(handler, method):
                continue
            matches = [p for m, p in documented if m == method and re.fullmatch(
                pattern, re.sub(r"\{(\w+)\}", lambda g: SAMPLE[g.group(1)], p))]
            assert matches, f"{method.upper()} {pattern} is served but not documented"


def _resolve(doc, schema):
    if "$ref" in schema:
        return doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_ref_resolves(doc):
    text = json.dumps(doc)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert refs and refs <= set(doc["components"]["schemas"])


def test_every_operation_documents_the_error_body(doc):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status in ("400", "401", "404", "422", "500"):
                body = op["responses"][status]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
            assert op["operationId"] and op["summary"]
            if path != f"{PREFIX}/health":
                assert op["security"] == [{"token": []}]
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_error_body_schema_matches_what_the_server_sends(doc):
    schema = doc["components"]["schemas"]["ErrorBody"]
    body = S.ErrorBody(error="validation_error", message="params.n must be at most 10",
                       details=[S.ErrorDetail(loc=["params", "n"], msg="must be at most 10")])
    jsonschema.validate(json.loads(body.model_dump_json()), _inline(doc, schema))
    with pytest.raises(jsonschema.ValidationError):  # the schema is closed
        jsonschema.validate({"error": "x", "message": "y", "trace": "..."}, _inline(doc, schema))


def _inline(doc, schema):
    """The schema with the document's components beside it, so that plain jsonschema
    resolves its `#/components/schemas/...` refs."""
    return {**schema, "components": doc["components"]}


def test_job_info_schema_accepts_a_real_job_and_refuses_unknown_statuses(doc):
    job = S.JobInfo(id="a" * 32, user="alice", app="hello", hpc="local", status="running",
                    created_at=dt.datetime.now(dt.timezone.utc),
                    updated_at=dt.datetime.now(dt.timezone.utc))
    schema = _inline(doc, {"$ref": "#/components/schemas/JobInfo"})
    jsonschema.validate(json.loads(job.model_dump_json()), schema)
    bad = {**json.loads(job.model_dump_json()), "status": "exploded"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_query_bounds_are_the_handlers_bounds(doc):
    jobs = {p["name"]: p["schema"] for p in doc["paths"][f"{PREFIX}/jobs"]["get"]["parameters"]}
    assert jobs["limit"]["minimum"] == 1 and jobs["limit"]["maximum"] == 1000
    assert jobs["offset"]["minimum"] == 0
    assert jobs["status"]["items"]["enum"] == list(STATUSES)
    logs = {p["name"]: p["schema"] for p in
            doc["paths"][f"{PREFIX}/jobs/{{job_id}}/logs"]["get"]["parameters"]}
    assert logs["stream"]["enum"] == ["stdout", "stderr"]
    job_id = doc["paths"][f"{PREFIX}/jobs/{{job_id}}"]["get"]["parameters"][0]["schema"]
    assert re.fullmatch(job_id["pattern"].strip("^$"), SAMPLE["job_id"])


def test_request_bodies_are_the_pydantic_models(doc):
    post_jobs = doc["paths"][f"{PREFIX}/jobs"]["post"]["requestBody"]["content"]
    assert post_jobs["application/json"]["schema"] == {"$ref": "#/components/schemas/JobCreate"}
    job_create = doc["components"]["schemas"]["JobCreate"]
    assert job_create["required"] == ["app"] and job_create["additionalProperties"] is False
    upload = doc["paths"][f"{PREFIX}/uploads"]["post"]["requestBody"]["content"]
    assert "application/octet-stream" in upload
    assert len(ROUTES) == sum(len(ops) for ops in doc["paths"].values())
