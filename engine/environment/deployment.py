"""Placing an environment's tasks on the agents' offers, with AliECS's retries (reference §7.2).

AliECS makes up to 5 attempts, 1 s apart; an attempt fails when a critical descriptor
is undeployed (an agent meets its constraints but lacks resources) or undeployable
(no agent meets its constraints). We retry only what a retry can fix: while a critical
descriptor is undeployed and none is undeployable, the descriptors not placed yet are
tried again on fresh offers (what earlier attempts placed is subtracted). An
undeployable critical descriptor fails at once: the agents are the ones nutshell.yaml
declares, so no later offer can meet its constraints. Non-critical descriptors never
make an attempt fail; whatever is still unplaced at the end is reported.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from engine.scheduler.matching import match
from engine.scheduler.offers import Offer, Placement, TaskDescriptor, Unplaced

MAX_ATTEMPTS = 5  # MAX_ATTEMPTS_PER_DEPLOY_REQUEST
ATTEMPT_INTERVAL = 1.0  # seconds between attempts

OfferSource = Callable[[Sequence[Placement]], Iterable[Offer]]  # offers, given what is placed


@dataclass(frozen=True)
class Deployment:
    """Where each descriptor went, what could not be placed and how many attempts it took."""

    deployed: tuple[Placement, ...]
    undeployed: tuple[Unplaced, ...]
    undeployable: tuple[Unplaced, ...]
    attempts: int

    def reasons(self) -> list[tuple[Unplaced, str]]:
        """Each unplaced descriptor with the reason its table row shows."""
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return ([(u, f"UNDEPLOYABLE: {u.reason}") for u in self.undeployable]
                + [(u, f"undeployed after {tries}: {u.reason}") for u in self.undeployed])


async def place(descriptors: Sequence[TaskDescriptor], offers: OfferSource, *,
                attempts: int | None = None, interval: float | None = None) -> Deployment:
    """Place `descriptors`, retrying as the module says (by default MAX_ATTEMPTS attempts,
    ATTEMPT_INTERVAL s apart)."""
    attempts = MAX_ATTEMPTS if attempts is None else attempts
    interval = ATTEMPT_INTERVAL if interval is None else interval
    deployed: list[Placement] = []
    undeployable: list[Unplaced] = []
    pending = list(descriptors)
    attempt = 0
    while True:
        attempt += 1
        result = match(pending, offers(deployed))
        deployed += result.deployed
        undeployable += result.undeployable
        critical_short = any(u.descriptor.critical for u in result.undeployed)
        hopeless = any(u.descriptor.critical for u in undeployable)
        if not critical_short or hopeless or attempt >= attempts:
            return Deployment(tuple(deployed), result.undeployed, tuple(undeployable), attempt)
        pending = [u.descriptor for u in result.undeployed]
        await asyncio.sleep(interval)
