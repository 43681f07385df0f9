"""The templates view: the repositories (the default one marked, default revisions), their
workflow templates with descriptions, and the public variables of the workflow under the
cursor (name, type, widget, default, label, description) in a pane below.

Templates change by repository commands, not by engine events: ctrl+r reads again.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Footer, Header

from console.tui.components.live_view import LiveView
from console.tui.components.record_table import RecordTable
from engine import RepoInfo, WorkflowTemplateInfo

if TYPE_CHECKING:
    from console.client import AnyEngine

REPO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("index", "#"), ("default", "DEFAULT"), ("name", "REPOSITORY"), ("kind", "KIND"),
    ("revision", "DEFAULT REVISION"), ("branches", "BRANCHES"), ("tags", "TAGS"),
)
WORKFLOW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("repo", "REPOSITORY"), ("revision", "REVISION"), ("name", "WORKFLOW"),
    ("public", "PUBLIC"), ("variables", "VARIABLES"), ("description", "DESCRIPTION"),
)
VARIABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "VARIABLE"), ("type", "TYPE"), ("widget", "WIDGET"), ("default", "DEFAULT"),
    ("label", "LABEL"), ("description", "DESCRIPTION"),
)


def repo_row(repo: RepoInfo) -> dict[str, str]:
    return {
        "index": str(repo.index), "default": "*" if repo.default else "", "name": repo.name,
        "kind": repo.kind.value, "revision": repo.default_revision,
        "branches": ", ".join(repo.revisions), "tags": ", ".join(repo.tags),
    }


def workflow_key(template: WorkflowTemplateInfo) -> str:
    return f"{template.repo}/workflows/{template.name}@{template.revision}"


def workflow_row(template: WorkflowTemplateInfo) -> dict[str, str]:
    return {
        "repo": template.repo, "revision": template.revision, "name": template.name,
        "public": "yes" if template.public else "no",
        "variables": str(len(template.var_specs)), "description": template.description,
    }


class TemplatesView(LiveView):
    DEFAULT_CSS = """
    TemplatesView #repos { height: auto; max-height: 8; border: round $secondary; }
    TemplatesView #workflows { height: 1fr; border: round $primary; }
    TemplatesView #variables { height: 1fr; border: round $secondary; }
    """
    FOLLOWS_EVENTS: ClassVar[bool] = False
    VIEW_NAME: ClassVar[str] = "templates"

    def __init__(self, engine: AnyEngine, *, readonly: bool = False) -> None:
        super().__init__(engine, readonly=readonly)
        self.templates: dict[str, WorkflowTemplateInfo] = {}
        self.variables_of = ""  # the workflow whose variables the pane shows

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield RecordTable(REPO_COLUMNS, id="repos")
            yield RecordTable(WORKFLOW_COLUMNS, id="workflows")
            yield RecordTable(VARIABLE_COLUMNS, id="variables")
        yield Footer()

    def on_mount(self) -> None:
        """Titles and focus; LiveView.on_mount (run after this one by Textual) reads."""
        self.query_one("#repos").border_title = "repositories (* default)"
        self.query_one("#workflows").border_title = "workflow templates"
        self.query_one("#variables").border_title = "public variables of the selected workflow"
        self.query_one("#workflows").focus()

    def table(self, name: str) -> RecordTable:
        return self.query_one(f"#{name}", RecordTable)

    async def reload(self) -> None:
        repos, templates = await asyncio.gather(
            self.engine.list_repos(), self.engine.list_workflow_templates(all_workflows=True))
        self.table("repos").set_records({str(repo.index): repo_row(repo) for repo in repos})
        self.templates = {workflow_key(template): template for template in templates}
        self.table("workflows").set_records(
            {key: workflow_row(template) for key, template in self.templates.items()})
        self._show_variables(self.table("workflows").selected)

    @on(RecordTable.RowHighlighted, "#workflows")
    def _workflow_highlighted(self, message: RecordTable.RowHighlighted) -> None:
        self._show_variables(message.key)

    def _show_variables(self, key: str | None) -> None:
        template = self.templates.get(key) if key is not None else None
        self.variables_of = key if template is not None else ""
        specs = template.var_specs if template is not None else ()
        self.table("variables").set_records({spec.name: {
            "name": spec.name, "type": spec.type, "widget": spec.widget,
            "default": spec.default_value, "label": spec.label, "description": spec.description,
        } for spec in specs})
