"""What the console remembers between sessions: the theme, in $NUTSHELL_HOME/console.json.

A small JSON object; an unreadable or foreign file is ignored (the defaults apply)
and rewritten on the next change, so a broken file never keeps the console down.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from themes import DEFAULT_THEME, THEMES

PREFERENCES_FILE = "console.json"
THEME_NAMES: tuple[str, ...] = tuple(theme.name for theme in THEMES)


@dataclass
class Preferences:
    theme: str = DEFAULT_THEME

    @classmethod
    def load(cls, root: Path) -> Preferences:
        try:
            data = json.loads((root / PREFERENCES_FILE).read_text())
        except (OSError, ValueError):
            return cls()
        theme = data.get("theme") if isinstance(data, dict) else None
        return cls(theme if theme in THEME_NAMES else DEFAULT_THEME)

    def save(self, root: Path) -> None:
        """Write atomically (a rename), so a console killed mid-write leaves the old file."""
        root.mkdir(parents=True, exist_ok=True)
        partial = root / f".{PREFERENCES_FILE}.partial"
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n")
        partial.replace(root / PREFERENCES_FILE)


def next_theme(current: str) -> str:
    """The theme after `current` in THEMES, round; the default for a theme not ours."""
    if current not in THEME_NAMES:
        return DEFAULT_THEME
    return THEME_NAMES[(THEME_NAMES.index(current) + 1) % len(THEME_NAMES)]
