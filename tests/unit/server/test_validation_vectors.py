"""The validation vectors the panel's jest tests also read (tests/vectors/validation.json),
run through the server's own rules: every case must get exactly its errors, in order, with
the same words. A case the server would answer differently from the panel fails here."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from hpcbridge.manifest import validate_submission

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "validation.json").read_text())


def server_answer(case: dict) -> list[dict]:
    """What the server says about a case: the file's app with the case's own keys over it."""
    return validate_submission({**VECTORS["app"], **case.get("app", {})}, case["submission"])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_the_server_answers_each_vector_like_the_panel(case):
    assert server_answer(case) == case["errors"]


@pytest.mark.parametrize("start", [
    "is required", "must be an integer", "must be a number", "must be at least",
    "must be at most", "must be a multiple of", "must be 1 plus a multiple of",
    "must be one of: ", "must be a string", "must be true or false", "unknown parameter",
    "unknown resource",
])
def test_the_vectors_cover_every_message(start):
    assert any(e["msg"].startswith(start) for c in VECTORS["cases"] for e in c["errors"])


@pytest.mark.parametrize("change", [
    lambda errors: errors[1].update(msg="must be one of fast, accurate"),  # wording
    lambda errors: errors.reverse(),  # order
    lambda errors: errors.pop(),  # one error fewer
])
def test_a_vector_that_differs_from_the_server_is_caught(change):
    case = copy.deepcopy(VECTORS["cases"][-1])  # the case with every kind of error
    change(case["errors"])
    assert server_answer(case) != case["errors"]
