"""What a screen loaded (thousands of tree nodes, rows, records) kept out of the garbage
collector's full passes while the screen shows.

A full pass walks every tracked object: with a 2000-task environment loaded that is a
pause of tens of milliseconds, now and then in the middle of a keypress. Objects alive
when a screen has loaded are frozen (gc.freeze) until the last screen that asked leaves;
they are then collectable again.
"""
from __future__ import annotations

import gc

_holders = 0


def hold() -> None:
    """Freeze what is alive now (garbage collected first, so none of it is frozen)."""
    global _holders
    gc.collect()
    gc.freeze()
    _holders += 1


def release() -> None:
    """One holder less; with none left, everything frozen is collectable again."""
    global _holders
    _holders = max(_holders - 1, 0)
    if not _holders:
        gc.unfreeze()
