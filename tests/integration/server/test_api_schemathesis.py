"""Property-based testing of the live middleware against its own OpenAPI document.

schemathesis generates requests from GET /api/v1/spec — valid ones (positive mode) and
invalid ones (negative mode) — and every response must be no 5xx, carry a documented status
and content type, and match the documented schema. One pytest case per operation and token.

Run against a real middleware process (tests/services.py) with static tokens: the fuzzer
makes thousands of requests, and the point here is the API's contract, not hub auth (that
is covered in test_api.py against the real hub).
"""
from __future__ import annotations

import json
import os
import re

import pytest
import requests
from services import Services, local_hpc

from hpcbridge.server.openapi import build_openapi

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# examples per operation and generation mode: 22 operations x 2 modes x 2 tokens stay
# well under two minutes here
MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
TOKENS = {"fuzz-user-token": "fuzzer", "fuzz-admin-token": "admin"}

# Left out, and why:
# - GET /events/stream: a server-sent event stream never ends by design; a generated
#   request would only end at the client's timeout, and its body is not JSON to validate.
#   (test_api.py reads it.)
# - POST /apps with the admin token: `source` is a folder on the middleware's machine or a
#   git URL it clones — fuzzing it would make the server clone arbitrary URLs. As a normal
#   user it is fuzzed (and must answer 403).
SKIPPED = {("get", "/events/stream"): "endless SSE stream"}
ADMIN_SKIPPED = {("post", "/apps"): "would git-clone generated URLs"}

LOCAL_SPEC = build_openapi("/api/v1")
OPERATIONS = [(method, path) for path, ops in LOCAL_SPEC["paths"].items() for method in ops]


def _cases(tokens: dict | None = None, admins: tuple = ("admin",)):
    """(method, path, token, seeded) for every operation and token of `tokens` ({token:
    who}); seeded only where there is something to seed (a path parameter, or the app of
    POST /jobs)."""
    tokens = TOKENS if tokens is None else tokens
    for method, path in OPERATIONS:
        short = path.removeprefix("/api/v1")
        seedable = "{" in path or (method, short) == ("post", "/jobs")
        for token, who in tokens.items():
            for seeded in (False, True) if seedable else (False,):
                reason = SKIPPED.get((method, short)) or (
                    ADMIN_SKIPPED.get((method, short)) if who in admins else None)
                yield pytest.param(
                    method, path, token, seeded,
                    id=f"{method.upper()} {short} [{who}{', seeded' if seeded else ''}]",
                    marks=[pytest.mark.skip(reason=reason)] if reason else [])


@pytest.fixture(scope="module")
def fuzz_services(tmp_path_factory, stack):
    tmp = tmp_path_factory.mktemp("fuzz")
    svc = Services(str(tmp), stack, auth="static", static_tokens=TOKENS,
                   hpcs=[local_hpc(str(tmp / "data"))],
                   extra_config="c.HPCBridgeServer.max_upload_size = 1 << 20")
    # no maintainer: generated jobs stay queued instead of running generated parameters
    svc.start(maintainer=False)
    yield svc
    svc.stop()
    _empty_queue(svc, stack)
    errors = [line for line in svc.log("server").splitlines()
              if "ERROR" in line or "Traceback" in line]
    assert not errors, "the middleware logged errors while fuzzed:\n" + "\n".join(errors)


def _empty_queue(svc, stack):
    """The rq jobs that no maintainer took: remove them from the shared Redis."""
    import redis
    from rq import Queue
    conn = redis.Redis.from_url(stack["redis_url"])
    try:
        Queue(f"hpcbridge-test-{svc.run_id}.local", connection=conn).empty()
    finally:
        conn.close()


def seed_results(svc, token: str, outside, name: str) -> dict:
    """Real objects for the seeded pass: a job of `token`'s user with a result tree
    (holding links that point out of it, to `outside`, which must never be followed)."""
    with svc.client(token) as http:
        job = http.post("jobs", json={"app": "hello", "params": {"lines": 1}})
        assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    results = os.path.join(svc.data_dir, "results", job_id)
    os.makedirs(os.path.join(results, "result", "sub"))
    with open(os.path.join(results, "result", "greeting.txt"), "w") as f:
        f.write("Hello, world!\n")
    with open(os.path.join(results, "result", "sub", "x.csv"), "w") as f:
        f.write("a,b\n1,2\n")
    secret = outside / "secret.txt"
    secret.write_text("must not be served")
    os.symlink(secret, os.path.join(results, "result", "escape.txt"))
    os.symlink(secret.parent, os.path.join(results, "result", "escape-dir"))
    return {"job_id": job_id, "app_id": "hello", "hpc_id": "local", "name": name}


