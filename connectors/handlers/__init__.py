"""Scheduler handlers, one per cluster type, and the factory that picks one."""
from __future__ import annotations

from ..config import HPCConfig
from .base import SchedulerHandler
from .local import LocalHandler
from .slurm import SlurmHandler

HANDLERS: dict[str, type[SchedulerHandler]] = {
    SlurmHandler.kind: SlurmHandler,
    LocalHandler.kind: LocalHandler,
}


def create_handler(config: HPCConfig | dict, transport=None) -> SchedulerHandler:
    """The handler for an HPC config (seeds/000's `cluster.create(mock=...)`)."""
    if isinstance(config, dict):
        config = HPCConfig(**config)
    try:
        cls = HANDLERS[config.scheduler]
    except KeyError:
        raise ValueError(f"no scheduler handler for {config.scheduler!r}") from None
    if transport is None and cls is SlurmHandler:
        from ..pool import ConnectorPool
        transport = ConnectorPool(config)
    return cls(config, transport)


__all__ = ["SchedulerHandler", "SlurmHandler", "LocalHandler", "create_handler", "HANDLERS"]
