"""Every key of the console, in one place: the app's and the environments view's."""
from __future__ import annotations

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
