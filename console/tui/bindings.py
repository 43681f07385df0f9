"""Every key of the console, in one place: the app's and the environments view's."""
from __future__ import annotations

import inspect

from textual import events
from textual.actions import parse as parse_action
from textual.binding import Binding

from engine import EnvEvent

# The transitions the environments view sends to the selected environment, by key.
TRANSITION_KEYS: dict[str, EnvEvent] = {
    "c": EnvEvent.CONFIGURE,
    "s": EnvEvent.START_ACTIVITY,
    "t": EnvEvent.STOP_ACTIVITY,
    "r": EnvEvent.RESET,
    "R": EnvEvent.RECOVER,
}

# How the footer names them: the operator's words, as peanut's buttons do.
TRANSITION_LABELS: dict[EnvEvent, str] = {
    EnvEvent.CONFIGURE: "Configure",
    EnvEvent.START_ACTIVITY: "Start",
    EnvEvent.STOP_ACTIVITY: "Stop",
    EnvEvent.RESET: "Reset",
    EnvEvent.RECOVER: "Recover",
}

APP_BINDINGS: list[Binding] = [
    Binding("question_mark", "toggle_help", "Keys", key_display="?"),
    Binding("ctrl+t", "next_theme", "Theme"),
    Binding("q", "quit", "Quit"),
    Binding("colon", "command_line", "Command", key_display=":"),  # console.tui.command_line
    Binding("e", "toggle_events", "Events"),  # console.tui.events_pane
    # the views (console.tui.views.VIEWS): 1 environments, 2 tasks, 3 hosts, 4 templates
    Binding("1", "view('environments')", "Envs"),
    Binding("2", "view('tasks')", "Tasks"),
    Binding("3", "view('hosts')", "Hosts"),
    Binding("4", "view('templates')", "Templates"),
]

ENVIRONMENTS_BINDINGS: list[Binding] = [
    *(Binding(key, f"transition({event.value!r})", TRANSITION_LABELS[event])
      for key, event in TRANSITION_KEYS.items()),
    Binding("d", "destroy", "Destroy"),
    Binding("n", "new_environment", "New"),
]  # enter (open the environment) is the table's: EnvironmentsTable

# The actions that change something: a read-only console (--readonly, or an observer's
# credentials) hides their keys, and refuses them if they are reached another way.
MUTATING_ACTIONS: frozenset[str] = frozenset({"transition", "destroy", "new_environment",
                                               "clean"})


class ReadOnlyKeys:
    """Mixed into a screen with a read-only mode (its `readonly`): the keys of actions that
    change something are hidden from the footer, and pressing one is refused out loud (its
    action says why) rather than silently ignored."""

    readonly: bool

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.readonly and action in MUTATING_ACTIONS)

    async def on_key(self, event: events.Key) -> None:
        if not self.readonly:
            return
        for binding in getattr(self, "BINDINGS", ()):
            if (isinstance(binding, Binding) and binding.key == event.key
                    and binding.action.partition("(")[0] in MUTATING_ACTIONS):
                event.stop()  # run past check_action: the action itself refuses
                _, name, parameters = parse_action(binding.action)
                done = getattr(self, f"action_{name}")(*parameters)
                if inspect.isawaitable(done):
                    await done
                return
