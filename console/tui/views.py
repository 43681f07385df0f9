"""The console's views by name and key: the environments view (the first screen) and the
list views on top of it. The app's palette commands come from here, its keys 1-4
(console.tui.bindings) name them."""
from __future__ import annotations

from console.tui.components.hosts_view import HostsView
from console.tui.components.live_view import LiveView
from console.tui.components.tasks_view import TasksView
from console.tui.components.templates_view import TemplatesView

# name -> the screen shown over the environments view (None: the environments view itself)
VIEWS: dict[str, type[LiveView] | None] = {
    "environments": None, "tasks": TasksView, "hosts": HostsView, "templates": TemplatesView,
}
VIEW_HELP: dict[str, str] = {
    "environments": "Every environment, live, with its transitions",
    "tasks": "Every task: filter, sort, clean unlocked ones, logs",
    "hosts": "The agents: attributes, resources used and free, tasks",
    "templates": "Repositories, workflow templates and their public variables",
}
