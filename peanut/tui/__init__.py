"""peanut's Textual TUI: drive one task by hand and watch what it does."""
