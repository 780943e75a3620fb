"""REST handlers, one module per resource. They translate between HTTP and the API models;
the rules live elsewhere (server/submission.py, hpcbridge.manifest, hpcbridge.archive)."""
from .admin import (
    AdminCancelHandler,
    AdminDrainHandler,
    AdminJobsHandler,
    AdminQuotaHandler,
    AdminWorkersHandler,
)
from .apps import AppHandler, AppsHandler
from .base import APIHandler
from .events import EventStreamHandler
from .jobs import JobCancelHandler, JobEventsHandler, JobHandler, JobLogsHandler, JobsHandler
from .meta import HealthHandler, HPCsHandler, MeHandler, NotFoundHandler, SpecHandler
from .results import ResultFileHandler, ResultsHandler
from .uploads import UploadHandler

__all__ = [
    "APIHandler", "AdminCancelHandler", "AdminDrainHandler", "AdminJobsHandler",
    "AdminQuotaHandler", "AdminWorkersHandler", "AppHandler", "AppsHandler",
    "EventStreamHandler", "HPCsHandler", "HealthHandler", "JobCancelHandler",
    "JobEventsHandler", "JobHandler", "JobLogsHandler", "JobsHandler", "MeHandler",
    "NotFoundHandler", "ResultFileHandler", "ResultsHandler", "SpecHandler", "UploadHandler",
]
