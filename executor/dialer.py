"""Reaching a freshly started process's control port, with AliECS's patience.

AliECS dials with gRPC's blocking dial: base backoff 200 ms, ×1.1 per try,
jitter 0.02, minimum connect timeout 5 s, 45 s overall. gRPC's own channel
backoff cannot be given a ×1.1 multiplier from Python, so the schedule is kept
here: a cheap TCP probe on that schedule, then one OCC client whose channel
must come up. The process may well still be importing when we start.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

from executor.occ_client import OccClient, connect


@dataclass(frozen=True)
class Backoff:
    base: float = 0.2
    multiplier: float = 1.1
    jitter: float = 0.02
    connect_timeout: float = 5.0  # one attempt's budget once something listens

    def delays(self) -> Iterator[float]:
        """base, base×m, base×m², … each spread by ±jitter."""
        delay = self.base
        while True:
            yield delay * (1 + random.uniform(-self.jitter, self.jitter))
            delay *= self.multiplier


class DialTimeout(TimeoutError):
    """Nothing answered OCC on the port within the dial timeout."""


async def _listening(host: str, port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def dial(host: str, port: int, *, json: bool, timeout: float = 45.0,
               backoff: Backoff = Backoff(), token: str = "") -> OccClient:
    """An OCC client whose channel is connected; DialTimeout after `timeout` s.
    `token` (the task's OCC_CONTROL_TOKEN) goes with every call of the client."""
    address = f"{host}:{port}"
    deadline = time.monotonic() + timeout
    attempts = 0
    for delay in backoff.delays():
        attempts += 1
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if await _listening(host, port, min(backoff.connect_timeout, left)):
            client = connect(address, json=json, token=token)
            try:
                await client.wait_connected(max(0.0, min(backoff.connect_timeout,
                                                         deadline - time.monotonic())))
                return client
            except TimeoutError:
                await client.close()
            except BaseException:
                await client.close()
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(delay, left))
    raise DialTimeout(f"no OCC endpoint answered on {address} within {timeout:g} s "
                      f"({attempts} attempts)")
