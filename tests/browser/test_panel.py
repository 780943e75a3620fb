"""The HPC Jobs panel in a real JupyterLab, driven by chromium, against the real stack.

The JupyterLab server extension forwards to a real middleware + maintainer (tests/services.py)
that check alice's token with the stack's JupyterHub and run the jobs on the stack's Slurm
over ssh. Nothing is mocked. Screenshots of the panel go to docs/screenshots/.
"""
from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.stack, pytest.mark.slow]

FINAL = {"succeeded", "failed", "cancelled"}
JOB_WAIT = 180_000  # ms; generous: other test runs share Slurm and the login node


def watch_row_status(row, timeout_s: float) -> list[str]:
    """The row's data-status values as they change, until final (the list's live status)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = row.get_attribute("data-status", timeout=10_000)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in FINAL:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the row stayed {seen[-1] if seen else '?'} for {timeout_s} s "
                         f"(seen: {seen})")


def fill_hello(page, name: str, lines: str, delay: str) -> None:
    t = page.get_by_test_id
    t("hpcbridge-app-select").select_option("hello")
    t("hpcbridge-hpc-select").select_option("slurm")
    t("hpcbridge-param-name").fill(name)
    t("hpcbridge-param-lines").fill(lines)
    t("hpcbridge-param-delay").fill(delay)


def test_submit_watch_logs_download_and_cancel(lab_page, lab, bridge, hub, shoot):
    page, t = lab_page, lab_page.get_by_test_id
    api = bridge.client(hub.tokens["alice"])

    # --- the empty list of alice (the panel speaks for her through the real hub token) ---
    expect(t("hpcbridge-quota")).to_contain_text("alice")
    expect(t("hpcbridge-empty")).to_contain_text("No jobs yet")

    # --- the form: a bad value is caught on its field, nothing is sent ---
    t("hpcbridge-new-job").click()
    expect(t("hpcbridge-app-select")).to_be_visible()
    fill_hello(page, "Grace", "1000", "1")
    expect(t("hpcbridge-hpc-select")).to_have_value("slurm")
    expect(t("hpcbridge-field-error-lines")).to_have_text("must be at most 100")
    t("hpcbridge-param-lines").press("Tab")
    t("hpcbridge-submit").click()
    expect(t("hpcbridge-form-error")).to_contain_text("fix the highlighted fields")
    expect(t("hpcbridge-field-error-lines")).to_have_text("must be at most 100")
    t("hpcbridge-upload-path").fill("mydata")
    shoot(page, "panel-form.png")
    assert api.get("jobs").json()["total"] == 0

    # --- the server's own check: the form's value is fine, the request it sends is not ---
    t("hpcbridge-param-lines").fill("5")
    expect(t("hpcbridge-field-error-lines")).to_have_count(0)

    def too_many_lines(route):
        if route.request.method != "POST":
            return route.continue_()
        body = json.loads(route.request.post_data)
        body["params"]["lines"] = 1000
        return route.continue_(post_data=json.dumps(body))

    def is_submit(url: str) -> bool:
        return url.split("?")[0].endswith("/hpcbridge/api/jobs")

    page.route(is_submit, too_many_lines)
    with page.expect_response(lambda r: is_submit(r.url) and r.request.method == "POST",
                              timeout=60_000) as answer:
        t("hpcbridge-submit").click()
    assert answer.value.status == 422, answer.value.text()
    expect(t("hpcbridge-field-error-lines")).to_have_text("must be at most 100")
    expect(t("hpcbridge-form-error")).to_contain_text("The server did not accept some fields")
    page.unroute(is_submit, too_many_lines)
    assert api.get("jobs").json()["total"] == 0

    # --- submit for real (with the data folder as upload); watch the list go live ---
    t("hpcbridge-param-lines").fill("")  # editing the field clears the server's message
    t("hpcbridge-param-lines").fill("5")
    expect(t("hpcbridge-field-error-lines")).to_have_count(0)
    t("hpcbridge-submit").click()
    detail = page.locator(".hpcbridge-detail[data-job-id]")
    expect(detail).to_be_visible(timeout=60_000)
    job_id = detail.get_attribute("data-job-id")
    t("hpcbridge-back").click()
    row = page.locator(f'[data-testid="hpcbridge-job-row"][data-job-id="{job_id}"]')
    expect(row).to_be_visible()
    seen = watch_row_status(row, JOB_WAIT / 1000)
    assert seen[-1] == "succeeded", (seen, api.get(f"jobs/{job_id}/events").json())
    assert seen[0] not in FINAL, seen  # the row changed without a reload
    expect(page.locator(".Toastify__toast").filter(has_text=f"HPC job {job_id[:8]}")
           ).to_contain_text("succeeded", timeout=30_000)
    job = api.get(f"jobs/{job_id}").json()
    assert (job["user"], job["app"], job["hpc"], job["status"]) == \
        ("alice", "hello", "slurm", "succeeded")
    assert job["params"]["lines"] == 5 and job["upload"]

    # --- its detail: logs, exit code, results ---
    row.click()
    expect(t("hpcbridge-job-status")).to_have_attribute("data-status", "succeeded")
    log = t("hpcbridge-log-stdout")
    expect(log).to_contain_text("[1/5] Hello, Grace!", timeout=30_000)
    expect(log).to_contain_text("[5/5] Hello, Grace!")
    expect(log).to_have_attribute("data-complete", "true", timeout=30_000)
    expect(t("hpcbridge-exit-code")).to_have_text("0")
    expect(t("hpcbridge-results")).to_contain_text("result/greeting.txt", timeout=30_000)
    t("hpcbridge-log-tab-stderr").click()
    expect(t("hpcbridge-log-stderr")).to_contain_text("done", timeout=30_000)
    t("hpcbridge-log-tab-stdout").click()
    expect(log).to_contain_text("[5/5] Hello, Grace!")
    page.locator("#hpcbridge-panel .hpcbridge-body").evaluate("el => el.scrollTop = 0")
    shoot(page, "panel-detail.png")

    # --- download the results into the Jupyter home; the file browser shows them ---
    t("hpcbridge-download").click()
    rel = f"hpcbridge-results/{job_id}"
    expect(t("hpcbridge-downloaded")).to_contain_text(rel, timeout=60_000)
    browser = page.locator(".jp-FileBrowser")
    expect(browser).to_be_visible(timeout=30_000)
    expect(browser.locator(".jp-BreadCrumbs")).to_contain_text("hpcbridge-results")
    folder = browser.locator(".jp-DirListing-item", has_text="result")
    expect(folder).to_be_visible(timeout=30_000)
    folder.dblclick()
    expect(browser.locator(".jp-DirListing-item", has_text="greeting.txt")).to_be_visible()
    expect(browser.locator(".jp-DirListing-item", has_text="data_listing.txt")).to_be_visible()
    result = lab.root / rel / "result"
    assert (result / "greeting.txt").read_text() == "Hello, Grace!\n"
    listing = (result / "data_listing.txt").read_text()
    assert "cities.csv" in listing and "notes.txt" in listing, listing

    # --- a long job, cancelled with confirmation while it runs ---
    page.locator('[data-id="hpcbridge-panel"]').click()  # back from the file browser
    expect(page.locator("#hpcbridge-panel")).to_be_visible()
    t("hpcbridge-new-job").click()
    fill_hello(page, "Long", "100", "5")
    t("hpcbridge-submit").click()
    expect(detail).not_to_have_attribute("data-job-id", job_id, timeout=60_000)
    long_id = detail.get_attribute("data-job-id")
    status = t("hpcbridge-job-status")
    expect(status).to_have_attribute("data-status", "running", timeout=JOB_WAIT)
    expect(t("hpcbridge-log-stdout")).to_contain_text("[1/100] Hello, Long!", timeout=60_000)
    t("hpcbridge-cancel").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Cancel job?")
    dialog.get_by_role("button", name="Cancel job").click()
    expect(dialog).to_have_count(0)
    expect(status).to_have_attribute("data-status", "cancelled", timeout=JOB_WAIT)
    expect(t("hpcbridge-cancel")).to_have_count(0)
    long_job = api.get(f"jobs/{long_id}").json()
    assert long_job["status"] == "cancelled", long_job
    logs = api.get(f"jobs/{long_id}/logs").text
    assert 1 <= logs.count("Hello, Long!") < 100, logs

    # --- the list: both jobs with their final status; a filter ---
    t("hpcbridge-back").click()
    rows = t("hpcbridge-job-row")
    expect(rows).to_have_count(2)
    expect(page.locator(f'[data-testid="hpcbridge-job-row"][data-job-id="{long_id}"]')
           ).to_have_attribute("data-status", "cancelled")
    expect(row).to_have_attribute("data-status", "succeeded")
    t("hpcbridge-filter-status").select_option("cancelled")
    expect(rows).to_have_count(1)
    t("hpcbridge-filter-status").select_option("")
    expect(rows).to_have_count(2)
    shoot(page, "panel-list.png")
    assert not page.errors, page.errors


def test_middleware_down_shows_the_error_banner(lab_page, bridge):
    page, t = lab_page, lab_page.get_by_test_id
    banner = t("hpcbridge-error-banner")
    middleware_line = banner.locator('[data-kind="middleware"]')
    expect(t("hpcbridge-quota")).to_contain_text("alice")
    expect(middleware_line).to_have_count(0)

    bridge.stop("server")
    try:
        expect(middleware_line).to_have_count(1, timeout=30_000)
        expect(banner).to_contain_text("hpcbridge middleware unreachable")
        expect(banner).to_contain_text(bridge.url)
    finally:
        bridge._spawn("server", "server")  # same config and port
        bridge.wait_health()
    # the panel notices by itself that the middleware is back
    expect(middleware_line).to_have_count(0, timeout=30_000)
    expect(t("hpcbridge-quota")).to_contain_text("alice")
    assert not page.errors, page.errors
