"""Structured logs: JSON lines (python-json-logger) or text, with the job, its user, its HPC
and the worker on every line about a job.

The job a line is about comes from a context variable, set in one place per unit of work:

    with job_context(job):            # job: anything with .id, .user, .hpc
        log.info("staged")            # → {"message": "staged", "job_id": …, "user": …, …}

It follows the work into threads' copies of the context (the maintainer's Runtime.run hands
coroutines to its io loop with one), and `set_worker` names the worker on every line of the
process. Where a `with` block does not fit, `bind(job)` says it for the rest of a function run
under `@scoped`. `extra=job_fields(job)` or `JobLogAdapter(log, job)` say it for one call.
`configure(fmt)` installs the handler (in place of logging.basicConfig).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

FORMATS = ("text", "json")
JOB_FIELDS = ("job_id", "user", "hpc", "worker")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_job: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "hpcbridge_job_log", default={})  # noqa: B039 — never mutated: replaced as a whole
_process: dict[str, Any] = {}  # fields of every line of this process (the worker id)


def job_fields(job=None, **fields: Any) -> dict[str, Any]:
    """The log fields of a job (an object with .id, .user, .hpc), plus `fields`; unknown
    ones (None) are left out."""
    out = {}
    if job is not None:
        out = {"job_id": getattr(job, "id", None), "user": getattr(job, "user", None),
               "hpc": getattr(job, "hpc", None)}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


@contextlib.contextmanager
def job_context(job=None, **fields: Any) -> Iterator[dict[str, Any]]:
    """Every line logged inside (in this thread, and in contexts copied from it) carries
    the job's fields; nested contexts add to the outer one."""
    token = _job.set({**_job.get(), **job_fields(job, **fields)})
    try:
        yield _job.get()
    finally:
        _job.reset(token)


def bind(job=None, **fields: Any) -> None:
    """Say the job for the rest of the current context: for a function run under `scoped`
    (one line where the job is known, without a `with` block)."""
    _job.set({**_job.get(), **job_fields(job, **fields)})


def scoped(fn: Callable) -> Callable:
    """Run `fn` in a copy of the caller's context: whatever it `bind`s ends with it (an rq
    task's job does not stick to the next task run by the same thread)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return contextvars.copy_context().run(fn, *args, **kwargs)
    return run


def current_job_fields() -> dict[str, Any]:
    return {**_process, **_job.get()}


def set_worker(worker_id: str | None) -> None:
    """Name the worker on every line this process logs (None: no longer)."""
    if worker_id is None:
        _process.pop("worker", None)
    else:
        _process["worker"] = worker_id


class JobContextFilter(logging.Filter):
    """Puts the job's fields on each record (those an `extra=` did not set already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_job_fields().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JobLogAdapter(logging.LoggerAdapter):
    """`JobLogAdapter(log, job).info(...)`: the job's fields on each call's record."""

    def __init__(self, logger: logging.Logger, job=None, **fields: Any):
        super().__init__(logger, job_fields(job, **fields))

    def process(self, msg, kwargs):
        kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs


class TextFormatter(logging.Formatter):
    """The plain format, with `[job=… user=… hpc=… worker=…]` after a line about a job."""

    def __init__(self, fmt: str = TEXT_FORMAT, datefmt: str | None = None):
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if getattr(record, "job_id", None) is None:
            return line
        tags = " ".join(f"{name.removesuffix('_id')}={getattr(record, name)}"
                        for name in JOB_FIELDS if getattr(record, name, None) is not None)
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{tags}]{newline}{rest}"


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, the job's
    fields when known, `exc_info` with a traceback, and any `extra=` field."""
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:  # python-json-logger < 3
        from pythonjsonlogger.jsonlogger import JsonFormatter
    return JsonFormatter("%(levelname)s %(name)s %(message)s", timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger"})


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
    return json_formatter() if fmt == "json" else TextFormatter()


def configure(fmt: str = "text", level: int | str = logging.INFO,
              loggers: tuple[logging.Logger, ...] = ()) -> logging.Handler:
    """Log to stderr in `fmt` from every logger (the root's one handler, in place of
    logging.basicConfig) and from `loggers` that have handlers of their own (a traitlets
    application's log); every handler gets the job fields. Returns the root's handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(JobContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for logger in loggers:
        for own in logger.handlers:
            own.setFormatter(formatter(fmt))
            if not any(isinstance(f, JobContextFilter) for f in own.filters):
                own.addFilter(JobContextFilter())
    return handler


def log_format_of(config) -> str:
    """The log format a traitlets Config asks for (for processes started with the parent's
    config, such as maintainer workers): the `log_format` of any application's section."""
    for section in config.values():
        if hasattr(section, "get") and section.get("log_format") in FORMATS:
            return section["log_format"]
    return "text"
