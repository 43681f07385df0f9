"""A footer of the keys that work here, composed again only when they change.

Textual's Footer rebuilds all its key widgets whenever the bindings may have changed,
which is on every focus change: opening and closing the `/` filter cost a few dozen
widgets built and thrown away (tens of ms, and garbage for the collector) while the keys
shown stay the same.
"""
from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer

Shown = tuple[tuple[str, str, str, bool, str], ...]


class StableFooter(Footer):
    _shown: Shown | None = None

    def _keys_shown(self, screen: Screen[object]) -> Shown:
        return tuple((binding.key, binding.description, binding.action, enabled, tooltip)
                     for (_node, binding, enabled, tooltip) in screen.active_bindings.values()
                     if binding.show)

    def bindings_changed(self, screen: Screen[object]) -> None:
        shown = self._keys_shown(screen)
        if self._bindings_ready and shown == self._shown:
            return
        self._shown = shown
        super().bindings_changed(screen)
