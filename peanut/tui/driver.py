"""What the TUI does with its session, away from any widget: connect, poll, follow, send.

The driver runs its background loops (GetState every 2 s, EventStream and, in
direct mode, StateStream) as asyncio tasks it owns, and reports everything as
messages for the app to show. Reconnecting replaces the session and its loops.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.message import Message

from executor.occ_client import OccCallError
from occlib.states import OccState
from peanut.config_file import ConfigFileError, load_config_file
from peanut.connection import LinkState, describe_failure, link_state_after
from peanut.modes import PeanutMode, buttons_of
from peanut.session import DeviceStatus, PeanutSession, TransitionResult
from peanut.tui.messages import (BusyChanged, ConfigChanged, LinkChanged, LogLine,
                                 StatusChanged)

POLL_INTERVAL = 2.0
CONNECT_TIMEOUT = 5.0  # the TUI keeps polling after this, so a late task still shows up


class SessionDriver:
    def __init__(self, address: str, mode: PeanutMode, timeout: float,
                 post: Callable[[Message], object], token: str = "") -> None:
        self.address = address
        self.token = token  # the task's OCC_CONTROL_TOKEN
        self.mode = mode
        self.timeout = timeout
        self._post = post
        self.session: PeanutSession | None = None
        self.link = LinkState.CONNECTING
        self.status: DeviceStatus | None = None
        self.busy = False
        self.config_path = ""
        self._config: dict[str, str] = {}
        self._config_pushed = False
        self._loops: list[asyncio.Task[None]] = []
        self._streams: list[asyncio.Task[None]] = []

    # -- link ---------------------------------------------------------------

    async def connect(self) -> None:
        """(Re)open the session and start watching it; the config stays loaded."""
        await self._drop_session()
        session = PeanutSession(self.address, self.mode, self.timeout, self.token)
        session.load_config(self._config)
        session.config_pushed = self._config_pushed
        self.session = session
        self._set_link(LinkState.CONNECTING,
                       f"connecting to {self.address} ({self.mode} mode, {self.mode.codec})")
        self._loops.append(asyncio.create_task(self._watch(session)))

    async def close(self) -> None:
        await self._drop_session()

    async def _drop_session(self) -> None:
        tasks = self._loops + self._streams
        self._loops, self._streams = [], []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            session, self.session = self.session, None
            await session.close()

    def _set_link(self, link: LinkState, detail: str = "") -> None:
        if link is self.link and not detail:
            return
        self.link = link
        self._post(LinkChanged(link, detail))

    async def _watch(self, session: PeanutSession) -> None:
        limit = min(self.timeout, CONNECT_TIMEOUT)
        try:
            await session.client.wait_connected(limit)
        except TimeoutError as err:
            self._set_link(LinkState.UNREACHABLE, describe_failure(err, self.address, self.mode, limit))
        while True:
            await self.refresh(session)
            await asyncio.sleep(POLL_INTERVAL)

    async def refresh(self, session: PeanutSession | None = None) -> None:
        """GetState once; the link state follows from how it went."""
        session = session or self.session
        if session is None:
            return
        try:
            status = await session.status()
        except (OccCallError, TimeoutError) as err:
            if session is not self.session:
                return
            link = link_state_after(err)
            if link is None:
                self._post(LogLine(f"GetState failed: {err}", "red"))
            elif link is not self.link:
                self._set_link(link, self._failure(err))
            return
        if session is not self.session:
            return
        if self.link is not LinkState.CONNECTED:
            self._set_link(LinkState.CONNECTED, f"connected to {self.address}, pid {status.pid}")
            self._follow(session)
        self._show(status)

    def _failure(self, error: BaseException) -> str:
        return describe_failure(error, self.address, self.mode, self.timeout)

    def _show(self, status: DeviceStatus) -> None:
        if status != self.status:
            self.status = status
            self._post(StatusChanged(status))

    # -- streams ------------------------------------------------------------

    def _follow(self, session: PeanutSession) -> None:
        """Open the streams once per connection (again after the task came back)."""
        self._streams = [t for t in self._streams if not t.done()]
        if self._streams:
            return
        self._streams.append(asyncio.create_task(self._events(session)))
        if not self.mode.json:
            self._streams.append(asyncio.create_task(self._states(session)))

    async def _events(self, session: PeanutSession) -> None:
        try:
            async for event in session.event_stream():
                self._post(LogLine(f"event {event.name}", "yellow"))
        except OccCallError as err:
            self._post(LogLine(f"event stream failed: {err}", "red"))
            return
        self._post(LogLine("event stream ended", "dim"))

    async def _states(self, session: PeanutSession) -> None:
        try:
            async for kind, state in session.state_stream():
                self._post(LogLine(f"state {state} ({kind.name})", "cyan"))
                if session is self.session and self.status is not None:
                    self._show(DeviceStatus(state, OccState.parse(state), self.status.pid))
        except OccCallError as err:
            self._post(LogLine(f"state stream failed: {err}", "red"))
            return
        self._post(LogLine("state stream ended", "dim"))

    # -- transitions --------------------------------------------------------

    async def send(self, event: str) -> None:
        """One button press: `event` from the task's current state, then a fresh GetState."""
        session = self.session
        if event not in buttons_of(self.mode):
            self._post(LogLine(f"{event} is not a {self.mode} transition", "red"))
            return
        if self.busy:
            self._post(LogLine(f"{event} ignored: a transition is still running", "red"))
            return
        if session is None or self.link is not LinkState.CONNECTED:
            self._post(LogLine(f"{event} not sent: {self.address} is {self.link}", "red"))
            return
        self._set_busy(True)
        try:
            await self._send(session, event)
        finally:
            self._set_busy(False)
        if session is self.session:
            await self.refresh(session)

    async def _send(self, session: PeanutSession, event: str) -> None:
        try:
            status = await session.status()
            self._show(status)
            carries = session.config if event == session.config_carrier else {}
            more = f" with {len(carries)} config argument(s)" if carries else ""
            self._post(LogLine(f"{event} from {status.state}{more}", "bold"))
            result = await session.send(event, status)
        except (OccCallError, TimeoutError) as err:
            self._post(LogLine(f"{event} failed: {self._failure(err)}", "red"))
            return
        self._report(event, result)
        if session.config_pushed and not self._config_pushed:
            self._config_pushed = True
            self._post(ConfigChanged(self.config_path, dict(self._config), True))

    def _report(self, event: str, result: TransitionResult) -> None:
        for step in result.steps:
            self._post(LogLine(f"  {step.line()}", "green" if step.ok else "red"))
        if result.ok:
            self._post(LogLine(f"{event} done: {result.state}", "green"))
        else:
            self._post(LogLine(f"{event} failed: {result.error}", "red"))

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self._post(BusyChanged(busy))

    # -- config -------------------------------------------------------------

    async def load_config(self, path: str) -> bool:
        """Read and flatten `path` off the event loop; its keys go with the next carrier event."""
        try:
            keys = await asyncio.to_thread(load_config_file, path)
        except ConfigFileError as err:
            self._post(LogLine(f"config not loaded: {err}", "red"))
            return False
        self.use_config(path, keys)
        return True

    def use_config(self, path: str, keys: dict[str, str]) -> None:
        self.config_path = path
        self._config = dict(keys)
        self._config_pushed = False
        if self.session is not None:
            self.session.load_config(keys)
        carrier = self.session.config_carrier if self.session else "CONFIGURE"
        self._post(LogLine(f"loaded {len(keys)} key(s) from {path}; they go with the next {carrier}"))
        self._post(ConfigChanged(path, dict(keys), False))
