"""Scheduler handlers, one per cluster type, and the factory that picks one.

The built-in handlers are below; a site adds or replaces one by configuration, not by
editing this module: `c.Site.scheduler_handlers = {"pbs": "mysite.handlers.PBSHandler"}`,
and an HPC entry with `"scheduler": "pbs"` is then driven by that class.
"""
from __future__ import annotations

from collections.abc import Mapping

from traitlets.utils.importstring import import_item

from ..config import HPCConfig
from ..transport import Transport
from .base import SchedulerHandler
from .local import LocalHandler
from .slurm import SlurmHandler

BUILTIN_HANDLERS: dict[str, type[SchedulerHandler]] = {
    "slurm": SlurmHandler,
    "local": LocalHandler,
}

# a site's registry: scheduler name → handler class, or its import string
Registry = Mapping[str, "type[SchedulerHandler] | str"]


class UnknownScheduler(ValueError):
    """An HPC names a scheduler no handler is registered for, or a registered handler is
    not a SchedulerHandler."""


def _known(registry: Registry | None) -> dict:
    return {**BUILTIN_HANDLERS, **(registry or {})}


def check_scheduler(scheduler: str, registry: Registry | None = None) -> None:
    """Refuse a scheduler name that no handler is registered for (importing none)."""
    known = _known(registry)
    if scheduler not in known:
        raise UnknownScheduler(f"no scheduler handler for {scheduler!r}; known: "
                               f"{', '.join(sorted(known))}")


def handler_class(scheduler: str, registry: Registry | None = None) -> type[SchedulerHandler]:
    """The handler class for a scheduler name: the site's registry over the built-ins."""
    check_scheduler(scheduler, registry)
    cls = entry = _known(registry)[scheduler]
    if isinstance(entry, str):
        try:
            cls = import_item(entry)
        except (ImportError, AttributeError) as exc:
            raise UnknownScheduler(
                f"scheduler handler {scheduler!r}: cannot import {entry!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, SchedulerHandler)):
        raise UnknownScheduler(f"scheduler handler {scheduler!r}: {cls!r} is not a "
                               "subclass of hpcbridge.connectors.handlers.SchedulerHandler")
    return cls


def handler_registry(registry: Registry | None = None) -> dict[str, type[SchedulerHandler]]:
    """Every scheduler name with its class, each import checked: a typo fails at start-up."""
    return {name: handler_class(name, registry) for name in _known(registry)}


def create_handler(config: HPCConfig | dict, transport: Transport | None = None,
                   registry: Registry | None = None) -> SchedulerHandler:
    """The handler for an HPC config (seeds/000's `cluster.create(mock=...)`); `registry`
    is the site's (Site.handler_registry()), merged over the built-ins."""
    if isinstance(config, dict):
        config = HPCConfig(**config)
    cls = handler_class(config.scheduler, registry)
    return cls(config, transport or cls.default_transport(config))


__all__ = ["SchedulerHandler", "SlurmHandler", "LocalHandler", "BUILTIN_HANDLERS",
           "UnknownScheduler", "check_scheduler", "handler_class", "handler_registry", "create_handler"]
