"""Task classes (task templates) and what one task is built from at deploy time.

AliECS's core/task: a task template becomes a TaskClass; at DEPLOY each task's
command is templated with its role's variables (command.py), at CONFIGURE its
property map is built, FairMQ channel keys included (properties.py, channels.py).
"""
