"""Aligned text tables for the headless commands, and the tables they share.

People read these; scripts use `-o json`. Columns are padded to their widest
cell, the last column is not padded, and an empty value shows as `-`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine import EnvironmentInfo, TaskInfo, TaskRow

EMPTY = "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of an aligned table with a header line."""
    cells = [[str(h) for h in headers],
             *([EMPTY if value is None or value == "" else str(value) for value in row]
               for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row[:-1], widths)), row[-1]])
            for row in cells]


def result_lines(rows: Sequence[TaskRow]) -> list[str]:
    """A transition's result table: task, role, host, before → after, reason, exit code, log."""
    return table(("TASK", "ROLE", "HOST", "BEFORE → AFTER", "EXIT", "REASON", "LOG"),
                 ((row.task_id, row.role_path, row.host,
                   f"{row.before} → {row.after}", row.exit_code, row.reason, row.log_path)
                  for row in rows))


def task_lines(tasks: Sequence[TaskInfo]) -> list[str]:
    return table(("TASK", "ROLE", "HOST", "STATE", "STATUS", "PID", "CRITICAL", "LOCKED", "LOG"),
                 ((t.task_id, t.role_path, t.host, t.state, t.status, t.pid,
                   "yes" if t.critical else "no", "yes" if t.locked else "no", t.log_path)
                  for t in tasks))


def environment_lines(environments: Sequence[EnvironmentInfo]) -> list[str]:
    return table(("ID", "WORKFLOW", "STATE", "RUN", "TASKS", "CREATED", "BY"),
                 ((env.id, env.workflow, env.state, env.current_run_number or None,
                   len(env.tasks), env.created.strftime("%Y-%m-%d %H:%M:%S"), env.created_by)
                  for env in environments))


def pairs(items: Sequence[tuple[str, object]]) -> list[str]:
    """`name  value` lines, the names padded to the longest."""
    width = max((len(name) for name, _ in items), default=0)
    return [f"{name.ljust(width)}  {EMPTY if value in (None, '') else value}"
            for name, value in items]
