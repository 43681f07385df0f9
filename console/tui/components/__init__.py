"""The console's screens and widgets, one a module."""
