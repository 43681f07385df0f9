"""The new-environment dialog: a workflow of the repositories, its form, emulation.

Once a workflow is picked its public VarSpecs become a form (varspec_form); the
raw box below takes `key=value` lines or one JSON object, as `-e` takes them on
the command line (console.variables), and overrides the form ("advanced").
Named configurations of the form's values are saved to and loaded from
$NUTSHELL_HOME/console-configurations.json. The dialog only asks; the view
creates the environment in a worker and shows what failed.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Collapsible, Input, Label, Select, Switch, TextArea

from console.tui.components.configurations import (
    ConfigurationsError,
    SavedConfiguration,
    load_configurations,
    save_configuration,
)
from console.tui.components.varspec_form import VarSpecForm
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
    DEFAULT_CSS = """
    NewEnvironmentModal #form-area { height: 1fr; }
    NewEnvironmentModal #advanced { height: auto; }
    NewEnvironmentModal #emulation, NewEnvironmentModal #buttons { height: auto; }
    NewEnvironmentModal #configurations { height: auto; }
    NewEnvironmentModal #configuration { width: 1fr; }
    NewEnvironmentModal #configuration-name { width: 1fr; }
    """

    def __init__(self, templates: list[WorkflowTemplateInfo], *, hosts: Sequence[str] = (),
                 detectors: Sequence[str] = (), root: Path | None = None) -> None:
        """`hosts` (the agents' machine ids) and `detectors` feed the pickers; `root` is the
        working directory whose console-configurations.json holds saved configurations."""
        super().__init__()
        self.templates = templates
        self.by_reference = {reference(info): info for info in templates}
        self.hosts = list(hosts)
        self.detectors = list(detectors)
        self.root = root
        self.form_workflow = ""   # the workflow the mounted form was built for

    def compose(self) -> ComposeResult:
        options = [(f"{info.name}  ({info.repo}@{info.revision})", reference(info))
                   for info in self.templates]
        with Vertical(id="dialog"):
            yield Label("New environment", id="title")
            yield Select(options, prompt="workflow", id="workflow",
                         value=options[0][1] if options else Select.BLANK)
            with Horizontal(id="configurations"):
                yield Select([], prompt="load a saved configuration", id="configuration")
                yield Input(placeholder="name to save the values under", id="configuration-name")
                yield Button("Save", id="save")
            yield VerticalScroll(id="form-area")
            with Collapsible(title="Advanced (overrides the form): key=value a line, or a "
                             "JSON object", collapsed=True, id="advanced"):
                yield TextArea(id="variables")
            with Horizontal(id="emulation"):
                yield Switch(False, id="emulate")
                yield Label("emulate (no real processes: emulated tasks)", classes="hint")
            yield Label("", id="problem")
            with Horizontal(id="buttons"):
                yield Button("Create (ctrl+s)", variant="primary", id="create")
                yield Button("Cancel (esc)", id="cancel")

    async def on_mount(self) -> None:
        # as tall as the screen allows, the form taking what the rest leaves: the buttons
        # stay in sight and the form scrolls (inline: the app's stylesheet says `auto`)
        self.query_one("#dialog").styles.height = "90%"
        self.query_one("#workflow", Select).focus()
        if not self.templates:
            self._problem("no workflow templates: add a repository (nutshell repo add)")
        self._refresh_configurations()
        await self._show_form()

    def _problem(self, text: str) -> None:
        self.query_one("#problem", Label).update(text)

    def _workflow(self) -> str:
        value = self.query_one("#workflow", Select).value
        return value if isinstance(value, str) else ""

    @property
    def form(self) -> VarSpecForm | None:
        found = self.query("#form-area VarSpecForm")
        return found.first(VarSpecForm) if found and self.form_workflow == self._workflow() \
            else None

    async def _show_form(self) -> None:
        """The form of the workflow picked now (none when it has no public variables)."""
        workflow = self._workflow()
        area = self.query_one("#form-area", VerticalScroll)
        await area.remove_children()
        self.form_workflow = workflow
        info = self.by_reference.get(workflow)
        if info is not None and info.var_specs:
            await area.mount(VarSpecForm(info.var_specs, hosts=self.hosts,
                                         detectors=self.detectors))

    @on(Select.Changed, "#workflow")
    async def _workflow_changed(self) -> None:
        if self._workflow() != self.form_workflow:
            await self._show_form()

    # --- saved configurations

    def _refresh_configurations(self) -> None:
        if self.root is None:
            return
        try:
            names = sorted(load_configurations(self.root))
        except ConfigurationsError as error:
            self._problem(str(error))
            return
        self.query_one("#configuration", Select).set_options([(name, name) for name in names])

    def save_current(self, name: str) -> None:
        """Save the form's values and the advanced box under `name`."""
        if self.root is None:
            self._problem("no working directory to save configurations in")
            return
        if not name:
            self._problem("name the configuration to save")
            return
        try:
            variables = self._variables()
        except VariablesError as error:
            self._problem(str(error))
            return
        try:
            save_configuration(self.root, SavedConfiguration(name, self._workflow(), variables))
        except (ConfigurationsError, OSError) as error:
            self._problem(f"saving configuration {name!r}: {error}")
            return
        self._refresh_configurations()
        self._problem("")
        self.notify(f"configuration {name!r} saved")

    @on(Select.Changed, "#configuration")
    async def _configuration_picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            await self.load_configuration(event.value)

    async def load_configuration(self, name: str) -> None:
        """Pick its workflow, put its values in the form; the rest goes to the advanced box."""
        assert self.root is not None
        try:
            saved = load_configurations(self.root).get(name)
        except ConfigurationsError as error:
            self._problem(str(error))
            return
        if saved is None:
            self._problem(f"no saved configuration {name!r}")
            return
        if saved.workflow not in self.by_reference:
            self._problem(f"configuration {name!r} is for {saved.workflow or 'no workflow'}, "
                          "which the repositories do not list")
            return
        if saved.workflow != self._workflow():
            self.query_one("#workflow", Select).value = saved.workflow
            await self._show_form()
        form = self.form
        rest: dict[str, str] = {}
        problems: list[str] = []
        for key, value in saved.variables.items():
            if form is not None and key in form.plans:
                problem = form.set_value(key, value)
                if problem:
                    problems.append(problem)
            else:
                rest[key] = value
        if form is not None:
            form.refresh_conditions()
        self.query_one("#variables", TextArea).text = "\n".join(f"{k}={v}"
                                                               for k, v in rest.items())
        if rest:
            self.query_one("#advanced", Collapsible).collapsed = False
        self._problem("; ".join(problems))
        self.query_one("#configuration-name", Input).value = name

    # --- create / cancel

    def _variables(self) -> dict[str, str]:
        """The form's values overridden by the advanced box (VariablesError if it is wrong)."""
        form = self.form
        variables = form.values() if form is not None else {}
        variables.update(read_variables(self.query_one("#variables", TextArea).text))
        return variables

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.action_create()
        elif event.button.id == "save":
            self.save_current(self.query_one("#configuration-name", Input).value.strip())
        else:
            self.action_cancel()

    def action_create(self) -> None:
        workflow = self._workflow()
        if not workflow:
            self._problem("pick a workflow first")
            return
        try:
            advanced = read_variables(self.query_one("#variables", TextArea).text)
        except VariablesError as error:
            self.query_one("#advanced", Collapsible).collapsed = False
            self._problem(str(error))
            return
        form = self.form
        problems = form.problems(advanced) if form is not None else []
        if problems:
            self._problem("refused: " + "; ".join(problems))
            return
        variables = form.values() if form is not None else {}
        variables.update(advanced)
        self.dismiss(NewEnvironment(workflow, variables, self.query_one("#emulate", Switch).value))

    def action_cancel(self) -> None:
        self.dismiss(None)
