"""Holding Mesos offers only while a deployment may want them (reference §7.2).

A deployment revives offers and looks at them (`hold` each time); HOLD_SECONDS after the
last look the held ones are declined and offers suppressed, so an idle engine neither
sits on a cluster's resources nor gets offers every second. Offers that come while
nothing holds are declined at once. `wait` lets a deployment (or a launch whose offers a
racing deployment took) wait for fresh offers of the agents it needs.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from engine.scheduler.mesos.offer_book import MesosOffer, OfferBook

if TYPE_CHECKING:
    from engine.scheduler.mesos.framework import Framework

HOLD_SECONDS = 10.0  # offers are kept this long after the last look, then declined
OFFER_WAIT = 5.0  # seconds a deployment (or a launch) waits for offers of its agents

Spawn = Callable[[Awaitable[None], str], None]  # follow a call made; log its failure


class OfferHolder:
    """The offers held now (`book`, by machine_id) and when to let them go."""

    def __init__(self, framework: Callable[[], Framework | None], spawn: Spawn) -> None:
        self.book = OfferBook()
        self._framework = framework
        self._spawn = spawn
        self._came = asyncio.Event()
        self._hold_until = 0.0
        self._suppressed = False
        self._idle_check: asyncio.TimerHandle | None = None

    @property
    def suppressed(self) -> bool:
        return self._suppressed

    def machines(self) -> set[str]:
        return self.book.machines()

    def hold(self) -> None:
        """Keep offers for HOLD_SECONDS from now, then decline them and suppress."""
        self._hold_until = time.monotonic() + HOLD_SECONDS
        if self._idle_check is None:
            self._idle_check = asyncio.get_running_loop().call_later(
                HOLD_SECONDS + 0.1, self._check_idle)

    async def revive(self) -> None:
        """Offers wanted again (a deployment): REVIVE, held from now on."""
        framework = self._framework()
        self.hold()
        self._suppressed = False
        if framework is not None:
            await framework.revive()

    def receive(self, offers: Iterable[MesosOffer], unreadable: Iterable[str] = ()) -> None:
        """Offers that came: held while a deployment may want them, declined otherwise
        (and those that cannot be read)."""
        holding = time.monotonic() < self._hold_until and self._framework() is not None
        refused = list(unreadable)
        for offer in offers:
            if not holding or not self.book.add(offer):
                refused.append(offer.offer_id)
        if refused:
            self.let_go(refused)
        came, self._came = self._came, asyncio.Event()
        came.set()

    def give_back(self, offers: Iterable[MesosOffer]) -> None:
        """Offers taken for a launch that did not use them: held again."""
        for offer in offers:
            self.book.add(offer)

    async def wait(self, machines: set[str], timeout: float) -> bool:
        """Until an offer of each of `machines` is held; False once `timeout` s passed."""
        deadline = time.monotonic() + timeout
        while not machines <= self.book.machines():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._came.wait(), remaining)
        return True

    def let_go(self, offer_ids: list[str]) -> None:
        """Decline offers nobody wants, and suppress until the next deployment revives."""
        framework = self._framework()
        if framework is None:
            return
        if offer_ids:
            self._spawn(framework.decline(offer_ids), "DECLINE")
        if not self._suppressed:
            self._suppressed = True
            self._spawn(framework.suppress(), "SUPPRESS")

    def stop(self) -> None:
        """The framework stops: nothing held any more (the master takes its offers back)."""
        if self._idle_check is not None:
            self._idle_check.cancel()
            self._idle_check = None
        self.book.take_all()

    def _check_idle(self) -> None:
        self._idle_check = None
        left = self._hold_until - time.monotonic()
        if left > 0:
            self._idle_check = asyncio.get_running_loop().call_later(left + 0.1,
                                                                     self._check_idle)
            return
        self.let_go([o.offer_id for o in self.book.take_all()])
