"""peanut: a single-process OCC debugger, after AliECS occ/peanut.

It talks straight to one task's OCC endpoint (no core, no executor process):
a CLI for one call at a time and a Textual TUI to drive and watch a task.
"""
