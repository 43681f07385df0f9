"""Mesos offers held by the framework, as the shared Offer records the matching reads.

An agent may have several offers out at once (what an ACCEPT left over comes back
as a new one): the book merges them per agent, and a launch accepts them all in one
ACCEPT. Agents are known by their `machine_id` attribute (§7.2: every offer must
carry one); an offer without it is refused, named in the log.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.scheduler.offers import (MACHINE_ID, Offer, ResourceUse, normalize_ranges,
                                     ranges_without)
from engine.task.taskclass import PortRange

log = logging.getLogger("engine.scheduler.mesos")

Json = dict[str, Any]


@dataclass(frozen=True)
class MesosOffer:
    """One Mesos offer, parsed: who offers and what."""

    offer_id: str
    agent_id: str
    hostname: str
    attributes: Mapping[str, str]
    cpus: float
    mem: float
    ports: tuple[PortRange, ...]
    executor_ids: tuple[str, ...] = ()

    @property
    def machine_id(self) -> str:
        return self.attributes.get(MACHINE_ID, "")


def _attribute_text(attribute: Mapping[str, Any]) -> str:
    kind = attribute.get("type")
    if kind == "TEXT":
        return str(attribute.get("text", {}).get("value", ""))
    if kind == "SCALAR":
        value = float(attribute.get("scalar", {}).get("value", 0.0))
        return str(int(value)) if value.is_integer() else str(value)
    if kind == "RANGES":
        ranges = attribute.get("ranges", {}).get("range", [])
        return ",".join(f"{r['begin']}-{r['end']}" for r in ranges)
    if kind == "SET":
        return ",".join(attribute.get("set", {}).get("item", []))
    return ""


def parse_offer(offer: Mapping[str, Any]) -> MesosOffer:
    """A Mesos v1 Offer (JSON as pymesos hands it) as a MesosOffer."""
    cpus = mem = 0.0
    ports: list[PortRange] = []
    for resource in offer.get("resources", []):
        name = resource.get("name")
        if name == "cpus":
            cpus += float(resource.get("scalar", {}).get("value", 0.0))
        elif name == "mem":
            mem += float(resource.get("scalar", {}).get("value", 0.0))
        elif name == "ports":
            ports += [PortRange(int(r["begin"]), int(r["end"]))
                      for r in resource.get("ranges", {}).get("range", [])]
    attributes = {str(a.get("name", "")): _attribute_text(a)
                  for a in offer.get("attributes", [])}
    return MesosOffer(offer_id=str(offer["id"]["value"]),
                      agent_id=str(offer["agent_id"]["value"]),
                      hostname=str(offer.get("hostname", "")), attributes=attributes,
                      cpus=cpus, mem=mem, ports=normalize_ranges(ports),
                      executor_ids=tuple(str(e["value"]) for e in offer.get("executor_ids", [])))


@dataclass(frozen=True)
class ExecutorCost:
    """What a new executor takes from its agent's first offer (AliECS: 0.01 cpus, 64 MB)."""

    cpus: float
    mem: float


class OfferBook:
    """The offers held now, by agent machine_id."""

    def __init__(self) -> None:
        self._held: dict[str, dict[str, MesosOffer]] = {}

    def __len__(self) -> int:
        return sum(len(offers) for offers in self._held.values())

    def add(self, offer: MesosOffer) -> bool:
        """Hold `offer`; False (not held) when it names no machine_id."""
        if not offer.machine_id:
            log.error("Mesos offer %s from agent %s (%s) has no %s attribute: refused",
                      offer.offer_id, offer.agent_id, offer.hostname, MACHINE_ID)
            return False
        self._held.setdefault(offer.machine_id, {})[offer.offer_id] = offer
        return True

    def remove(self, offer_id: str) -> None:
        for offers in self._held.values():
            offers.pop(offer_id, None)

    def machines(self) -> set[str]:
        return {machine for machine, offers in self._held.items() if offers}

    def take(self, machine_id: str) -> list[MesosOffer]:
        """The offers of one agent, no longer held (they are being accepted)."""
        return list(self._held.pop(machine_id, {}).values())

    def take_all(self) -> list[MesosOffer]:
        held, self._held = self._held, {}
        return [offer for offers in held.values() for offer in offers.values()]

    def offers(self, extra: Mapping[str, Iterable[ResourceUse]], executor_cost: ExecutorCost,
               running_executors: Iterable[str] = ()) -> list[Offer]:
        """Each agent's held offers merged into one Offer, `extra` (placements not launched
        yet) subtracted, and a new executor's share where none of ours runs yet."""
        records: list[Offer] = []
        have_executor = set(running_executors)
        for machine_id, held in sorted(self._held.items()):
            if not held:
                continue
            parts = list(held.values())
            first = parts[0]
            uses = list(extra.get(machine_id, ()))
            executors = tuple(dict.fromkeys(e for part in parts for e in part.executor_ids))
            starts_executor = not executors and machine_id not in have_executor
            cpus = sum(p.cpus for p in parts) - sum(u.cpus for u in uses)
            mem = sum(p.mem for p in parts) - sum(u.mem for u in uses)
            if starts_executor:
                cpus -= executor_cost.cpus
                mem -= executor_cost.mem
            ports = ranges_without(normalize_ranges(r for p in parts for r in p.ports),
                                   {port for use in uses for port in use.ports})
            records.append(Offer(agent_id=machine_id, hostname=first.hostname,
                                 attributes=first.attributes, cpus=max(cpus, 0.0),
                                 mem=max(mem, 0.0), ports=ports, executor_ids=executors,
                                 offer_id=",".join(held)))
        return records