@pytest.fixture(scope="module")
def seeds(fuzz_services, tmp_path_factory):
    return seed_results(fuzz_services, "fuzz-user-token", tmp_path_factory.mktemp("outside"),
                        "fuzzer")


@pytest.fixture(scope="module")
def api_schema(fuzz_services):
    return schemathesis.openapi.from_url(f"{fuzz_services.api}/spec")


def test_the_served_document_is_the_generated_one(fuzz_services):
    served = requests.get(f"{fuzz_services.api}/spec", timeout=10)
    assert served.status_code == 200
    assert served.headers["Content-Type"].startswith("application/json")
    from openapi_spec_validator import validate
    validate(served.json())
    assert served.json() == json.loads(json.dumps(LOCAL_SPEC))


# parameters of the bundled `hello` app, with values of every JSON type
_ANY = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                 st.text(max_size=20), st.lists(st.integers(), max_size=2))
HELLO_PARAMS = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.text(max_size=50), _ANY),
    "lines": st.one_of(st.integers(min_value=1, max_value=100), _ANY,
                       st.integers(min_value=10**18, max_value=10**400)),
    "delay": st.one_of(st.floats(min_value=0, max_value=60), _ANY,
                       st.integers(min_value=10**300, max_value=10**400)),
})


# result paths: real files and folders, links out of the tree, escapes, and noise
RESULT_PATHS = st.one_of(
    st.sampled_from(["result/greeting.txt", "result", "result/sub", "result/sub/x.csv", "",
                     ".", "result/escape.txt", "result/escape-dir", "result/escape-dir/secret.txt",
                     "../../../../etc/passwd", "result/../../", "/etc/passwd", "result/\x00x",
                     "result/%2e%2e/%2e%2e", "a" * 300]),
    st.text(max_size=30))


def _seeded_strategy(operation, mode, seeds, path):
    """Generated cases with real ids in the path, and (POST /jobs) a real app with
    generated parameters, so the fuzzer gets past the 404s and 'unknown app' 422s."""
    fixed = {n: seeds[n] for n in re.findall(r"\{(\w+)\}", path) if n in seeds}
    base = operation.as_strategy(generation_mode=mode,
                                 **({"path_parameters": fixed} if fixed else {}))
    if path.endswith("/results/{path}"):
        def with_path(pair):
            case, rel = pair
            case.path_parameters = {**case.path_parameters, "path": rel}
            return case
        return st.tuples(base, RESULT_PATHS).map(with_path)
    if path.endswith("/jobs") and operation.method.upper() == "POST":
        def with_app(pair):
            case, params = pair
            if isinstance(case.body, dict):
                case.body = {**case.body, "app": "hello", "params": params}
                case.body.pop("hpc", None)
                case.body.pop("upload", None)
            return case
        return st.tuples(base, HELLO_PARAMS).map(with_app)
    return base


@pytest.mark.parametrize("method, path, token, seeded", list(_cases()))
def test_operation_keeps_its_contract(api_schema, fuzz_services, seeds, method, path, token,
                                      seeded):
    seen = run_operation(api_schema, fuzz_services.url, seeds, method, path, token, seeded)
    print(f"{method.upper()} {path.removeprefix('/api/v1')} "
          f"[{TOKENS[token]}{', seeded' if seeded else ''}]: {dict(sorted(seen.items()))}")


def run_operation(api_schema, base_url: str, seeds: dict, method: str, path: str,
                  token: str, seeded: bool, max_examples: int = MAX_EXAMPLES) -> dict:
    """Drive one operation with `token` in both generation modes; every check must hold
    and no answer be a 5xx. {status: count} of the answers. (Also used by the security
    suite, tests/security/test_server_fuzz.py, with every hub user's token.)"""
    op_doc = LOCAL_SPEC["paths"][path][method]
    operation = api_schema[path][method.upper()]
    headers = {"Authorization": f"token {token}"}
    session = requests.Session()
    seen: dict[int, int] = {}

    modes = [GenerationMode.POSITIVE]
    if op_doc.get("parameters") or op_doc.get("requestBody"):
        modes.append(GenerationMode.NEGATIVE)  # (nothing to make invalid otherwise)
    for mode in modes:
        strategy = (_seeded_strategy(operation, mode, seeds, path) if seeded
                    else operation.as_strategy(generation_mode=mode))

        @given(case=strategy)
        @settings(max_examples=max_examples, deadline=None, database=None,
                  derandomize=True, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call_and_validate(base_url=base_url, session=session,
                                              headers=headers, checks=CHECKS, timeout=30)
            assert b"must not be served" not in response.content  # links stay unfollowed
            assert b"Traceback" not in response.content
            seen[response.status_code] = seen.get(response.status_code, 0) + 1

        run()
    assert seen, "no request was made"
    assert not [s for s in seen if s >= 500], seen
    return seen
