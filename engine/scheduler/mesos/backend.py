"""The agent pool of the backend the settings choose: local agents (the default) or Mesos.

pymesos is imported only when Mesos is chosen, so the local backend never needs it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.scheduler.local_pool import EventHandler, LocalAgentPool, LostHandler
from engine.scheduler.mesos.settings import Backend, MesosSettings
from engine.scheduler.offers import Placement
from engine.store import AsyncStore
from engine.workdir import WorkingDirectory

if TYPE_CHECKING:
    from engine.scheduler.mesos.pool import MesosAgentPool

BackendChoice = tuple[Backend, MesosSettings]


def build_pool(choice: BackendChoice | None, workdir: WorkingDirectory, store: AsyncStore,
               placement_of: Callable[[str], Placement | None], on_event: EventHandler,
               on_lost: LostHandler | None = None) -> LocalAgentPool | MesosAgentPool:
    """The pool the environment manager uses; `choice` None is the local backend."""
    if choice is None or choice[0] is Backend.LOCAL:
        return LocalAgentPool(workdir, on_event, on_lost)
    from engine.scheduler.mesos.pool import MesosAgentPool
    return MesosAgentPool(workdir, choice[1], store, placement_of, on_event, on_lost)
