"""A parameter sweep from the panel's submit form (issue #24), in chromium, on the stack's
Slurm: `lines` marked as a range, the form says how many jobs that makes, the sweep is
posted to /sweeps, and its elements appear in the job list with their sweep's progress
until every one has succeeded. Screenshots into docs/screenshots/."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SWEEP_WAIT = 180_000  # ms


def test_sweep_with_a_range_from_the_form(lab_page, bridge, hub, shoot):
    page, t = lab_page, lab_page.get_by_test_id
    api = bridge.client(hub.tokens["alice"])
    t("hpcbridge-new-job").click()
    t("hpcbridge-app-select").select_option("hello")
    t("hpcbridge-hpc-select").select_option("slurm")
    t("hpcbridge-param-name").fill("Sweep")
    t("hpcbridge-param-delay").fill("1")
    t("hpcbridge-sweep-mode-lines").select_option("range")
    t("hpcbridge-sweep-start-lines").fill("1")
    t("hpcbridge-sweep-stop-lines").fill("4")
    t("hpcbridge-sweep-step-lines").fill("1")
    expect(t("hpcbridge-submit")).to_have_text("Submit sweep (3 jobs)")
    shoot(page, "sweep-form.png")
    # a range with a value out of the rule's bounds is caught on its field, nothing sent
    t("hpcbridge-sweep-stop-lines").fill("500")
    t("hpcbridge-sweep-step-lines").fill("100")
    t("hpcbridge-submit").click()
    expect(t("hpcbridge-field-error-lines")).to_contain_text("must be at most 100")
    assert api.get("sweeps").json()["total"] == 0
    t("hpcbridge-sweep-stop-lines").fill("4")
    t("hpcbridge-sweep-step-lines").fill("1")
    expect(t("hpcbridge-field-error-lines")).to_have_count(0)
    t("hpcbridge-submit").click()

    # the list: three elements of one sweep, with its aggregate view
    summary = t("hpcbridge-sweep-summary")
    expect(summary).to_have_count(1, timeout=30_000)
    expect(summary).to_contain_text("3 jobs")
    rows = t("hpcbridge-job-row")
    expect(rows.filter(has=t("hpcbridge-job-sweep"))).to_have_count(3, timeout=30_000)
    sweep_id = summary.get_attribute("data-sweep-id")
    for i in range(3):
        expect(rows.filter(has_text=f"#{i}")).to_have_count(1)
    shoot(page, "sweep-progress.png")

    expect(summary).to_have_attribute("data-done", "true", timeout=SWEEP_WAIT)
    expect(t("hpcbridge-sweep-counts")).to_have_text("3 succeeded", timeout=10_000)
    for i in range(3):
        expect(rows.nth(i)).to_have_attribute("data-status", "succeeded", timeout=10_000)
    expect(summary).to_contain_text("100%")

    sweep = api.get(f"sweeps/{sweep_id}").json()
    assert sweep["size"] == 3 and sweep["counts"] == {"succeeded": 3}, sweep
    jobs = api.get(f"sweeps/{sweep_id}/jobs").json()["jobs"]
    assert sorted(j["params"]["lines"] for j in jobs) == [1, 2, 3]
    assert {j["params"]["name"] for j in jobs} == {"Sweep"}

    # a second sweep (a list this time), cancelled as a whole from its summary
    t("hpcbridge-new-job").click()
    t("hpcbridge-app-select").select_option("hello")
    t("hpcbridge-hpc-select").select_option("slurm")
    t("hpcbridge-param-name").fill("Slow")
    t("hpcbridge-param-delay").fill("30")
    t("hpcbridge-sweep-mode-lines").select_option("list")
    t("hpcbridge-sweep-list-lines").fill("2, 3")
    expect(t("hpcbridge-submit")).to_have_text("Submit sweep (2 jobs)")
    t("hpcbridge-submit").click()
    slow = summary.filter(has_text="2 jobs")
    expect(slow).to_have_count(1, timeout=30_000)
    def is_cancel(r) -> bool:  # (the URL carries a cache-busting query)
        return r.request.method == "POST" and r.url.split("?")[0].endswith("/cancel")
    with page.expect_response(is_cancel) as cancel:
        slow.get_by_test_id("hpcbridge-sweep-cancel").click()
    assert cancel.value.status == 202 and cancel.value.json()["size"] == 2
    # (how fast its elements end is the sweep engine's: tests/integration/server)
    assert not page.errors, page.errors
