"""The operator console: the Textual TUI on the working directory's engine (`nutshell`)."""
