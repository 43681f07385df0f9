"""The control engine (AliECS "core"): environments, workflows, scheduling.

Its one public facade, `engine.Engine`, arrives with the engine issue; nothing
outside this package reaches into its modules.
"""
