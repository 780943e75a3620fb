"""Structured logs (hpcbridge/joblog.py, ConfigFileApp.log_format): JSON lines with the job's
fields, from a context variable that follows the work into copied contexts; the text form
names the job too; the services' --log-format option."""
from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import threading

import pytest

from hpcbridge import joblog
from hpcbridge.config import ConfigFileApp


class FakeJob:
    id = "a" * 32
    user = "alice"
    hpc = "slurm"


@pytest.fixture
def capture():
    """A logger writing through a handler with the job filter; (logger, stream, set format)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(joblog.JobContextFilter())
    logger = logging.getLogger("hpcbridge.test-joblog")
    logger.propagate, logger.level = False, logging.DEBUG
    logger.addHandler(handler)
    joblog.set_worker("worker-1")
    yield logger, stream, lambda fmt: handler.setFormatter(joblog.formatter(fmt))
    logger.removeHandler(handler)
    joblog.set_worker(None)


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_job_in_context_threads_and_loops(capture):
    logger, stream, use = capture
    use("json")
    logger.info("not about a job")
    with joblog.job_context(FakeJob()):
        logger.warning("staged %d files", 3)
        copied = contextvars.copy_context()  # what Runtime.run hands its io loop
        thread = threading.Thread(target=copied.run, args=(logger.info, "in a thread"))
        thread.start()
        thread.join()
        asyncio.run(_log_in_loop(logger))
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("failed")
    logger.info("after", extra=joblog.job_fields(FakeJob(), hpc="other"))
    first, staged, threaded, looped, failed, after = lines(stream)
    assert first == {"time": first["time"], "level": "INFO", "logger": "hpcbridge.test-joblog",
                     "message": "not about a job", "worker": "worker-1"}
    assert first["time"].endswith("+00:00")
    for record in (staged, threaded, looped, failed):
        assert (record["job_id"], record["user"], record["hpc"], record["worker"]) == \
            (FakeJob.id, "alice", "slurm", "worker-1"), record
    assert staged["message"] == "staged 3 files" and staged["level"] == "WARNING"
    assert "RuntimeError: boom" in failed["exc_info"]
    assert after["hpc"] == "other" and after["job_id"] == FakeJob.id  # extra= wins


async def _log_in_loop(logger):
    await asyncio.sleep(0)
    logger.info("in a coroutine")


def test_an_unrelated_thread_does_not_inherit_a_job(capture):
    logger, stream, use = capture
    use("json")
    with joblog.job_context(FakeJob()):
        thread = threading.Thread(target=logger.info, args=("poller",))  # a fresh context
        thread.start()
        thread.join()
        with joblog.job_context(hpc="nested"):
            logger.info("nested")
    poller, nested = lines(stream)
    assert "job_id" not in poller
    assert nested["job_id"] == FakeJob.id and nested["hpc"] == "nested"


def test_bind_in_a_scoped_function_ends_with_it(capture):
    logger, stream, use = capture
    use("json")

    @joblog.scoped
    def task(job):
        logger.info("before")
        joblog.bind(job)
        logger.info("during")
        return "done"
    assert task(FakeJob()) == "done"
    logger.info("next task")
    before, during, after = lines(stream)
    assert "job_id" not in before and "job_id" not in after
    assert during["job_id"] == FakeJob.id and during["user"] == "alice"


def test_text_lines_name_the_job_before_a_traceback(capture):
    logger, stream, use = capture
    use("text")
    adapter = joblog.JobLogAdapter(logger, FakeJob())
    try:
        raise ValueError("bad")
    except ValueError:
        adapter.exception("could not stage")
    logger.info("plain")
    text = stream.getvalue().splitlines()
    assert text[0].endswith(f"could not stage [job={FakeJob.id} user=alice hpc=slurm "
                            "worker=worker-1]")
    assert text[1] == "Traceback (most recent call last):"
    assert text[-1].endswith("INFO hpcbridge.test-joblog plain")
    with pytest.raises(ValueError):
        joblog.formatter("xml")


class App(ConfigFileApp):
    name = "joblog-test-app"


def test_the_log_format_option_of_the_services(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no hpcbridge_config.py here
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    app = App()
    app.initialize(["--log-format", "json"])
    assert joblog.log_format_of(app.config) == "json"
    try:
        with joblog.job_context(FakeJob()):
            app.log.warning("from the app")
            logging.getLogger("hpcbridge.server").info("from a module")
        out = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(o["logger"], o["message"], o["job_id"]) for o in out] == [
            ("App", "from the app", FakeJob.id), ("hpcbridge.server", "from a module",
                                                  FakeJob.id)]
    finally:  # the root logger as pytest had it
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert joblog.log_format_of(App().config) == "text"
