"""The new-environment dialog: a workflow of the repositories, variables, emulation.

Variables are `key=value` lines or one JSON object, as `-e` takes them on the
command line (console.variables). The dialog only asks; the view creates the
environment in a worker and shows what failed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Select, Switch, TextArea

from console.variables import VariablesError, parse_variables
from engine import WorkflowTemplateInfo


@dataclass(frozen=True)
class NewEnvironment:
    """What the operator asked for."""

    workflow: str
    variables: dict[str, str]
    emulate: bool


def reference(info: WorkflowTemplateInfo) -> str:
    """The workflow reference `env create` takes: <repo>/workflows/<name>@<revision>."""
    return f"{info.repo}/workflows/{info.name}@{info.revision}"


def read_variables(text: str) -> dict[str, str]:
    """A JSON object, or one key=value a line; blank lines and `#` comments are skipped."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return parse_variables([stripped])
    lines = [line.strip() for line in text.splitlines()]
    return parse_variables([line for line in lines if line and not line.startswith("#")])


class NewEnvironmentModal(ModalScreen[NewEnvironment | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "create", "Create"),
    ]

    def __init__(self, templates: list[WorkflowTemplateInfo]) -> None:
        super().__init__()
        self.templates = templates

    def compose(self) -> ComposeResult:
        options = [(f"{info.name}  ({info.repo}@{info.revision})", reference(info))
                   for info in self.templates]
        with Vertical(id="dialog"):
            yield Label("New environment", id="title")
            yield Select(options, prompt="workflow", id="workflow",
                         value=options[0][1] if options else Select.BLANK)
            yield Label("Variables: key=value a line, or a JSON object", classes="hint")
            yield TextArea(id="variables")
            with Horizontal(id="emulation"):
                yield Switch(False, id="emulate")
                yield Label("emulate (no real processes: emulated tasks)", classes="hint")
            yield Label("", id="problem")
            with Horizontal(id="buttons"):
                yield Button("Create (ctrl+s)", variant="primary", id="create")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#workflow", Select).focus()
        if not self.templates:
            self._problem("no workflow templates: add a repository (nutshell repo add)")

    def _problem(self, text: str) -> None:
        self.query_one("#problem", Label).update(text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.action_create()
        else:
            self.action_cancel()

    def action_create(self) -> None:
        workflow = self.query_one("#workflow", Select).value
        if not isinstance(workflow, str):
            self._problem("pick a workflow first")
            return
        try:
            variables = read_variables(self.query_one("#variables", TextArea).text)
        except VariablesError as error:
            self._problem(str(error))
            return
        self.dismiss(NewEnvironment(workflow, variables, self.query_one("#emulate", Switch).value))

    def action_cancel(self) -> None:
        self.dismiss(None)
