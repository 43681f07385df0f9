"""nutshell's Textual themes, shared by the console and peanut.

Control rooms are dim and shifts are long: the default is a dark theme with
state colours that stay apart for colour-blind readers (RUNNING green-blue,
ERROR red-orange, CONFIGURED amber-free blue). A light theme and a
high-contrast one cover bright rooms and poor screens.
"""
from __future__ import annotations

from textual.app import App
from textual.theme import Theme

DEFAULT_THEME = "nutshell-dark"

THEMES: tuple[Theme, ...] = (
    Theme(name="nutshell-dark", primary="#4FA3D9", secondary="#7A8FA6", accent="#C792EA",
          warning="#E0B04A", error="#F0654A", success="#3FBF8F", foreground="#D5DDE5",
          background="#0E1419", surface="#151D24", panel="#1C2630", dark=True),
    Theme(name="nutshell-light", primary="#1F6FB2", secondary="#51657A", accent="#8A4FBF",
          warning="#A87400", error="#C4321A", success="#1C8A5E", foreground="#1B2430",
          background="#F6F8FA", surface="#FFFFFF", panel="#E6EBF0", dark=False),
    Theme(name="nutshell-high-contrast", primary="#00BFFF", secondary="#FFFFFF", accent="#FF00FF",
          warning="#FFFF00", error="#FF3030", success="#00FF7F", foreground="#FFFFFF",
          background="#000000", surface="#000000", panel="#202020", dark=True),
)


def use_themes(app: App[object], name: str = DEFAULT_THEME) -> None:
    """Register every nutshell theme on `app` and switch to `name`."""
    for theme in THEMES:
        app.register_theme(theme)
    app.theme = name
