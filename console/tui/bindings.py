"""Every key of the console, in one place: the app's and the environments view's."""
from __future__ import annotations

import inspect
from collections.abc import Iterable

from textual.actions import parse as parse_action
from textual.binding import Binding, BindingType
from textual.dom import DOMNode

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


def shown_in_mode(readonly: bool, action: str) -> bool:
    """Screen.check_action for a screen with a read-only mode."""
    return not (readonly and action in MUTATING_ACTIONS)


async def refuse_hidden_key(screen: DOMNode, readonly: bool, bindings: Iterable[BindingType],
                            key: str) -> bool:
    """A key a read-only screen hides is refused out loud (its action says why) rather than
    silently ignored: its action is run past check_action. Whether `key` was one."""
    if not readonly:
        return False
    for binding in bindings:
        if (isinstance(binding, Binding) and binding.key == key
                and binding.action.partition("(")[0] in MUTATING_ACTIONS):
            _, name, parameters = parse_action(binding.action)
            done = getattr(screen, f"action_{name}")(*parameters)
            if inspect.isawaitable(done):
                await done
            return True
    return False
