"""The hosts view: every declared agent with its attributes, resources used and free, ports
and executor, and the environments' tasks placed on it; re-read on the engine's events
(tasks placed and gone change the counts), at most one read under way: at once for an
environment event (a deployment or a destroy), at most once every TASK_READ_INTERVAL for
task events alone (hundreds a second in a large environment, most of them state changes
that move nothing).
"""
from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.timer import Timer
from textual.widgets import Footer, Header

from console.tui.components.live_view import LiveView
from console.tui.components.record_table import RecordTable
from console.tui.messages import EngineEvents
from engine import AgentInfo, EventKind

TASK_READ_INTERVAL = 1.0  # s: the least time between two reads asked by task events alone

COLUMNS: tuple[tuple[str, str], ...] = (
    ("agent", "AGENT"), ("machine", "MACHINE"), ("hostname", "HOSTNAME"),
    ("executor", "EXECUTOR"), ("tasks", "TASKS"), ("cpus", "CPUS USED/TOTAL"),
    ("cpus_free", "CPUS FREE"), ("mem", "MEM USED/TOTAL"), ("mem_free", "MEM FREE"),
    ("ports", "PORT RANGES"), ("ports_used", "PORTS IN USE"), ("attributes", "ATTRIBUTES"),
)


def amount(value: float) -> str:
    """2 not 2.0; 0.01 stays 0.01."""
    return f"{value:g}"


def agent_row(agent: AgentInfo) -> dict[str, str]:
    executor = f"pid {agent.executor_pid}" if agent.executor_running else "stopped"
    return {
        "agent": agent.name, "machine": agent.machine_id, "hostname": agent.hostname,
        "executor": executor, "tasks": str(agent.tasks),
        "cpus": f"{amount(agent.cpus_used)}/{amount(agent.cpus)}",
        "cpus_free": amount(max(agent.cpus - agent.cpus_used, 0.0)),
        "mem": f"{amount(agent.mem_used)}/{amount(agent.mem)}",
        "mem_free": amount(max(agent.mem - agent.mem_used, 0.0)),
        "ports": agent.port_ranges, "ports_used": str(len(agent.ports_in_use)),
        "attributes": ", ".join(f"{key}={value}" for key, value in sorted(
            agent.attributes.items())),
    }


class HostsView(LiveView):
    DEFAULT_CSS = "HostsView #hosts { height: 1fr; }"
    VIEW_NAME: ClassVar[str] = "hosts"

    def compose(self) -> ComposeResult:
        yield Header()
        yield RecordTable(COLUMNS, id="hosts")
        yield Footer()

    @property
    def table(self) -> RecordTable:
        return self.query_one(RecordTable)

    _task_read: Timer | None = None  # a read asked by task events, waiting its turn

    async def reload(self) -> None:
        agents = await self.engine.list_agents()
        self.table.set_records({agent.name: agent_row(agent) for agent in agents})

    def on_engine_events(self, message: EngineEvents) -> None:
        message.prevent_default()
        if any(event.kind is not EventKind.TASK for event in message.events):
            if self._task_read is not None:
                self._task_read.stop()
                self._task_read = None
            self.request_reload()
        elif message.events and self._task_read is None:
            self._task_read = self.set_timer(TASK_READ_INTERVAL, self._timed_read)

    def _timed_read(self) -> None:
        self._task_read = None
        self.request_reload()
