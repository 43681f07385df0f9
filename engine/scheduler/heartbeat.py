"""The engine's heartbeat on each local executor's channel.

An executor's event stream is silent while nothing happens, so without a beat of its
own a cut channel (a network partition, a frozen executor) would be noticed only at the
next command's deadline, up to 100 s later. Each connected executor is asked a
Heartbeat every `interval` seconds; one silent for `timeout` seconds is unreachable: its
tasks are reported TASK_LOST, as Mesos reports a partitioned agent's tasks (§1.2), and
its environments go to ERROR where a lost task is critical. When it answers again its
tasks' real states are reported back, as a re-registered Mesos agent's are.

```yaml
heartbeat:        # nutshell.yaml; both in seconds
  interval: 2
  timeout: 15
```
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.scheduler.agents import AgentSpecError, positive_number
from engine.scheduler.local_agent import LocalAgentClient, LocalAgentError

log = logging.getLogger("engine.scheduler")

SECTION = "heartbeat"
DEFAULT_INTERVAL = 2.0
DEFAULT_TIMEOUT = 15.0
_KEYS = frozenset({"interval", "timeout"})


@dataclass(frozen=True)
class HeartbeatSettings:
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT


def parse_heartbeat(document: Any, origin: str) -> HeartbeatSettings:
    """The `heartbeat:` section of a parsed nutshell.yaml; the defaults without one."""
    if not isinstance(document, Mapping) or SECTION not in document:
        return HeartbeatSettings()
    section = document[SECTION]
    if not isinstance(section, Mapping):
        raise AgentSpecError(f"{origin}: heartbeat: must be a mapping with interval and "
                             f"timeout (seconds), not {type(section).__name__}")
    unknown = sorted(str(key) for key in section if key not in _KEYS)
    if unknown:
        raise AgentSpecError(f"{origin}: heartbeat.{unknown[0]}: unknown key (known: "
                             f"{', '.join(sorted(_KEYS))})")
    interval = positive_number(section.get("interval"), f"{origin}: heartbeat.interval",
                               DEFAULT_INTERVAL)
    timeout = positive_number(section.get("timeout"), f"{origin}: heartbeat.timeout",
                              DEFAULT_TIMEOUT)
    if timeout <= interval:
        raise AgentSpecError(f"{origin}: heartbeat.timeout: {timeout:g} s must be longer than "
                             f"the interval ({interval:g} s), or one late beat is a lost agent")
    return HeartbeatSettings(interval, timeout)


class Heartbeat:
    """Beats one executor until cancelled; tells the pool when it goes silent and when it
    answers again. A silent executor whose process is gone is not called unreachable: the
    pool's event follower reports it lost (its tasks died with it)."""

    def __init__(self, name: str, client: LocalAgentClient, settings: HeartbeatSettings, *,
                 gone: Callable[[], bool], silent: Callable[[str], None],
                 back: Callable[[float], Awaitable[bool]]) -> None:
        self.name = name
        self._client = client
        self._settings = settings
        self._gone = gone
        self._silent = silent
        self._back = back
        self.unreachable_since: float | None = None  # monotonic time of the last answer

    async def run(self) -> None:
        interval, timeout = self._settings.interval, self._settings.timeout
        last_answer = time.monotonic()
        while True:
            began = time.monotonic()
            quiet = began - last_answer
            try:  # the call may use what is left of the timeout, and at least an interval
                await self._client.heartbeat(max(interval, timeout - quiet))
            except LocalAgentError as error:
                quiet = time.monotonic() - last_answer
                if (self.unreachable_since is None and quiet >= timeout
                        and not await asyncio.to_thread(self._gone)):
                    self.unreachable_since = last_answer
                    why = (f"agent {self.name} is unreachable: its executor has not answered "
                           f"a heartbeat for {quiet:.0f} s (timeout {timeout:g} s; last: "
                           f"{_reason(error)}); its tasks' fate is unknown")
                    log.error("%s", why)
                    self._silent(why)
            else:
                if self.unreachable_since is not None:
                    silence = time.monotonic() - self.unreachable_since
                    if await self._back(silence):
                        log.warning("agent %s answers again after %.0f s", self.name, silence)
                        self.unreachable_since = None
                last_answer = time.monotonic()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))


def _reason(error: LocalAgentError) -> str:
    return error.code.name if error.code is not None else str(error)
