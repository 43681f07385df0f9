"""The loaded config file's flattened keys, and whether they have reached the task."""
from __future__ import annotations

from textual.widgets import DataTable

NOT_PUSHED = "NOT PUSHED"
PUSHED = "PUSHED"


class ConfigTable(DataTable[str]):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.path = ""
        self.pushed = False

    def on_mount(self) -> None:
        self.add_columns("status", "key", "value")  # status first: long values get cut, not it
        self.border_title = "config (l to load)"

    def show(self, path: str, keys: dict[str, str], pushed: bool) -> None:
        self.path = path
        self.pushed = pushed
        self.clear()
        status = PUSHED if pushed else NOT_PUSHED
        for key, value in keys.items():
            self.add_row(status, key, value, key=key)
        self.border_title = f"{path}: {len(keys)} key(s), {status}"

    def statuses(self) -> list[str]:
        return [self.get_row_at(row)[0] for row in range(self.row_count)]
