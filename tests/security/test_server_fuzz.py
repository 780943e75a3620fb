"""Schemathesis with every hub user's token (issue 20): the contract run of
tests/integration/server/test_api_schemathesis.py (reused, not copied), against the
suite's middleware with hub auth, for the users with hostile names and the hub's admin.
0 server errors, every answer documented."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "server"))
contract = pytest.importorskip("test_api_schemathesis")

pytestmark = [pytest.mark.stack, pytest.mark.slow]

MAX_EXAMPLES = 20  # per operation, mode and user: five users keep this near a minute
USERS = ("admin#", "alice?", "carol d", "zoë", "admin")  # labels; tokens come at run time


@pytest.fixture(scope="module")
def user_tokens(odd_users, hub) -> dict[str, str]:
    by_label = {label: token for label in USERS[:-1]
                for name, token in odd_users.items() if name.startswith(label)}
    by_label["admin"] = hub.tokens["admin"]
    assert set(by_label) == set(USERS)
    return by_label


@pytest.fixture(scope="module")
def fuzz_schema(bridge):
    return contract.schemathesis.openapi.from_url(f"{bridge.api}/spec")


@pytest.fixture(scope="module")
def user_seeds(bridge, user_tokens, odd_users, tmp_path_factory) -> dict[str, dict]:
    names = {token: name for name, token in odd_users.items()}
    return {label: contract.seed_results(bridge, token, tmp_path_factory.mktemp("outside"),
                                         names.get(token, "admin"))
            for label, token in user_tokens.items()}


@pytest.mark.parametrize("method, path, label, seeded",
                         list(contract._cases({u: u for u in USERS})))
def test_every_user_s_token_keeps_the_contract(fuzz_schema, bridge, user_tokens, user_seeds,
                                              method, path, label, seeded):
    seen = contract.run_operation(fuzz_schema, bridge.url, user_seeds[label], method, path,
                                  user_tokens[label], seeded, max_examples=MAX_EXAMPLES)
    print(f"{method.upper()} {path} [{label}]: {dict(sorted(seen.items()))}")
