"""Operator front-ends: the full-screen console, the REPL and the headless commands."""
