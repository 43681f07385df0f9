"""Task classes for tests: the corpus's or inline ones, read as engine.repos hands them over."""
from __future__ import annotations

from engine.repos import TemplateFile
from engine.task.taskclass import TaskClass
from tests.conftest import CORPUS

REPO = "github.com/AliceO2Group/ControlWorkflows"
COMMIT = "25da17f8e6f5287b0ba002189419c88cbc230aaf"


def template_file(repo: str, commit: str, path: str, text: str) -> TemplateFile:
    """A template at a commit, named by that commit (as a load by hash names it)."""
    return TemplateFile(repo=repo, revision=commit, commit=commit, path=path, text=text)


def corpus(name: str) -> TaskClass:
    """A task class of the ControlWorkflows corpus."""
    return TaskClass.from_template(template_file(REPO, COMMIT, f"tasks/{name}.yaml",
                                                 (CORPUS / "tasks" / f"{name}.yaml").read_text()))


def inline(name: str, text: str) -> TaskClass:
    """A task class written in the test."""
    return TaskClass.from_template(template_file("repo", "c0ffee", f"tasks/{name}.yaml", text))
